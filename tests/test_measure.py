"""Tests for leaklab.measure: the harness every chapter's claims rest on."""

from __future__ import annotations

import gc
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import psutil
import pytest

from leaklab import measure
from leaklab.measure import (
    LeakRate,
    MemoryTrace,
    fit_slope,
    gc_pauses,
    leak_rate,
    rss_mib,
    track,
    track_isolated,
)
from leaklab.scenarios import basics

_PLANTED: list[bytes] = []


def _leak_1k() -> None:
    _PLANTED.append(bytes(1024))


def _churn_10mb() -> int:
    block = b"x" * 10_000_000
    return len(block)


def _no_op() -> None:
    return None


def _boom() -> None:
    raise KeyError("from the workload")


@pytest.fixture(autouse=True)
def _clean_planted():
    yield
    _PLANTED.clear()
    basics.reset()


def test_rss_mib_is_plausible_and_sees_an_allocation():
    before = rss_mib()
    block = b"x" * (64 * 1024 * 1024)
    after = rss_mib()
    del block
    assert 5 < before < 100_000
    assert after - before > 48  # 64 MiB written, most of it must show as resident


def test_fit_slope_recovers_a_line_and_handles_degenerate_input():
    assert fit_slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert fit_slope([1], [5]) == 0.0
    assert fit_slope([2, 2, 2], [1, 2, 3]) == 0.0
    with pytest.raises(ValueError, match="same length"):
        fit_slope([1, 2], [1])


def test_track_sees_growth_of_a_workload_that_keeps_memory():
    trace = track(basics.keep, steps=20, mib_per_step=2.0, pause=0.01)
    assert isinstance(trace, MemoryTrace)
    assert list(trace.frame.columns) == ["seconds", "rss_mib"]
    assert len(trace.frame) >= 5
    assert trace.result == 20
    # 40 MiB kept: the growth must show most of it, and the slope must be clearly positive.
    assert 30 < trace.growth_mib < 60
    assert trace.slope_mib_per_s > 20
    assert trace.peak_mib >= trace.frame["rss_mib"].iloc[0] + 30


def test_track_runs_the_function_exactly_once():
    calls = []
    trace = track(lambda: calls.append(1))  # far shorter than five samples
    assert calls == [1]
    assert trace.frame["seconds"].iloc[0] == 0.0


def test_track_reraises_the_workload_error():
    with pytest.raises(KeyError, match="from the workload"):
        track(_boom)


def test_track_isolated_starts_each_variant_from_a_fresh_baseline():
    keep = track_isolated(basics.keep, steps=20, mib_per_step=2.0, pause=0.01)
    churn = track_isolated("leaklab.scenarios.basics:churn", steps=20, mib_per_step=2.0, pause=0.01)
    assert keep.result == 20
    assert churn.result == 20 * 2 * 1024 * 1024
    assert keep.growth_mib > 30
    assert churn.growth_mib < 10
    # Same interpreter, same imports: the two baselines agree within a few MiB.
    assert abs(keep.frame["rss_mib"].iloc[0] - churn.frame["rss_mib"].iloc[0]) < 10
    # Nothing was kept in this process.
    assert basics.KEPT == []


def test_track_isolated_reraises_the_child_error():
    with pytest.raises(KeyError, match="from the workload"):
        track_isolated("tests.test_measure:_boom")


@pytest.mark.parametrize(
    "target, error",
    [
        (lambda: None, ValueError),
        ("no_colon_here", ValueError),
        (":fn", ValueError),
        (42, TypeError),
    ],
)
def test_track_isolated_rejects_targets_a_child_cannot_import(target, error):
    with pytest.raises(error, match="target"):
        track_isolated(target)


def test_leak_rate_measures_a_planted_1kib_leak_within_15_percent():
    rate = leak_rate(_leak_1k, calls=1000, warmup=100)
    assert isinstance(rate, LeakRate)
    assert rate.calls == 1000
    assert rate.bytes_per_call == pytest.approx(1024, rel=0.15)
    assert rate.leaking


