"""Chapter 00's workloads: leaklab.scenarios.oom, basics, gc_cost and arenas.

Each test checks what the chapter relies on a workload to do, with numbers small enough to run in
about a second; the chapter itself re-measures them at full size.
"""

from __future__ import annotations

import gc
import inspect
import linecache
import os
import sys
import tracemalloc

import psutil
import pytest

from leaklab.measure import fit_slope, track_isolated
from leaklab.scenarios import arenas, basics, gc_cost, oom


@pytest.fixture(autouse=True)
def _clean():
    yield
    oom.reset()
    basics.reset()
    arenas.KEPT.clear()


def _line_of(function, text: str) -> int:
    lines, first = inspect.getsourcelines(function)
    return first + next(i for i, line in enumerate(lines) if text in line)


# --------------------------------------------------------------------------- oom


def test_handlers_keep_what_they_say():
    for _ in range(300):
        oom.handle_leaky()
        oom.handle_fixed()
    assert len(oom.HISTORY) == 300 and len(oom.RECENT) == 100
    oom.reset()
    assert not oom.HISTORY and not oom.RECENT and not oom.PINNED


def test_serve_counts_and_rejects_unknown_handlers():
    assert oom.serve(2_500, "leaky", pause=0) == 2_500
    assert oom.serve(2_500, "fixed", pause=0) == 2_500 + 100
    with pytest.raises(ValueError, match="handler"):
        oom.serve(10, "leaky ")
    with pytest.raises(ValueError, match="handler"):
        oom.run_with_limit("nope")
    with pytest.raises(TypeError, match="limit_mib"):
        oom.run_with_limit("leaky", limit_mib=True)
    with pytest.raises(ValueError, match="limit_mib"):
        oom.run_with_limit("leaky", limit_mib=0)
    with pytest.raises(ValueError, match="requests"):
        oom.run_with_limit("leaky", requests=0)


def test_leave_free_heap_pins_one_block_in_64():
    oom.leave_free_heap(2)
    assert len(oom.PINNED) == 2 * 1024 // 64


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux")
def test_leaky_server_dies_when_its_bodies_fill_the_limit_and_the_fixed_one_does_not():
    leaky = oom.run_with_limit("leaky", limit_mib=16)
    fixed = oom.run_with_limit("fixed", limit_mib=16)
    assert leaky.died and leaky.error == "MemoryError"
    assert 0.7 < leaky.kept_mib / 16 < 1.05
    assert not fixed.died and fixed.error is None and fixed.served == 2 * 16 * 1024
    assert psutil.Process().children() == []  # every child was waited for


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux")
def test_a_leak_that_is_not_limited_finishes():
    # Without the cap the same leaky run finishes: the death above comes from the limit.
    end = oom.run_with_limit("leaky", limit_mib=16, requests=4_096)
    assert not end.died and end.served == 4_096


def test_tracemalloc_names_the_line_that_allocates_the_leaked_bodies():
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        oom.serve(3_000, "leaky", pause=0)
        top = tracemalloc.take_snapshot().compare_to(before, "lineno")[0]
    finally:
        tracemalloc.stop()
    where = top.traceback[0]
    assert os.path.basename(where.filename) == "oom.py"
    assert where.lineno == _line_of(oom.handle_leaky, "bytes(1024)")
    assert 0.9 * 1024 < top.size_diff / 3_000 < 1.2 * 1024


def test_rss_per_request_in_fresh_processes():
    leaky = track_isolated(oom.serve, 20_000, "leaky")
    fixed = track_isolated(oom.serve, 20_000, "fixed")
    assert 0.9 * 1024 < leaky.bytes_per_unit < 1.3 * 1024
    assert abs(fixed.bytes_per_unit) < 0.1 * 1024


def test_freed_heap_is_reused_before_rss_grows():
    trace = track_isolated(oom.serve, 30_000, "leaky", freed_first_mib=16)
    frame = trace.frame
    early = frame[(frame["done"] > 0) & (frame["done"] < 12_000)]
    late = frame[frame["done"] > 20_000]
    assert fit_slope(early["done"], early["rss_mib"]) * 2**20 < 0.25 * 1024
    assert fit_slope(late["done"], late["rss_mib"]) * 2**20 > 0.7 * 1024


# --------------------------------------------------------------------------- basics


def test_handle_order_keeps_its_receipt_and_tracemalloc_names_that_line():
    basics.handle_order()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(2_000):
            assert basics.handle_order(items=20) == 20
        top = tracemalloc.take_snapshot().compare_to(before, "lineno")[0]
    finally:
        tracemalloc.stop()
    assert len(basics.AUDIT) == 2_001
    assert top.traceback[0].lineno == _line_of(basics.handle_order, '"\\n".join')
    assert "receipt" in linecache.getline(top.traceback[0].filename, top.traceback[0].lineno)
    basics.reset()
    assert basics.AUDIT == {} and basics.KEPT == []


# --------------------------------------------------------------------------- gc_cost


def test_values_are_tracked_or_not():
    assert gc.is_tracked(gc_cost.value("dict values", 1))
    assert not gc.is_tracked(gc_cost.value("str values", 1))


def test_full_collection_rows():
    dicts = gc_cost.full_collection_ms("dict values", [0, 5_000], repeats=1)
    strs = gc_cost.full_collection_ms("str values", [0, 5_000], repeats=1)
    assert [r["entries"] for r in dicts] == [0, 5_000]
    assert abs(dicts[1]["tracked"] - dicts[0]["tracked"] - 10_000) < 50  # a dict and a list each
    assert abs(strs[1]["tracked"] - strs[0]["tracked"]) < 50
    with pytest.raises(ValueError, match="kind"):
        gc_cost.full_collection_ms("tuple values", [0])


def test_automatic_full_collections_wait_for_the_cache_to_grow_by_a_quarter():
    rows = track_isolated(gc_cost.fill_with_pauses, 400_000, interval=0.05).result
    assert "total_ms" in rows[-1]
    lens = [r["cache_len"] for r in rows[:-1] if r["generation"] == 2]
    assert len(lens) >= 3
    # Each full collection waits until the long-lived objects have grown by 25%.
    assert min(b / a for a, b in zip(lens, lens[1:]) if a) > 1.2
    with pytest.raises(ValueError, match="kind"):
        gc_cost.fill_with_pauses(10, "tuple values")


# --------------------------------------------------------------------------- arenas


def test_small_objects_kept_one_in_64_hold_their_arenas():
    run = track_isolated(arenas.small_objects, 64, True, count=200_000).result
    assert run["after_free"] > 0.7 * run["allocated"]
    assert run["after_trim"] > 0.7 * run["allocated"]  # malloc_trim cannot free pymalloc arenas
    freed = arenas.small_objects(0, count=10_000)
    assert freed["after_trim"] is None and arenas.KEPT == []


@pytest.mark.skipif(not arenas.has_malloc_trim(), reason="malloc_trim is glibc's")
def test_malloc_trim_gives_back_what_malloc_kept():
    run = track_isolated(arenas.large_objects, True, count=60_000).result
    assert run["after_free"] > 0.7 * run["allocated"]
    assert run["after_trim"] < 0.3 * run["allocated"]
    assert arenas.large_objects(False, count=1_000)["after_trim"] is None
