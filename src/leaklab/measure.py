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
"""

from __future__ import annotations

import gc
import importlib
import math
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psutil

from leaklab._checks import check_callable, check_int, check_seconds

if TYPE_CHECKING:  # pandas is imported only when a frame is built: isolated children stay lean
    import pandas as pd

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

MIB = 1024 * 1024
_PROCESS = psutil.Process()


def rss_mib() -> float:
    """The current process's resident set size, in MiB."""
    return _PROCESS.memory_info().rss / MIB


def peak_rss_mib() -> float:
    """The highest RSS this process has had since it started, in MiB (``ru_maxrss``)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return kib / (MIB if sys.platform == "darwin" else 1024)


def fit_slope(x: Any, y: Any) -> float:
    """Least-squares slope of ``y`` against ``x``: the robust statistic the chapters assert on.

    Returns 0.0 when there are fewer than two distinct ``x`` values.
    """
    xs = [float(v) for v in x]
    ys = [float(v) for v in y]
    if len(xs) != len(ys):
        raise ValueError(f"x and y must have the same length, got {len(xs)} and {len(ys)}")
    if len(xs) < 2:
        return 0.0
    mx = math.fsum(xs) / len(xs)
    my = math.fsum(ys) / len(ys)
    sxx = math.fsum((a - mx) ** 2 for a in xs)
    if sxx == 0:
        return 0.0
    return math.fsum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sxx


def fitted_rise(trace: MemoryTrace) -> float:
    """MiB that the least-squares line through ``trace`` rises over the whole run.

    Unlike ``growth_mib`` (last sample minus first) one late or early sample cannot move it much,
    which is why chapters assert on it: a leak of N MiB rises about N, a bounded cache about 0.
    """
    if not isinstance(trace, MemoryTrace):
        raise TypeError(f"trace must be a MemoryTrace, got {type(trace).__name__}")
    return trace.slope_mib_per_s * trace.seconds


# --------------------------------------------------------------------------- traces over time


@dataclass(frozen=True)
class MemoryTrace:
    """RSS sampled over the run of one function.

    ``frame`` has the columns ``seconds`` (since the first sample) and ``rss_mib``;
    ``result`` is what the function returned.
    """

    frame: pd.DataFrame
    result: Any = None

    @property
    def peak_mib(self) -> float:
        """Highest sampled RSS, MiB."""
        return float(self.frame["rss_mib"].max())

    @property
    def growth_mib(self) -> float:
        """Last sample minus first sample, MiB."""
        rss = self.frame["rss_mib"]
        return float(rss.iloc[-1] - rss.iloc[0])

    @property
    def slope_mib_per_s(self) -> float:
        """Least-squares slope of RSS against time, MiB per second."""
        return fit_slope(self.frame["seconds"], self.frame["rss_mib"])

    @property
    def seconds(self) -> float:
        """Duration covered by the samples."""
        return float(self.frame["seconds"].iloc[-1])

    @property
    def has_progress(self) -> bool:
        """True when the workload reported :func:`progress`, so ``frame`` has a ``done`` column."""
        return "done" in self.frame.columns

    @property
    def bytes_per_unit(self) -> float:
        """Least-squares slope of RSS against ``done`` (bytes per request, item, ...).

        Needs a workload that called :func:`progress`; raises ValueError otherwise.
        """
        if not self.has_progress:
            raise ValueError("this trace has no 'done' column: its workload never called progress()")
        return fit_slope(self.frame["done"], self.frame["rss_mib"]) * MIB

    def __repr__(self) -> str:
        return (
            f"MemoryTrace(samples={len(self.frame)}, seconds={self.seconds:.2f}, "
            f"growth_mib={self.growth_mib:+.1f}, slope_mib_per_s={self.slope_mib_per_s:+.1f}, "
            f"peak_mib={self.peak_mib:.1f})"
        )


class _Raised:
    """Carries an exception out of memory_profiler, which would otherwise kill child processes."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


# Progress marks of the run being tracked: None when no run is tracked, so that progress() is a
# cheap no-op in production code and this list can never grow outside a run.
_marks: list[tuple[float, float]] | None = None


def progress(done: float) -> None:
    """Say how far a workload has got (requests served, items made) while it is tracked.

    Workloads call it every so often (every 1,000 requests, say); :func:`track` and
    :func:`track_isolated` then add a ``done`` column to the trace, interpolated at every RSS
    sample, so a figure can put requests on x (``plot_rss(..., per="request")``). Outside a
    tracked run it does nothing.
    """
    if _marks is not None:
        _marks.append((time.time(), float(done)))