def test_leak_rate_rss_slope_sees_a_leak_in_a_fresh_process():
    # In this long-lived test process freed heap memory can absorb a small leak without RSS
    # rising, so the RSS estimate is checked in a fresh interpreter, with 16 KiB per call.
    code = (
        "from leaklab.measure import leak_rate\n"
        "kept = []\n"
        "rate = leak_rate(lambda: kept.append(b'x' * 16384), calls=2000, warmup=10)\n"
        "print(rate.rss_bytes_per_call / rate.bytes_per_call)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 0.7 < float(out.stdout) < 1.5


def test_leak_rate_says_a_10mb_churn_is_not_leaking():
    rate = leak_rate(_churn_10mb, calls=200, warmup=20)
    assert not rate.leaking
    assert abs(rate.bytes_per_call) < 64
    assert rate.rss_bytes_per_call < 64 * 1024  # no trend at all compared with 10 MB per call


def test_leak_rate_threshold_is_configurable():
    assert leak_rate(_leak_1k, calls=200, warmup=10, leak_threshold_bytes=4096).leaking is False


def test_leak_rate_leaves_an_outer_tracemalloc_running():
    import tracemalloc

    tracemalloc.start()
    try:
        leak_rate(_no_op, calls=10, warmup=0)
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()
    leak_rate(_no_op, calls=10, warmup=0)
    assert not tracemalloc.is_tracing()


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"calls": 0}, ValueError, "calls"),
        ({"calls": -5}, ValueError, "calls"),
        ({"calls": True}, TypeError, "calls"),
        ({"calls": 10.0}, TypeError, "calls"),
        ({"warmup": -1}, ValueError, "warmup"),
        ({"warmup": "3"}, TypeError, "warmup"),
        ({"leak_threshold_bytes": -1}, ValueError, "leak_threshold_bytes"),
        ({"leak_threshold_bytes": math.nan}, ValueError, "leak_threshold_bytes"),
    ],
)
def test_leak_rate_rejects_bad_counts(kwargs, error, name):
    with pytest.raises(error, match=name):
        leak_rate(_no_op, **kwargs)


@pytest.mark.parametrize("func", [track, leak_rate])
def test_non_callables_are_rejected(func):
    with pytest.raises(TypeError, match="fn must be callable"):
        func("not a function")


@pytest.mark.parametrize(
    "interval, error", [(0, ValueError), (-0.1, ValueError), (math.inf, ValueError),
                        (True, TypeError), ("0.1", TypeError)]
)
def test_bad_intervals_are_rejected(interval, error):
    with pytest.raises(error, match="interval"):
        track(_no_op, interval=interval)
    with pytest.raises(error, match="interval"):
        track_isolated(basics.churn, interval=interval)


def test_gc_pauses_records_every_collection_in_the_block():
    with gc_pauses() as pauses:
        for _ in range(3):
            a, b = [], []
            a.append(b)
            b.append(a)  # a reference cycle only the cyclic collector can free
            del a, b
            gc.collect()
    frame = pauses.frame
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["generation", "duration_ms", "collected"]
    full = frame[frame["generation"] == 2]
    assert len(full) >= 3
    assert (full["collected"] >= 2).all()
    assert (frame["duration_ms"] >= 0).all()
    assert pauses.closed
    assert pauses.count == len(frame)
    # The callback is gone after the block.
    assert all(getattr(cb, "__qualname__", "") != "gc_pauses.<locals>.callback" for cb in gc.callbacks)


def test_gc_pauses_unregisters_on_error():
    n = len(gc.callbacks)
    with pytest.raises(RuntimeError):
        with gc_pauses():
            raise RuntimeError("inside")
    assert len(gc.callbacks) == n


def test_peak_rss_is_at_least_current_rss():
    assert measure.peak_rss_mib() >= rss_mib() - 1


# --------------------------------------------------------------------------- fitted_rise, progress


def test_fitted_rise_is_the_rise_of_the_least_squares_line():
    import pandas as pd

    from leaklab.measure import MemoryTrace, fitted_rise

    seconds = [i * 0.5 for i in range(11)]
    rising = MemoryTrace(pd.DataFrame({"seconds": seconds, "rss_mib": [10 + 4 * s for s in seconds]}))
    assert fitted_rise(rising) == pytest.approx(20.0)
    # One late spike moves growth_mib by its whole height, the fitted rise far less.
    spiky = MemoryTrace(pd.DataFrame({"seconds": seconds, "rss_mib": [10.0] * 10 + [60.0]}))
    assert spiky.growth_mib == 50 and fitted_rise(spiky) < 0.5 * spiky.growth_mib
    with pytest.raises(TypeError, match="MemoryTrace"):
        fitted_rise([1, 2, 3])


def _work_with_progress(n: int) -> int:
    from leaklab.measure import progress

    kept = []
    for i in range(1, n + 1):
        kept.append(b"x" * 65536)  # written, so every page is resident
        if i % 50 == 0:
            progress(i)
        time.sleep(0.0003)
    return n


