"""Tests for leaklab.measure: the harness every chapter's claims rest on."""

from __future__ import annotations

import gc
import math
import subprocess
import sys
import time

import pandas as pd
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
    from leaklab.measure import progress, track

    trace = track(_work_with_progress, 600)
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
