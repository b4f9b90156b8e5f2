"""How many bytes one call keeps, and the verdict: leaking or not (chapter 00, then every chapter).

:func:`leak_rate` calls a function many times under tracemalloc while it samples RSS, and returns a
:class:`LeakRate`: the bytes each call keeps, estimated two ways, and the rule that turns them into
a verdict. The rule compares the two halves of the measured calls, so that a bounded structure that
fills up early is not mistaken for a leak. :mod:`leaklab.testing` (chapter 06) measures with the
same loop and judges by the same rule.
"""

from __future__ import annotations

import functools
import gc
import math
import tracemalloc
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from leaklab._checks import check_callable, check_int
from leaklab.measure.rss import _this_process
from leaklab.measure.trace import fit_slope


@dataclass(frozen=True)
class LeakRate:
    """How much memory one call keeps, estimated two ways, and the verdict.

    ``bytes_per_call`` comes from tracemalloc (net traced bytes after the calls, collected, divided
    by ``calls``): exact for memory Python allocates. ``rss_bytes_per_call`` is the slope of RSS
    against the call number: coarse (page-sized steps, allocator reuse) but it sees memory that
    tracemalloc cannot, such as C extensions.

    The verdict compares the two halves of the measured calls. A leak keeps memory at the same
    rate in both halves; a bounded structure (a cache, a ``deque(maxlen=...)``, a buffer flushed
    every N calls) grows at most until it is full, so its second half is flat. The rule:

    - ``"tracemalloc"`` fires when each half keeps more than ``threshold_bytes`` per call
      (``bytes_per_call_halves``);
    - ``"rss"`` fires when RSS rises by more than ``rss_threshold_bytes`` per call in each half
      (``rss_bytes_per_call_halves``, least-squares slopes); its bar is higher because RSS moves
      in pages and allocator arenas. It is how a native leak (C memory never freed) is caught;
    - ``leaking`` is true when at least one fired; ``fired_by`` names which, in that order.

    A result built by hand without the halves judges on the whole-run estimates.
    """

    bytes_per_call: float
    rss_bytes_per_call: float
    calls: int
    threshold_bytes: float = 64.0
    rss_threshold_bytes: float = 1024.0
    bytes_per_call_halves: tuple[float, float] | None = None
    rss_bytes_per_call_halves: tuple[float, float] | None = None
    fired_by: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        traced = self.bytes_per_call_halves or (self.bytes_per_call, self.bytes_per_call)
        rss = self.rss_bytes_per_call_halves or (self.rss_bytes_per_call, self.rss_bytes_per_call)
        fired = []
        if min(traced) > self.threshold_bytes:
            fired.append("tracemalloc")
        if min(rss) > self.rss_threshold_bytes:
            fired.append("rss")
        object.__setattr__(self, "fired_by", tuple(fired))

    @property
    def leaking(self) -> bool:
        """True when either estimate fired (see the class docstring for the rule)."""
        return bool(self.fired_by)