def test_progress_adds_a_done_column_that_runs_from_zero_to_the_last_mark():
    from leaklab.measure import progress, track, track_isolated

    # In a fresh process: in this long-lived one, freed heap from earlier tests would absorb the
    # allocations without RSS rising (chapter 00's lesson).
    trace = track_isolated("tests.test_measure:_work_with_progress", 600)
    done = trace.frame["done"].tolist()
    assert trace.has_progress and done[0] == 0 and done[-1] == 600
    assert all(b >= a for a, b in zip(done, done[1:]))
    # 64 KiB kept per item: the slope against items says so, within allocator slack.
    assert 0.6 * 65536 < trace.bytes_per_unit < 1.5 * 65536
    progress(5)  # outside a tracked run: a no-op that keeps nothing
    import leaklab.measure as measure

    assert measure._marks is None
    plain = track(time.sleep, 0.05)
    assert not plain.has_progress
    with pytest.raises(ValueError, match="progress"):
        plain.bytes_per_unit


# --------------------------------------------------------------------------- reliability (issue 10)
#
# Every case that could hang before its fix runs in a fresh interpreter with a timeout. That
# interpreter and everything it starts carry a tag in their environment, so the test can find (and
# kill) whatever survives, and its TMPDIR is a folder of the test's own, which must stay empty.

ROOT = Path(__file__).resolve().parent.parent
_TAG = "LEAKLAB_TEST_TAG"


def _tagged(tag: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose environment carries ``tag``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(_TAG) == tag and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            pass
    return found


def _kill_tagged(tag: str) -> None:
    for proc in _tagged(tag):
        try:
            proc.kill()
        except psutil.Error:
            pass


def _survivors(tag: str, grace: float = 5.0) -> list[str]:
    """What still runs with ``tag`` after ``grace`` seconds (then killed, so nothing outlives the test)."""
    deadline = time.monotonic() + grace
    while (left := _tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.05)
    described = []
    for proc in left:
        try:
            described.append(f"{proc.pid}: {' '.join(proc.cmdline())[:120]}")
        except psutil.Error:
            pass
    _kill_tagged(tag)
    return described


class _Tagged:
    """A fresh interpreter running ``code`` in its own session, tagged, with TMPDIR = ``tmp``."""

    def __init__(self, code: str, tmp: Path) -> None:
        self.tag = uuid.uuid4().hex
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, **{_TAG: self.tag, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)})
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tagged(self.tag)
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"still running after {timeout} s (hung); stdout={out!r} stderr={err[-2000:]!r}")
        return self.proc.returncode, out, err

    def assert_nothing_left(self) -> None:
        assert _survivors(self.tag) == []
        assert sorted(os.listdir(self.tmp)) == []


def _exits_2() -> None:
    sys.exit(2)


def _os_exit_3() -> None:
    os._exit(3)


def _raises_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


def _argparse_main() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--size", type=int)
    parser.parse_args(["--colour", "red"])


def _sleeps(seconds: float = 60) -> None:
    time.sleep(seconds)


_ISOLATED_EXIT = """
import time
from leaklab.measure import track_isolated
start = time.monotonic()
try:
    track_isolated("tests.test_measure:{target}")
except RuntimeError as exc:
    print("RuntimeError:", exc)
print(f"seconds={{time.monotonic() - start:.1f}}")
"""


@pytest.mark.parametrize(
    "target, expected",
    [
        ("_exits_2", "called sys.exit(2)"),
        ("_os_exit_3", "exited with code 3 without a result"),
        ("_raises_keyboard_interrupt", "raised KeyboardInterrupt"),
        ("_argparse_main", "unrecognized arguments: --colour red"),  # its stderr is quoted
    ],
)
def test_track_isolated_reports_a_target_that_ends_its_process(tmp_path, target, expected):
    run = _Tagged(_ISOLATED_EXIT.format(target=target), tmp_path / "tmp")
    code, out, err = run.finish(timeout=60)
    assert code == 0, err
    assert "RuntimeError:" in out and expected in out, out
    assert f"tests.test_measure:{target}" in out
    run.assert_nothing_left()


