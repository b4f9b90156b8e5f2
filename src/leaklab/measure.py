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

import functools
import gc
import importlib
import math
import os
import pickle
import resource
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import types
import warnings
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
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
_process_handle: psutil.Process | None = None


def _this_process() -> psutil.Process:
    """psutil's handle on the process running now, made again after a fork (a handle made before
    the fork would go on reading the parent)."""
    global _process_handle
    handle = _process_handle
    if handle is None or handle.pid != os.getpid():
        handle = _process_handle = psutil.Process()
    return handle


def rss_mib() -> float:
    """The current process's resident set size, in MiB."""
    return _this_process().memory_info().rss / MIB


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


# --------------------------------------------------------------------------- ending with the parent
#
# Neither the sampler (memory_profiler forks one per run) nor the child of track_isolated may
# outlive the process that started it: killed kernels and interrupted runs left them behind.

_PR_SET_PDEATHSIG = 1
_prctl: Any = None  # libc's prctl once loaded; False where there is none


def _load_prctl() -> Any:
    """libc's ``prctl`` on Linux (loaded once, before any fork that needs it), else None."""
    global _prctl
    if _prctl is None:
        _prctl = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                fn = ctypes.CDLL(None, use_errno=True).prctl
                fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                               ctypes.c_ulong]
                fn.restype = ctypes.c_int
                _prctl = fn
            except (OSError, AttributeError):
                pass
    return _prctl or None


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGKILL)


def end_with_parent(parent_pid: int) -> None:
    """Make this process end (SIGKILL) as soon as ``parent_pid``, its parent, ends.

    On Linux the kernel does it (``prctl(PR_SET_PDEATHSIG)``), even while this process runs C
    code; elsewhere a daemon thread checks ``os.getppid()`` five times a second.
    """
    prctl = _load_prctl()
    if prctl is not None and prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
        if os.getppid() != parent_pid:  # the parent ended before the request was made
            os.kill(os.getpid(), signal.SIGKILL)
        return
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True,
                     name="leaklab-parent-watch").start()


# Threads (by ident) about to fork memory_profiler's sampler, with the pid of their process.
_sampler_forks: dict[int, int] = {}


def _after_fork() -> None:
    """In a new child: if it is the sampler (forked by a thread that is starting one), it ends
    with its parent, and ignores Ctrl-C: a terminal sends SIGINT to the whole process group,
    and a sampler killed by it left its parent waiting forever for the samples. The parent gets
    the KeyboardInterrupt and stops the sampler itself."""
    parent = _sampler_forks.get(threading.get_ident())
    _sampler_forks.clear()
    if parent is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        end_with_parent(parent)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


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
    bound_to = getattr(target, "__self__", None)
    if bound_to is not None and not isinstance(bound_to, (type, types.ModuleType)):
        # Its import path names the plain function: the child would call it without the object.
        raise TypeError(
            f"target {target!r} is a bound method: a fresh process cannot rebuild the "
            f"{type(bound_to).__name__} object it is bound to; pass a module-level function "
            "(a classmethod or staticmethod works too) that builds what it needs"
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


def track_isolated(
    target: Any, *args: Any, interval: float = 0.01, timeout: float | None = None, **kwargs: Any
) -> MemoryTrace:
    """Like :func:`track`, but the function runs in a fresh Python process.

    Every variant measured this way starts from the same baseline (a new interpreter that has
    imported leaklab), which is what side-by-side RSS curves need. ``target`` is an importable
    function or a ``"package.module:function"`` string (not a bound method: the child could not
    rebuild its object); the arguments and the result travel by pickle. An exception in the child
    is raised again here (a RuntimeError with the child's traceback if it cannot be unpickled).

    If the target ends its process instead (``sys.exit()``, ``os._exit()``, a KeyboardInterrupt
    raised in it, a crash), a RuntimeError says so. ``timeout`` (seconds, default none) stops a
    run that takes longer with a TimeoutError. Nothing is left behind in any case: the child runs
    in a session of its own, which is killed when the run ends; the child and its sampler end
    with this process if it dies first; request and response travel in unnamed temporary files.
    ``interval`` and ``timeout`` are this function's own: they are not passed to the target.
    """
    name = _target_name(target)
    check_seconds("interval", interval)
    if timeout is not None:
        check_seconds("timeout", timeout)
    request = pickle.dumps((name, args, kwargs, interval))  # fails here, before any process starts
    with tempfile.TemporaryFile() as request_file, tempfile.TemporaryFile() as response_file, \
            tempfile.TemporaryFile() as stderr_file:
        request_file.write(request)
        request_file.flush()
        request_file.seek(0)
        proc = subprocess.Popen(
            [sys.executable, "-m", "leaklab._isolated", str(response_file.fileno()), str(os.getpid())],
            stdin=request_file,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            pass_fds=(response_file.fileno(),),
            start_new_session=True,
        )
        try:
            finished = _wait_for_exit(proc, timeout)
        finally:
            _end_session(proc)  # also on KeyboardInterrupt here
        if not finished:
            raise TimeoutError(
                f"isolated run of {name} did not finish within timeout={timeout} s and was stopped"
            )
        stderr_file.seek(0)
        tail = stderr_file.read().decode("utf-8", "replace").strip().splitlines()[-15:]
        stderr_text = ("; its stderr ended with:\n" + "\n".join(tail)) if tail else ""
        response_file.seek(0)
        payload = response_file.read()
    if not payload:
        code = proc.returncode
        how = (f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}")
        raise RuntimeError(f"isolated run of {name}: the child process {how} without a result"
                           + stderr_text)
    try:
        outcome = pickle.loads(payload)
    except Exception as exc:
        raise RuntimeError(
            f"isolated run of {name}: its result could not be unpickled in this process "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if "ended" in outcome:
        raise RuntimeError(f"isolated run of {name}: the target {outcome['ended']}" + stderr_text)
    if "error" in outcome:
        error, reason = None, "it could not be pickled and rebuilt in the child"
        if outcome["error"] is not None:
            try:
                error = pickle.loads(outcome["error"])
            except Exception as exc:  # its class is not importable here, say
                reason = f"it cannot be unpickled here: {type(exc).__name__}: {exc}"
        if error is None:
            raise RuntimeError(
                f"isolated run of {name} raised {outcome['error_type']}: {outcome['error_text']}\n"
                f"({reason}, so it arrives as this RuntimeError); the child's traceback:\n"
                f"{outcome['traceback']}"
            )
        raise error
    return MemoryTrace(frame=_frame(outcome["frame"]), result=outcome["result"])


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _wait_for_exit(proc: subprocess.Popen[Any], timeout: float | None) -> bool:
    """Wait until ``proc`` has exited, without reaping it (its pid stays its own, so its process
    group can still be killed safely). False when ``timeout`` passed first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError:  # an old kernel
            pidfd = None
    try:
        delay = 0.001
        while True:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if pidfd is not None:
                select.select([pidfd], [], [], left)  # readable once the process has exited
            else:
                time.sleep(delay if left is None else min(delay, left))
                delay = min(delay * 2, 0.05)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _end_session(proc: subprocess.Popen[Any]) -> None:
    """Kill whatever still runs in the child's session (the child, its sampler, anything the
    target started there), then reap the child."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


# --------------------------------------------------------------------------- leak rate


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