def _done_column(stamps: list[float], marks: list[tuple[float, float]], start: float) -> list[float]:
    """``done`` at each sample time: linear between marks, 0 at the start, last value after."""
    points = [(start, 0.0), *sorted(marks)]
    out = []
    j = 0
    for t in stamps:
        while j + 1 < len(points) and points[j + 1][0] <= t:
            j += 1
        if j + 1 == len(points) or t <= points[j][0]:
            out.append(points[j][1] if t >= points[0][0] else 0.0)
        else:
            (t0, d0), (t1, d1) = points[j], points[j + 1]
            out.append(d0 + (d1 - d0) * (t - t0) / (t1 - t0))
    return out


def _frame(columns: dict[str, list[float]]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns)


def sample_rss(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], interval: float
) -> tuple[dict[str, list[float]], Any]:
    """The sampling behind :func:`track`, without pandas: ``({"seconds": [...], "rss_mib": [...]},
    result)``. Exceptions from ``fn`` propagate."""
    from memory_profiler import memory_usage  # imported late: it is slow to import

    global _marks
    started: list[float] = []

    def call() -> Any:
        global _marks
        _marks = []
        started.append(time.time())
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # re-raised below, after the sampler has stopped cleanly
            return _Raised(exc)

    try:
        with warnings.catch_warnings():
            # memory_profiler forks its sampler. Inside a Jupyter kernel (which has threads) Python
            # 3.12+ warns that fork may deadlock; the sampler child only reads /proc through psutil
            # and talks over a pipe, so it takes no lock that another thread could hold.
            warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks.*",
                                    category=DeprecationWarning)
            samples, returned = memory_usage(
                (call, (), {}), interval=interval, timestamps=True, retval=True, max_iterations=1
            )
    finally:
        marks, _marks = _marks, None
    if isinstance(returned, _Raised):
        raise returned.exc
    stamps = [float(t) for _, t in samples]
    columns = {"seconds": [t - stamps[0] for t in stamps], "rss_mib": [float(m) for m, _ in samples]}
    if marks:
        columns["done"] = _done_column(stamps, marks, started[0])
    return columns, returned


def track(fn: Callable[..., Any], *args: Any, interval: float = 0.01, **kwargs: Any) -> MemoryTrace:
    """Run ``fn(*args, **kwargs)`` once in this process while RSS is sampled every ``interval`` s.

    memory_profiler does the sampling from a helper process. It is called with
    ``max_iterations=1``: without it, memory_profiler silently calls a short function again (up to
    about seven times) until it has five samples. If ``fn`` raises, the exception propagates.
    """
    check_callable("fn", fn)
    check_seconds("interval", interval)
    columns, result = sample_rss(fn, args, kwargs, interval)
    return MemoryTrace(frame=_frame(columns), result=result)


def _target_name(target: Any) -> str:
    """Turn an importable function (or a ``"module:function"`` string) into its import path."""
    if isinstance(target, str):
        module, sep, attr = target.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"target must look like 'package.module:function', got {target!r}")
        return target
    if not callable(target):
        raise TypeError(
            f"target must be an importable function or a 'package.module:function' string, "
            f"got {type(target).__name__}: {target!r}"
        )
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        raise ValueError(
            f"target {target!r} cannot be imported by a fresh process (defined in a notebook, "
            "a lambda or a nested function); put it in a module, e.g. under leaklab.scenarios"
        )
    return f"{module}:{qualname}"


def resolve_target(name: str) -> Callable[..., Any]:
    """Import ``"package.module:attr.path"`` and return the callable it names."""
    module_name, _, attr_path = name.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    check_callable("target", obj)
    return obj