_ISOLATED_SLEEP = """
from leaklab.measure import track_isolated
track_isolated("tests.test_measure:_sleeps")
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_track_isolated_child_and_sampler_end_when_the_parent_dies(tmp_path, sig):
    run = _Tagged(_ISOLATED_SLEEP, tmp_path / "tmp")
    try:
        deadline = time.monotonic() + 60
        # The parent, the isolated child and memory_profiler's sampler (a fork of the child).
        while len(_tagged(run.tag)) < 3:
            assert run.proc.poll() is None, run.proc.communicate()
            assert time.monotonic() < deadline, "the isolated run never started"
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(run.proc.pid, sig)
        run.proc.communicate(timeout=30)
        assert _survivors(run.tag, grace=5.0) == []
        # The request and the response never had a name: a killed parent leaves no file either.
        assert os.listdir(run.tmp) == []
    finally:
        _kill_tagged(run.tag)


_ISOLATED_INTERRUPTED = """
import os, signal, threading
from leaklab.measure import track_isolated
threading.Timer({delay}, os.kill, (os.getpid(), signal.SIGINT)).start()  # Ctrl-C in a kernel
try:
    track_isolated("tests.test_measure:_sleeps")
except KeyboardInterrupt:
    print("KeyboardInterrupt")
"""


@pytest.mark.parametrize("delay", [0.3, 3.0], ids=["starting", "sampling"])
def test_track_isolated_interrupted_in_the_parent_leaves_nothing(tmp_path, delay):
    run = _Tagged(_ISOLATED_INTERRUPTED.format(delay=delay), tmp_path / "tmp")
    code, out, err = run.finish(timeout=30)
    assert (code, out.strip()) == (0, "KeyboardInterrupt"), err
    run.assert_nothing_left()


def _children() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


@pytest.fixture()
def private_tmp(tmp_path, monkeypatch):
    """tempfile's folder is a fresh one, checked empty (and no child process left) afterwards."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert _children() == []
    assert os.listdir(folder) == []


def test_track_isolated_timeout_stops_a_run_that_takes_too_long(private_tmp):
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"_sleeps.*1\.5 s"):
        track_isolated("tests.test_measure:_sleeps", 30, timeout=1.5)
    assert time.monotonic() - start < 15


@pytest.mark.parametrize(
    "timeout, error", [(0, ValueError), (-1, ValueError), (math.nan, ValueError),
                       (True, TypeError), ("10", TypeError)]
)
def test_track_isolated_rejects_a_bad_timeout(timeout, error):
    with pytest.raises(error, match="timeout"):
        track_isolated(_no_op, timeout=timeout)


class _NeedsTwoArgs(Exception):
    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"{first} and {second}")


def _raises_unpicklable() -> None:
    raise _NeedsTwoArgs("bread", "butter")


def test_track_isolated_explains_an_exception_that_cannot_be_unpickled(private_tmp):
    with pytest.raises(RuntimeError) as info:
        track_isolated("tests.test_measure:_raises_unpicklable")
    text = str(info.value)
    assert "_NeedsTwoArgs" in text and "bread and butter" in text
    assert "Traceback" in text and "_raises_unpicklable" in text  # the child's traceback


class _Workloads:
    def method(self) -> int:
        return 1

    @classmethod
    def build(cls) -> str:
        return cls.__name__


def test_track_isolated_refuses_a_bound_method_and_runs_a_classmethod(private_tmp):
    from leaklab.measure import _target_name

    with pytest.raises(TypeError, match="bound method"):
        track_isolated(_Workloads().method)
    with pytest.raises(TypeError, match="bound method"):
        track_isolated(basics.KEPT.append)  # a builtin method bound to an object
    assert _target_name(_Workloads.build).endswith(":_Workloads.build")  # resolves in a child
    assert track_isolated("tests.test_measure:_Workloads.build").result == "_Workloads"


_TRACK_INTERRUPTED = """
import multiprocessing, os, signal, sys, time
from leaklab.measure import track

def interrupted():
    os.kill(os.getpid(), signal.SIGINT)  # this process alone, as a kernel's interrupt does
    time.sleep(10)

def group_interrupted():
    os.killpg(0, signal.SIGINT)  # the whole process group, sampler included, as Ctrl-C in a terminal
    time.sleep(10)

def exits():
    sys.exit(3)

try:
    track({target})
except KeyboardInterrupt:
    print("KeyboardInterrupt propagated")
print("children:", multiprocessing.active_children())
"""


