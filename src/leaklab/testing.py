"""Leak checks for your own tests: which line keeps memory, and a regression test that says so.

Chapter 06 hunts a leak in code the reader did not write; this module is the part they take
home. Three names matter:

- :func:`leak_report` calls a function many times and returns a :class:`LeakReport`: the bytes
  each call keeps, the verdict (``leaking``) and the ``top`` lines that allocated what was kept.
- :func:`assert_no_leak` does the same and raises :class:`LeakError` (an ``AssertionError``) when
  the function keeps more than ``max_bytes_per_call``.
- The pytest marker ``@pytest.mark.no_leak(calls=..., warmup=..., max_bytes_per_call=...)``
  (:mod:`leaklab.pytest_plugin`, registered by installing leaklab) runs a test's body repeatedly
  and fails the test with the same report.

The measuring is :func:`leaklab.measure.leak_rate`'s, and so is the rule for the verdict. The
function is called ``warmup`` times (one-time caches, lazy imports, a bounded buffer filling up),
then ``calls`` times, with a full collection before the first measured call, at the middle and
after the last. A call leaks when **each half** of the measured calls keeps more than the limit
per call: by tracemalloc (more than ``max_bytes_per_call``, 64 by default), or by RSS (more than
``max(1024, max_bytes_per_call)`` bytes per call, least-squares slopes: how memory allocated
outside Python's allocators, in a C extension, is caught). A leak keeps memory in both halves; a
bounded cache that fills during the warm-up or the first half, a first-call import and a buffer
released every N calls (N dividing ``calls``) do not, and are not flagged. ``bytes_per_call`` is
tracemalloc's net growth over all the measured calls, divided by ``calls``.

The top lines come from two tracemalloc snapshots (after the warm-up, after the last call),
traced with up to :data:`FRAMES` frames per allocation. Each allocation still alive at the end is
charged to one line: the innermost frame in your code, that is outside the standard library and
site-packages; failing that, the innermost frame outside leaklab's own measuring machinery
(``leaklab.testing``, ``leaklab.measure``, the plugin), tracemalloc and importlib. Lines are
ranked by their growth over the measured calls. If tracemalloc was already tracing when the
measurement starts, it is used as it is (with its own number of frames) and left running.

Async functions: :func:`leak_report` and :func:`assert_no_leak` notice a coroutine function
(``async def``, a ``functools.partial`` of one, an object with an ``async def __call__``), or a
function whose first warm-up call returns a coroutine (``lambda: client.get(key)``), and then
await each call on an event loop of their own, one ``run_until_complete`` per call, closed at the
end. Called while an event loop runs in this thread (a Jupyter cell, an async test), they run
that loop in a helper thread and wait for it: the call blocks, as any synchronous call does.
Generator functions are refused (their bodies would never run): measure ``lambda: list(gen())``.

Cost (``bench/bench_testing.py``): a fixed part per report, three full collections, two
snapshots and about 64 RSS reads, which grows with the objects the process holds (tens of ms in
a small process, about half a second in a test session holding 200,000 objects); and a part per
call, nothing for a call that allocates nothing but several microseconds for each allocation,
which tracemalloc records with its traceback. ``bytes_per_call`` is exact for what Python
allocates (planted leaks of 64 B to 100 KiB per call read within 0.2%).

Arguments for ``fn`` pass through ``*args`` and ``**kwargs``, except those named ``calls``,
``warmup`` and ``max_bytes_per_call`` (use ``functools.partial`` for those). Bad settings raise
``TypeError`` or ``ValueError`` naming the argument, before ``fn`` is ever called.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from leaklab._attribution import _short, _top_lines
from leaklab._checks import check_callable, check_int
from leaklab.measure import LeakRate, _check_bytes, _measure_leak

__all__ = ["TopLine", "LeakReport", "LeakError", "leak_report", "assert_no_leak", "FRAMES"]

#: Frames tracemalloc keeps per allocation when a report starts it: enough to climb out of a
#: library into the code that called it. More frames cost more time per allocation.
FRAMES = 16
#: At most this many lines in :attr:`LeakReport.top`.
TOP = 5
#: The RSS bar is never below this many bytes per call: RSS moves in pages and allocator arenas.
RSS_FLOOR_BYTES = 1024.0


class TopLine(NamedTuple):
    """One line of code and the traced memory its allocations grew by over the measured calls."""

    filename: str
    lineno: int
    bytes: int

    def __str__(self) -> str:
        return f"{_short(self.filename)}:{self.lineno}"


@dataclass(frozen=True)
class LeakReport:
    """What :func:`leak_report` found.

    ``bytes_per_call``: tracemalloc's net growth over the measured calls, divided by ``calls``.
    ``leaking``: the verdict (see the module docstring: each half keeps more than the limit).
    ``top``: at most five :class:`TopLine`, largest growth first, naming the lines that
    allocated what was kept. ``rate`` is the underlying :class:`leaklab.measure.LeakRate`
    (both estimates, the halves, ``fired_by``).
    """

    bytes_per_call: float
    calls: int
    leaking: bool
    top: tuple[TopLine, ...]
    warmup: int = 0
    max_bytes_per_call: float = 64.0
    function: str = "fn"
    rate: LeakRate | None = field(default=None, repr=False)

    @property
    def fired_by(self) -> tuple[str, ...]:
        """Which estimate fired: ``"tracemalloc"``, ``"rss"``, both or neither."""
        return self.rate.fired_by if self.rate is not None else ()

    @property
    def rss_bytes_per_call(self) -> float:
        """Slope of RSS against the call number over the measured calls (coarse)."""
        return self.rate.rss_bytes_per_call if self.rate is not None else float("nan")

    def message(self) -> str:
        """The text :class:`LeakError` carries: bytes per call, the rule, the top lines."""
        verdict = "keeps" if self.leaking else "does not keep"
        lines = [
            f"{self.function} {verdict} memory: {self.bytes_per_call:,.1f} bytes per call "
            f"(limit {self.max_bytes_per_call:,.0f}) over {self.calls:,} calls after "
            f"{self.warmup:,} warm-up calls"
        ]
        rate = self.rate
        if rate is not None:
            if rate.bytes_per_call_halves is not None:
                first, second = rate.bytes_per_call_halves
                lines.append(f"  tracemalloc: {first:,.1f} and {second:,.1f} bytes per call in "
                             f"the two halves")
            if rate.rss_bytes_per_call_halves is not None:
                first, second = rate.rss_bytes_per_call_halves
                lines.append(f"  RSS: {first:,.0f} and {second:,.0f} bytes per call in the two "
                             f"halves (limit {rate.rss_threshold_bytes:,.0f})")
            if self.fired_by:
                lines.append(f"  fired by: {', '.join(self.fired_by)}")
            if self.fired_by == ("rss",):
                lines.append("  (RSS grew but tracemalloc did not: memory allocated outside "
                             "Python's allocators, by a C extension or a library)")
        if self.top:
            lines.append("  top lines by traced growth over the measured calls:")
            width = max(len(str(line)) for line in self.top)
            lines.extend(f"    {str(line):<{width}}  {line.bytes:>14,} B "
                         f"({line.bytes / self.calls:,.1f} per call)" for line in self.top)
        else:
            lines.append("  top lines: none (no traced growth in your code)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.message()


class LeakError(AssertionError):
    """Raised by :func:`assert_no_leak`; ``report`` is the :class:`LeakReport`."""

    def __init__(self, report: LeakReport) -> None:
        super().__init__(report.message())
        self.report = report


def leak_report(
    fn: Callable[..., Any], *args: Any, calls: int = 1000, warmup: int = 100, **kwargs: Any
) -> LeakReport:
    """Call ``fn(*args, **kwargs)`` ``warmup`` times, then ``calls`` times, and report the bytes
    each call keeps, the verdict (more than 64 bytes per call kept, in each half) and the top
    lines that allocated what was kept. Async functions are awaited (see the module docstring).
    """
    calls, warmup, threshold = _checked(fn, calls, warmup, 64.0)
    return _report(fn, args, kwargs, calls=calls, warmup=warmup, threshold=threshold)


def assert_no_leak(
    fn: Callable[..., Any],
    *args: Any,
    calls: int = 1000,
    warmup: int = 100,
    max_bytes_per_call: float = 64,
    **kwargs: Any,
) -> LeakReport:
    """Like :func:`leak_report` with the limit ``max_bytes_per_call``: return the report, or
    raise :class:`LeakError` (an ``AssertionError``) whose message gives the bytes per call and
    the top lines as ``file:line``."""
    __tracebackhide__ = True
    calls, warmup, threshold = _checked(fn, calls, warmup, max_bytes_per_call)
    report = _report(fn, args, kwargs, calls=calls, warmup=warmup, threshold=threshold)
    if report.leaking:
        raise LeakError(report)
    return report


# --------------------------------------------------------------------------- internals


def _checked(fn: Any, calls: Any, warmup: Any, max_bytes_per_call: Any) -> tuple[int, int, float]:
    """The settings checked (TypeError/ValueError naming the argument), before any call."""
    check_callable("fn", fn)
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        kind = "an async generator" if inspect.isasyncgenfunction(fn) else "a generator"
        raise TypeError(f"fn must be a function or an async function, got {kind} function "
                        f"{_name(fn)} (its body would never run): measure "
                        f"lambda: list(gen()) instead")
    return (check_int("calls", calls), check_int("warmup", warmup, 0),
            _check_bytes("max_bytes_per_call", max_bytes_per_call))


def _report(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    calls: int,
    warmup: int,
    threshold: float,
) -> LeakReport:
    """Measure (settings already checked) and build the report."""
    if _is_async(fn):
        return _in_own_loop(fn, args, kwargs, None, calls, warmup, threshold)
    if warmup >= 1:
        # The first warm-up call doubles as a probe: a function that returns a coroutine
        # (``lambda: client.get(key)``) is measured as an async one, its first coroutine awaited.
        first = fn(*args, **kwargs)
        if inspect.iscoroutine(first):
            return _in_own_loop(fn, args, kwargs, first, calls, warmup - 1, threshold)
        del first
        return _measured(fn, args, kwargs, calls, warmup - 1, threshold, warmed=1)
    return _measured(fn, args, kwargs, calls, warmup, threshold)


def _measured(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], calls: int,
              warmup: int, threshold: float, *, name: Any = None, warmed: int = 0) -> LeakReport:
    """Run the measurement; ``warmed`` warm-up calls were made already (reported, not repeated)."""
    snapshots: dict[str, tracemalloc.Snapshot] = {}

    def on_snapshot(when: str) -> None:
        snapshots[when] = tracemalloc.take_snapshot()

    rate = _measure_leak(fn, args, kwargs, calls=calls, warmup=warmup, threshold=threshold,
                         rss_threshold=max(RSS_FLOOR_BYTES, threshold), frames=FRAMES,
                         on_snapshot=on_snapshot)
    top = tuple(TopLine(*line) for line in _top_lines(snapshots["before"], snapshots["after"], TOP))
    snapshots.clear()
    return LeakReport(
        bytes_per_call=rate.bytes_per_call,
        calls=calls,
        leaking=rate.leaking,
        top=top,
        warmup=warmup + warmed,
        max_bytes_per_call=threshold,
        function=_name(fn if name is None else name),
        rate=rate,
    )


def _is_async(fn: Any) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    if inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, type):
        return False
    return inspect.iscoroutinefunction(getattr(type(fn), "__call__", None))


def _in_own_loop(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 first: Any, calls: int, warmup: int, threshold: float) -> LeakReport:
    """Measure an async ``fn`` on a new event loop, one ``run_until_complete`` per call; in a
    helper thread if a loop already runs in this one. ``first`` is the coroutine of a warm-up
    call already made (the probe in :func:`_report`), not counted in ``warmup``."""
    warmed = int(first is not None)

    def measure() -> LeakReport:
        loop = asyncio.new_event_loop()
        try:
            if first is not None:  # the probe's coroutine: its warm-up call is awaited too
                loop.run_until_complete(first)
            run = loop.run_until_complete
            bound = functools.partial(fn, *args, **kwargs) if args or kwargs else fn

            def call() -> Any:
                return run(bound())

            return _measured(call, (), {}, calls, warmup, threshold, name=fn, warmed=warmed)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return measure()
    outcome: list[Any] = []

    def in_thread() -> None:
        try:
            outcome.append(("ok", measure()))
        except BaseException as exc:  # raised again in the caller's thread
            outcome.append(("error", exc))

    helper = threading.Thread(target=in_thread, name="leaklab-leak-report", daemon=True)
    helper.start()
    helper.join()
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


def _name(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) else repr(fn)
