"""Measuring memory: the harness every chapter uses.

Chapter 00 introduces these tools; every later chapter measures its leak and its fix with them,
so that all the numbers in the course come from the same code:

- :func:`rss_mib` reads the process's resident set size (what the operating system charges).
- :func:`track` samples RSS over time while a function runs (memory_profiler underneath).
- :func:`track_isolated` does the same in a fresh Python process, so that variants compared side
  by side all start from the same baseline.
- :func:`leak_rate` estimates the memory a call keeps, from tracemalloc and from the RSS slope.
- :func:`gc_pauses` records every cyclic-GC collection inside a ``with`` block.
- :func:`fitted_rise` is the MiB a trace's fitted line rises over its run (what chapters assert on);
  :func:`progress` lets a workload say how far it got, so a figure can put requests on x.

Each idea has a module of its own; import the names from ``leaklab.measure``:

- ``rss.py``: :func:`rss_mib`, :func:`peak_rss_mib`;
- ``trace.py``: :class:`MemoryTrace` and its fitted line (:func:`fit_slope`, :func:`fitted_rise`);
- ``sampling.py``: :func:`track` and :func:`progress`, sampling in this process;
- ``isolated.py``: :func:`track_isolated`, the parent's side of a run in a fresh process
  (``leaklab/_isolated.py`` is the child's);
- ``lifetime.py``: helper processes (the sampler, the isolated child) end with their parent;
- ``leaks.py``: :func:`leak_rate` and the verdict of :class:`LeakRate`;
- ``pauses.py``: :func:`gc_pauses` and :class:`GcPauses`.
"""

from __future__ import annotations

from typing import Any

from leaklab.measure import sampling as _sampling
from leaklab.measure.isolated import track_isolated
from leaklab.measure.leaks import LeakRate, leak_rate
from leaklab.measure.pauses import GcPauses, gc_pauses
from leaklab.measure.rss import MIB, peak_rss_mib, rss_mib
from leaklab.measure.sampling import progress, track
from leaklab.measure.trace import MemoryTrace, fit_slope, fitted_rise

# Importable from here as before: the measuring loop and its argument check (leaklab.testing
# measures with them), and the pieces of an isolated run.
from leaklab.measure.isolated import _target_name, resolve_target
from leaklab.measure.leaks import _check_bytes, _measure_leak
from leaklab.measure.lifetime import end_with_parent
from leaklab.measure.sampling import sample_rss

__all__ = [
    "MemoryTrace",
    "LeakRate",
    "GcPauses",
    "rss_mib",
    "peak_rss_mib",
    "track",
    "track_isolated",
    "leak_rate",
    "gc_pauses",
    "fit_slope",
    "fitted_rise",
    "progress",
]


def __getattr__(name: str) -> Any:
    # The progress marks of the run being tracked: rebound by every run, so read where they live.
    if name == "_marks":
        return _sampling._marks
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