@pytest.mark.parametrize("target, code, expected", [
    ("interrupted", 0, "KeyboardInterrupt propagated\nchildren: []"),
    ("group_interrupted", 0, "KeyboardInterrupt propagated\nchildren: []"),
    ("exits", 3, ""),
])
def test_track_stops_its_sampler_on_keyboard_interrupt_and_system_exit(tmp_path, target, code, expected):
    run = _Tagged(_TRACK_INTERRUPTED.format(target=target), tmp_path / "tmp")
    returncode, out, err = run.finish(timeout=30)
    assert returncode == code, err
    assert out.strip() == expected
    run.assert_nothing_left()


def test_rss_mib_in_a_forked_child_measures_the_child():
    rss_mib()  # the handle exists in the parent before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: keep 200 MiB and report what rss_mib saw
        try:
            before = rss_mib()
            block = b"x" * (200 * 1024 * 1024)
            os.write(write, f"{rss_mib() - before:.0f} {len(block)}".encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        growth, _ = os.read(read, 100).decode().split()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert float(growth) > 150


# leak_rate's verdict

_NATIVE_LEAK = """
import ctypes, ctypes.util
from leaklab.measure import leak_rate
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
rate = leak_rate(lambda: libc.malloc(4096))   # never freed: invisible to tracemalloc
print(rate.leaking, "+".join(rate.fired_by) or "-", round(rate.bytes_per_call), round(rate.rss_bytes_per_call))
"""


def test_leak_rate_sees_a_native_leak_through_rss(tmp_path):
    import ctypes.util

    if sys.platform != "linux" or not ctypes.util.find_library("c"):
        pytest.skip("needs the C library's malloc (glibc or musl)")
    run = _Tagged(_NATIVE_LEAK, tmp_path / "tmp")
    code, out, err = run.finish(timeout=60)
    assert code == 0, err
    leaking, fired_by, traced, rss = out.split()
    assert leaking == "True" and fired_by == "rss", out
    assert abs(int(traced)) < 64 and 3000 < int(rss) < 6000, out
    run.assert_nothing_left()


def test_leak_rate_says_which_estimate_fired_for_a_python_leak():
    rate = leak_rate(_leak_1k)
    assert rate.leaking and "tracemalloc" in rate.fired_by


def _fresh_payload(i: int) -> bytes:
    return i.to_bytes(8, "little") * 32  # a new 256-byte object each call, always the same size


@pytest.mark.parametrize("kind", ["LRUCache(500)", "deque(maxlen=500)"])
def test_leak_rate_default_does_not_flag_a_bounded_structure_that_plateaus(kind):
    import collections
    import itertools

    from leaklab.caches import LRUCache

    keys = itertools.count()
    if kind.startswith("LRUCache"):
        cache = LRUCache(500)

        def fill() -> None:
            i = next(keys)
            cache.set(f"key {i}", _fresh_payload(i))
    else:
        recent: collections.deque[bytes] = collections.deque(maxlen=500)

        def fill() -> None:
            recent.append(_fresh_payload(next(keys)))

    rate = leak_rate(fill)
    assert not rate.leaking and rate.fired_by == (), rate
    # The same structure with no bound is a leak, and is called one.
    grows: list[bytes] = []
    rate = leak_rate(lambda: grows.append(_fresh_payload(next(keys))))
    assert rate.leaking and "tracemalloc" in rate.fired_by, rate


def test_leak_rate_does_not_flag_a_churner():
    rate = leak_rate(_churn_10mb, calls=200, warmup=20)
    assert not rate.leaking and rate.fired_by == (), rate
    rate = leak_rate(lambda: [[] for _ in range(1000)])
    assert not rate.leaking and rate.fired_by == (), rate


def test_the_measuring_loop_calls_its_snapshot_hook_while_tracing_with_the_frames_asked():
    """The internal hook leaklab.testing uses: "before" after the warm-up, "after" at the end,
    both while tracemalloc traces with the frames asked; leak_rate's verdict is unchanged."""
    import tracemalloc

    seen: list[tuple[str, bool, int, int]] = []

    def hook(when: str) -> None:
        seen.append((when, tracemalloc.is_tracing(), tracemalloc.get_traceback_limit(),
                     len(_PLANTED)))

    rate = measure._measure_leak(_leak_1k, (), {}, calls=40, warmup=5, threshold=64.0,
                                 rss_threshold=1024.0, frames=12, on_snapshot=hook)
    assert seen == [("before", True, 12, 5), ("after", True, 12, 45)]
    assert rate.leaking and 1024 <= rate.bytes_per_call <= 1100 and not tracemalloc.is_tracing()