def _check_bytes(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return float(value)


def leak_rate(
    fn: Callable[..., Any],
    *args: Any,
    calls: int = 1000,
    warmup: int = 100,
    leak_threshold_bytes: float = 64.0,
    rss_threshold_bytes: float = 1024.0,
    **kwargs: Any,
) -> LeakRate:
    """Call ``fn(*args, **kwargs)`` ``warmup`` times, then ``calls`` times, and estimate the bytes
    each call keeps.

    The warm-up calls fill one-time caches (interned strings, lazy imports, a bounded buffer) so
    they are not counted as a leak. tracemalloc is started for the run only if it is not already
    running (then it is left running).

    ``leaking`` is decided on each half of the measured calls (see :class:`LeakRate`): a leak
    keeps memory in both halves, by tracemalloc (more than ``leak_threshold_bytes`` per call) or
    by RSS (more than ``rss_threshold_bytes`` per call, for memory tracemalloc cannot see). A
    bounded structure is judged correctly once it is full before the second half starts, that is
    when ``warmup + calls // 2`` calls fill it (with the defaults, 600 calls): for a bigger one
    raise ``calls`` or ``warmup``.
    """
    check_callable("fn", fn)
    calls = check_int("calls", calls)
    warmup = check_int("warmup", warmup, 0)
    threshold = _check_bytes("leak_threshold_bytes", leak_threshold_bytes)
    rss_threshold = _check_bytes("rss_threshold_bytes", rss_threshold_bytes)
    return _measure_leak(fn, args, kwargs, calls=calls, warmup=warmup, threshold=threshold,
                         rss_threshold=rss_threshold)


def _measure_leak(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    calls: int,
    warmup: int,
    threshold: float,
    rss_threshold: float,
    frames: int = 1,
    on_snapshot: Callable[[str], None] | None = None,
) -> LeakRate:
    """The measuring loop behind :func:`leak_rate` (arguments already checked) and
    :func:`leaklab.testing.leak_report`.

    ``frames`` is how many frames tracemalloc keeps per allocation when this run starts it.
    ``on_snapshot`` (if given) is called with ``"before"`` after the warm-up and its collection,
    just before the baseline is read (so what it allocates and keeps counts in both ends), and
    with ``"after"`` once the last total is read, while tracemalloc still traces: the place to
    take the two snapshots whose difference names the lines that kept memory.
    """
    # Sample RSS about 64 times, plus once at the middle. The buffers are allocated before
    # tracing starts, and array stores raw numbers, so the sampling itself leaves nothing in the
    # traced total.
    step = max(1, calls // 64)
    size = calls // step + 3
    xs = array("q", [0]) * size
    ys = array("q", [0]) * size
    memory_info = _this_process().memory_info
    traced = tracemalloc.get_traced_memory
    mid = calls // 2
    # Between two calls the loop allocates nothing (no counter past 256, no keyword dict:
    # itertools.repeat yields the same None, a partial holds the arguments): under tracemalloc
    # every allocation costs a traceback, and the loop's own would slow every call.
    call = functools.partial(fn, *args, **kwargs) if args or kwargs else fn

    def calls_between(done: int, until: int, k: int) -> int:
        """Make calls ``done + 1`` to ``until``, sampling RSS after each multiple of ``step``
        (in ``xs``/``ys`` from index ``k``); return the next free index."""
        for mark in range((done // step + 1) * step, until + 1, step):
            for _ in repeat(None, mark - done):
                call()  # the measured call
            done = mark
            xs[k] = mark
            ys[k] = memory_info().rss
            k += 1
        for _ in repeat(None, until - done):
            call()  # the measured call
        return k

    # Tracing starts before the warm-up: a bounded structure that the warm-up fills is then made
    # of traced objects, and replacing them later nets to zero instead of counting as growth.
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start(frames)
    try:
        for _ in repeat(None, warmup):
            call()  # the measured call
        gc.collect()
        if on_snapshot is not None:
            on_snapshot("before")
        before = traced()[0]
        ys[0] = memory_info().rss
        k = calls_between(0, mid, 1)
        gc.collect()
        middle = traced()[0]
        boundary = k  # the sample at the middle, after the collection: in both halves
        xs[k] = mid
        ys[k] = memory_info().rss
        k = calls_between(mid, calls, k + 1)
        gc.collect()
        after = traced()[0]
        if on_snapshot is not None:
            on_snapshot("after")
    finally:
        if started_here:
            tracemalloc.stop()
    halves = rss_halves = None
    if mid >= 1:
        halves = ((middle - before) / mid, (after - middle) / (calls - mid))
        rss_halves = (fit_slope(xs[:boundary + 1], ys[:boundary + 1]),
                      fit_slope(xs[boundary:k], ys[boundary:k]))
    return LeakRate(
        bytes_per_call=(after - before) / calls,
        rss_bytes_per_call=fit_slope(xs[:k], ys[:k]),
        calls=calls,
        threshold_bytes=threshold,
        rss_threshold_bytes=rss_threshold,
        bytes_per_call_halves=halves,
        rss_bytes_per_call_halves=rss_halves,
    )