def track_isolated(target: Any, *args: Any, interval: float = 0.01, **kwargs: Any) -> MemoryTrace:
    """Like :func:`track`, but the function runs in a fresh Python process.

    Every variant measured this way starts from the same baseline (a new interpreter that has
    imported leaklab), which is what side-by-side RSS curves need. ``target`` is an importable
    function or a ``"package.module:function"`` string; the arguments and the result travel by
    pickle. An exception in the child is raised again here.
    """
    name = _target_name(target)
    check_seconds("interval", interval)
    with tempfile.TemporaryDirectory(prefix="leaklab-") as tmp:
        request = os.path.join(tmp, "request.pickle")
        response = os.path.join(tmp, "response.pickle")
        with open(request, "wb") as fh:
            pickle.dump((name, args, kwargs, interval), fh)
        proc = subprocess.run(
            [sys.executable, "-m", "leaklab._isolated", request, response],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not os.path.exists(response):
            tail = (proc.stderr or "").strip().splitlines()[-15:]
            raise RuntimeError(
                f"isolated run of {name} failed with exit code {proc.returncode}:\n" + "\n".join(tail)
            )
        with open(response, "rb") as fh:
            outcome = pickle.load(fh)
    if "error" in outcome:
        raise outcome["error"]
    return MemoryTrace(frame=_frame(outcome["frame"]), result=outcome["result"])


# --------------------------------------------------------------------------- leak rate


@dataclass(frozen=True)
class LeakRate:
    """How much memory one call keeps, estimated two ways.

    ``bytes_per_call`` comes from tracemalloc (net traced bytes after the calls, collected, divided
    by ``calls``): exact for memory Python allocates. ``rss_bytes_per_call`` is the slope of RSS
    against the call number: coarse (page-sized steps, allocator reuse) but it sees memory that
    tracemalloc cannot, such as C extensions.
    """

    bytes_per_call: float
    rss_bytes_per_call: float
    calls: int
    threshold_bytes: float = 64.0

    @property
    def leaking(self) -> bool:
        """True when a call keeps more than ``threshold_bytes`` (tracemalloc estimate)."""
        return self.bytes_per_call > self.threshold_bytes


def leak_rate(
    fn: Callable[..., Any],
    *args: Any,
    calls: int = 1000,
    warmup: int = 100,
    leak_threshold_bytes: float = 64.0,
    **kwargs: Any,
) -> LeakRate:
    """Call ``fn(*args, **kwargs)`` ``warmup`` times, then ``calls`` times, and estimate the bytes
    each call keeps.

    The warm-up calls fill one-time caches (interned strings, lazy imports, a bounded buffer) so
    they are not counted as a leak. tracemalloc is started for the run only if it is not already
    running (then it is left running).
    """
    check_callable("fn", fn)
    check_int("calls", calls)
    check_int("warmup", warmup, 0)
    if isinstance(leak_threshold_bytes, bool) or not isinstance(leak_threshold_bytes, (int, float)):
        raise TypeError(f"leak_threshold_bytes must be a number, got {leak_threshold_bytes!r}")
    if not math.isfinite(leak_threshold_bytes) or leak_threshold_bytes < 0:
        raise ValueError(f"leak_threshold_bytes must be finite and >= 0, got {leak_threshold_bytes!r}")

    # Sample RSS about 64 times. The buffers are allocated before tracing starts, and array
    # stores raw numbers, so the sampling itself leaves nothing in the traced total.
    step = max(1, calls // 64)
    n_samples = calls // step + 1
    sample_calls = array("q", [0]) * n_samples
    sample_rss = array("q", [0]) * n_samples
    memory_info = _PROCESS.memory_info
    # Tracing starts before the warm-up: a bounded structure that the warm-up fills is then made
    # of traced objects, and replacing them later nets to zero instead of counting as growth.
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start(1)
    try:
        for _ in range(warmup):
            fn(*args, **kwargs)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        sample_rss[0] = memory_info().rss
        k = 1
        for i in range(1, calls + 1):
            fn(*args, **kwargs)
            if i % step == 0 and k < n_samples:
                sample_calls[k] = i
                sample_rss[k] = memory_info().rss
                k += 1
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        if started_here:
            tracemalloc.stop()
    rss_slope = fit_slope(sample_calls[:k], sample_rss[:k])
    return LeakRate(
        bytes_per_call=(after - before) / calls,
        rss_bytes_per_call=rss_slope,
        calls=calls,
        threshold_bytes=float(leak_threshold_bytes),
    )


# --------------------------------------------------------------------------- GC pauses


@dataclass
class GcPauses:
    """Every cyclic-GC collection seen inside a :func:`gc_pauses` block.

    ``frame`` has one row per collection with ``generation``, ``duration_ms`` and ``collected``.
    """

    _rows: list[tuple[int, float, int]] = field(default_factory=list, repr=False)
    closed: bool = False

    @property
    def frame(self) -> pd.DataFrame:
        """One row per collection; complete once the ``with`` block has ended."""
        import pandas as pd

        return pd.DataFrame(self._rows, columns=["generation", "duration_ms", "collected"])

    @property
    def count(self) -> int:
        """Number of collections recorded."""
        return len(self._rows)

    @property
    def total_ms(self) -> float:
        """Sum of all pauses, ms."""
        return float(sum(r[1] for r in self._rows))

    @property
    def max_ms(self) -> float:
        """Longest single pause, ms (0 when there was none)."""
        return float(max((r[1] for r in self._rows), default=0.0))


@contextmanager
def gc_pauses() -> Iterator[GcPauses]:
    """Record every cyclic-GC collection that happens inside the block, through ``gc.callbacks``.

    >>> with gc_pauses() as pauses:
    ...     _ = gc.collect()
    >>> pauses.count >= 1
    True
    """
    record = GcPauses()
    started: list[int] = [0]
    clock = time.perf_counter_ns

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = clock()
        else:
            record._rows.append(
                (info["generation"], (clock() - started[0]) / 1e6, info.get("collected", 0))
            )

    gc.callbacks.append(callback)
    try:
        yield record
    finally:
        gc.callbacks.remove(callback)
        record.closed = True
