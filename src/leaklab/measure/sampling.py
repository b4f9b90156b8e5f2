"""RSS sampled over time while a function runs in this process (chapter 00, then every chapter).

- :func:`track` runs a function once while memory_profiler samples RSS from a helper process, and
  returns a :class:`~leaklab.measure.MemoryTrace`; :func:`sample_rss` is the same without pandas
  (what the child of :func:`~leaklab.measure.track_isolated` runs).
- :func:`progress` lets the workload say how far it got, so a figure can put requests on x.

memory_profiler is wrapped rather than used as it is: its sampler must end whatever happens to the
function (an exception, Ctrl-C, ``sys.exit()``), or the interpreter waits for it forever.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from leaklab._checks import check_callable, check_seconds
from leaklab.measure.lifetime import _load_prctl, _sampler_forks
from leaklab.measure.trace import MemoryTrace, _frame


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


def sample_rss(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], interval: float
) -> tuple[dict[str, list[float]], Any]:
    """The sampling behind :func:`track`, without pandas: ``({"seconds": [...], "rss_mib": [...]},
    result)``. Exceptions from ``fn`` propagate, KeyboardInterrupt and SystemExit included, and the
    sampler process has ended by then, whatever happened."""
    import multiprocessing

    from memory_profiler import MemTimer, memory_usage  # imported late: it is slow to import

    global _marks
    started: list[float] = []
    raised: list[_Raised] = []
    me = threading.get_ident()
    before = set(multiprocessing.active_children())

    def call() -> Any:
        global _marks
        _sampler_forks.pop(me, None)  # the sampler runs: a fork by fn is fn's own business
        _marks = []
        started.append(time.time())
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:  # re-raised below, after the sampler has stopped cleanly
            # BaseException too: memory_profiler stops its sampler only when the function returns
            # or raises an Exception; after a KeyboardInterrupt or SystemExit the sampler went on
            # forever and the interpreter could not exit (it waits for its children).
            raised.append(_Raised(exc))
            return raised[-1]

    _load_prctl()  # before the fork: the sampler only calls it
    _sampler_forks[me] = os.getpid()  # the next fork in this thread is the sampler: see _after_fork
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
    except BaseException:
        # Interrupted outside fn (while the sampler started or handed its samples over): the
        # sampler would otherwise run, and keep this interpreter from exiting, forever.
        for proc in multiprocessing.active_children():
            if proc not in before and isinstance(proc, MemTimer):
                proc.kill()
                proc.join(5)
        if raised:  # what fn raised matters more than what stopping the sampler then raised
            raise raised[0].exc from None
        raise
    finally:
        _sampler_forks.pop(me, None)
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
