"""Tests for leaklab.caches: LimitableMap, LRUCache and CacheStats.

Every behaviour of the public API is checked with a fake clock; the thread-safety claim with 8
threads and conservation laws; and a hypothesis state machine compares LRUCache step by step
against a plain reference model. No test asserts a timing.
"""

from __future__ import annotations

import dataclasses
import gc
import inspect
import itertools
import importlib.util
import math
import os
import shutil
import sys
import sysconfig
import threading
import time
import weakref
from collections import Counter, OrderedDict
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

import leaklab.caches as caches_gil
from leaklab.caches import CacheStats, LimitableMap, LRUCache
from leaklab.measure import leak_rate


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    """A dispose callback that records ``(key, value, reason)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any, str]] = []
        self.lock = threading.Lock()

    def __call__(self, key: Any, value: Any, reason: str) -> None:
        with self.lock:
            self.calls.append((key, value, reason))

    def reasons(self) -> Counter[str]:
        return Counter(reason for _, _, reason in self.calls)


def _load_copy(name: str, mp: pytest.MonkeyPatch) -> ModuleType:
    """A second copy of leaklab.caches, imported under what ``mp`` has patched."""
    spec = importlib.util.spec_from_file_location(name, caches_gil.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    mp.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def _load_locked_reads_copy() -> ModuleType:
    """A copy built as on a free-threaded build: reads take the lock, no compiled read."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
        module = _load_copy("leaklab._caches_locked_reads_for_tests", mp)
    assert module._READS_TAKE_LOCK and not module.COMPILED
    return module


def _load_pure_copy() -> ModuleType:
    """A copy that runs in pure Python, as where the C extension could not be built."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEAKLAB_PURE_PYTHON", "1")
        module = _load_copy("leaklab._caches_pure_for_tests", mp)
    assert not module._READS_TAKE_LOCK and not module.COMPILED
    return module


caches_locked = _load_locked_reads_copy()
caches_pure = _load_pure_copy()
_VARIANTS = {"gil": caches_gil, "pure": caches_pure, "locked-reads": caches_locked}


@pytest.fixture(params=list(_VARIANTS))
def LRU(request: pytest.FixtureRequest) -> Any:
    """LRUCache as built here (with the compiled read if it was built), in pure Python, and as
    built on a free-threaded build (every read locked)."""
    return _VARIANTS[request.param].LRUCache


# ------------------------------------------------------------------------------------------
# LimitableMap


def test_limitable_map_default_limit_is_10() -> None:
    m: LimitableMap[int, int] = LimitableMap()
    for i in range(15):
        m[i] = i
    assert m.limit == 10
    assert len(m) == 10
    assert list(m) == list(range(5, 15))
    assert m.evictions == 5


def test_limitable_map_evicts_first_inserted() -> None:
    m: LimitableMap[str, int] = LimitableMap(limit=3)
    m.set("a", 1)
    m.set("b", 2)
    m.set("c", 3)
    assert m.evictions == 0
    m.set("d", 4)
    assert list(m) == ["b", "c", "d"]
    assert "a" not in m
    assert m.evictions == 1


def test_limitable_map_update_keeps_place_and_does_not_evict() -> None:
    m: LimitableMap[str, int] = LimitableMap(limit=3)
    for i, key in enumerate("abc"):
        m[key] = i
    m["a"] = 100  # update: keeps its place (oldest), nothing evicted
    assert list(m) == ["a", "b", "c"]
    assert m["a"] == 100
    assert m.evictions == 0
    m["d"] = 4  # "a" is still the first inserted, so it goes
    assert list(m) == ["b", "c", "d"]


def test_limitable_map_reads_do_not_change_order() -> None:
    m: LimitableMap[str, int] = LimitableMap(limit=2)
    m["a"] = 1
    m["b"] = 2
    for _ in range(5):
        assert m.get("a") == 1
        assert m["a"] == 1
    m["c"] = 3  # FIFO: the hot key "a" is evicted anyway
    assert list(m) == ["b", "c"]


def test_limitable_map_mapping_protocol() -> None:
    m: LimitableMap[str, int] = LimitableMap(limit=5)
    assert m.get("x") is None
    assert m.get("x", 7) == 7
    with pytest.raises(KeyError):
        m["x"]
    with pytest.raises(KeyError):
        del m["x"]
    m["x"] = 1
    m["y"] = 2
    assert "x" in m and "z" not in m
    del m["x"]
    assert list(m) == ["y"]
    assert len(m) == 1
    assert dict(m.items()) == {"y": 2}
    assert m.pop("y") == 2  # MutableMapping mixins work on top
    m.update({"p": 1, "q": 2})
    m.clear()
    assert len(m) == 0
    assert m.evictions == 0  # deleting and clearing are not evictions
    assert "limit=5" in repr(m)


def test_limitable_map_limit_one() -> None:
    m: LimitableMap[int, int] = LimitableMap(1)
    m[1] = 1
    m[2] = 2
    assert list(m.items()) == [(2, 2)]
    assert m.evictions == 1


def test_limitable_map_attributes_are_read_only() -> None:
    m: LimitableMap[int, int] = LimitableMap(3)
    with pytest.raises(AttributeError):
        m.limit = 0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        m.evictions = 0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("limit", "error"),
    [
        (True, TypeError),
        (False, TypeError),
        (2.0, TypeError),
        (2.5, TypeError),
        ("3", TypeError),
        (None, TypeError),
        (0, ValueError),
        (-1, ValueError),
    ],
)
def test_limitable_map_rejects_bad_limit(limit: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"limit.*" + _escaped(limit)):
        LimitableMap(limit)


def test_limitable_map_fifo_loses_hot_keys_lru_keeps_them() -> None:
    fifo: LimitableMap[str, int] = LimitableMap(limit=3)
    lru: LRUCache[str, int] = LRUCache(3)
    for key in "abc":
        fifo[key] = 0
        lru.set(key, 0)
    fifo.get("a")
    lru.get("a")  # "a" is hot
    fifo["d"] = 0
    lru.set("d", 0)
    assert "a" not in fifo
    assert "a" in lru and "b" not in lru


def _escaped(value: Any) -> str:
    import re

    return re.escape(repr(value))


# ------------------------------------------------------------------------------------------
# LRUCache: recency, reads, writes


def test_get_marks_most_recent_and_lru_is_evicted(LRU: Any) -> None:
    c = LRU(3)
    c.set("a", 1)
    c.set("b", 2)
    c.set("c", 3)
    assert c.keys() == ["c", "b", "a"]
    assert c.get("a") == 1
    assert c.keys() == ["a", "c", "b"]
    c.set("d", 4)  # evicts "b", the least recently used
    assert c.keys() == ["d", "a", "c"]
    assert c.items() == [("d", 4), ("a", 1), ("c", 3)]
    assert not c.has("b")
    assert c.stats().evictions == 1


def test_peek_and_has_do_not_change_recency_nor_stats(LRU: Any) -> None:
    c = LRU(2)
    c.set("a", 1)
    c.set("b", 2)
    assert c.peek("a") == 1
    assert c.has("a")
    assert "a" in c
    assert c.peek("zz", "dflt") == "dflt"
    assert not c.has("zz")
    assert "zz" not in c
    c.set("c", 3)  # "a" is still the least recently used
    assert c.keys() == ["c", "b"]
    s = c.stats()
    assert (s.hits, s.misses) == (0, 0)


def test_set_existing_replaces_value_and_marks_recent(LRU: Any) -> None:
    c = LRU(3)
    for key in "abc":
        c.set(key, key)
    c.set("a", "A")
    assert c.keys() == ["a", "c", "b"]
    assert c.peek("a") == "A"
    assert len(c) == 3
    assert c.stats().evictions == 0


def test_get_default_and_none_values(LRU: Any) -> None:
    c = LRU(3)
    assert c.get("x") is None
    assert c.get("x", 5) == 5
    c.set("x", None)
    assert c.get("x", 5) is None
    assert c.has("x")
    s = c.stats()
    assert (s.hits, s.misses) == (1, 2)


def test_delete_and_pop(LRU: Any) -> None:
    c = LRU(3)
    c.set("a", 1)
    c.set("b", 2)
    assert c.delete("a") is True
    assert c.delete("a") is False
    assert c.pop("b") == 2
    assert c.pop("b", "gone") == "gone"
    assert c.pop("b", None) is None
    with pytest.raises(KeyError):
        c.pop("b")
    assert len(c) == 0
    assert c.stats().evictions == 0


def test_clear_empties_and_keeps_counters(LRU: Any) -> None:
    c = LRU(2)
    c.set("a", 1)
    c.set("b", 2)
    c.set("c", 3)
    c.get("c")
    c.get("a")
    c.clear()
    assert len(c) == 0
    assert c.keys() == []
    assert dataclasses.asdict(c.stats()) == dict(
        hits=1, misses=1, evictions=1, expirations=0, size=0, total_size=0
    )
    c.set("x", 1)  # still usable
    assert c.get("x") == 1


def test_configuration_properties_and_repr(LRU: Any) -> None:
    c = LRU(5, ttl=2.5, update_age_on_get=True)
    assert (c.max, c.max_size, c.ttl, c.update_age_on_get) == (5, None, 2.5, True)
    d = LRU(max_size=100, size_of=lambda k, v: 1)
    assert (d.max, d.max_size, d.ttl, d.update_age_on_get) == (None, 100, None, False)
    assert repr(c).startswith("LRUCache(max=5")
    assert isinstance(LRU(5, ttl=1), LRU)  # whatever implementation LRUCache() picks


def test_max_one(LRU: Any) -> None:
    c = LRU(1)
    c.set("a", 1)
    c.set("b", 2)
    assert c.items() == [("b", 2)]
    assert c.stats().evictions == 1


def test_stats_counts(LRU: Any) -> None:
    clock = FakeClock()
    c = LRU(2, ttl=10, clock=clock)
    c.set("a", 1)
    c.set("b", 2)
    c.get("a")
    c.get("a")
    c.get("nope")
    c.set("c", 3)  # evicts b
    clock.advance(10)
    assert c.get("a") is None  # expired: a miss, not a hit
    s = c.stats()  # removes expired "c" too
    assert dataclasses.asdict(s) == dict(
        hits=2, misses=2, evictions=1, expirations=2, size=0, total_size=0
    )
    assert type(s).__name__ == "CacheStats"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.hits = 0  # type: ignore[misc]


# ------------------------------------------------------------------------------------------
# Expiry (fake clock)


def test_ttl_expiry(LRU: Any) -> None:
    clock = FakeClock(100.0)
    c = LRU(10, ttl=5, clock=clock)
    c.set("a", 1)
    clock.advance(4.75)
    assert c.get("a") == 1
    clock.advance(0.25)  # an entry is expired from set time + ttl on
    assert c.get("a") is None
    assert c.peek("a") is None and not c.has("a")
    s = c.stats()
    assert (s.hits, s.misses, s.expirations, s.size) == (1, 1, 1, 0)


@pytest.mark.parametrize("read", ["get", "peek", "has", "contains"])
def test_expired_entry_is_removed_when_read(LRU: Any, read: str) -> None:
    clock = FakeClock()
    rec = Recorder()
    c = LRU(10, ttl=1, clock=clock, dispose=rec)
    c.set("a", 1)
    c.set("b", 2, ttl=100)
    clock.advance(1)
    if read == "contains":
        assert "a" not in c
    elif read == "has":
        assert c.has("a") is False
    else:
        assert getattr(c, read)("a", "dflt") == "dflt"
    assert rec.calls == [("a", 1, "expire")]
    assert c.keys() == ["b"]


def test_per_entry_ttl_overrides_default(LRU: Any) -> None:
    clock = FakeClock()
    c = LRU(10, ttl=10, clock=clock)
    c.set("short", 1, ttl=1)
    c.set("default", 2)
    c.set("long", 3, ttl=100)
    clock.advance(1)
    assert c.keys() == ["long", "default"]
    clock.advance(9)
    assert c.keys() == ["long"]
    clock.advance(89.5)
    assert c.get("long") == 3
    clock.advance(0.5)
    assert c.get("long") is None
    assert c.stats().expirations == 3


def test_per_entry_ttl_without_default_ttl(LRU: Any) -> None:
    clock = FakeClock()
    c = LRU(10, clock=clock)
    c.set("forever", 0)
    c.get("forever")
    c.set("brief", 1, ttl=2)  # switches the cache to entries with deadlines
    c.set("also-forever", 2)
    assert c.keys() == ["also-forever", "brief", "forever"]
    clock.advance(2)
    assert c.keys() == ["also-forever", "forever"]
    clock.advance(10**6)
    assert c.get("forever") == 0
    assert c.get("also-forever") == 2
    s = c.stats()
    assert (s.hits, s.expirations, s.size) == (3, 1, 2)


def test_update_age_on_get(LRU: Any) -> None:
    clock = FakeClock()
    c = LRU(10, ttl=10, update_age_on_get=True, clock=clock)
    c.set("a", 1)
    c.set("b", 2)
    c.set("own", 3, ttl=4)
    for _ in range(5):
        clock.advance(3)
        assert c.get("a") == 1  # each read restarts its 10 s
        assert c.get("own") == 3  # and this one's own 4 s
    assert c.peek("b") is None  # b was never read: expired at t=10
    clock.advance(3.75)
    assert c.peek("own") == 3  # peek does not restart the ttl
    clock.advance(0.25)
    assert c.peek("own") is None
    clock.advance(6)
    assert c.get("a") is None
    assert c.stats().expirations == 3


def test_without_update_age_on_get_reads_do_not_extend(LRU: Any) -> None:
    clock = FakeClock()
    c = LRU(10, ttl=10, clock=clock)
    c.set("a", 1)
    for _ in range(3):
        clock.advance(3)
        assert c.get("a") == 1
    clock.advance(1)
    assert c.get("a") is None


def test_purge_stale_returns_count(LRU: Any) -> None:
    clock = FakeClock()
    rec = Recorder()
    c = LRU(10, ttl=5, clock=clock, dispose=rec)
    assert c.purge_stale() == 0
    for i in range(4):
        c.set(i, i)
    c.set("own", 9, ttl=2)
    c.set("keep", 9, ttl=50)
    clock.advance(2)
    assert c.purge_stale() == 1
    clock.advance(3)
    assert c.purge_stale() == 4
    assert c.purge_stale() == 0
    assert c.keys() == ["keep"]
    assert rec.reasons() == Counter(expire=5)
    assert c.stats().expirations == 5
    assert LRU(3).purge_stale() == 0  # a cache without ttl has nothing to purge


def test_expired_entries_go_before_any_live_entry_is_evicted(LRU: Any) -> None:
    clock = FakeClock()
    rec = Recorder()
    c = LRU(3, ttl=100, clock=clock, dispose=rec)
    c.set("live-old", 1)  # least recently used, but live
    c.set("dies", 2, ttl=5)
    c.set("live", 3)
    c.get("dies")  # most recently used, but about to expire
    clock.advance(5)
    c.set("new", 4)
    assert rec.calls == [("dies", 2, "expire")]
    assert c.keys() == ["new", "live", "live-old"]
    s = c.stats()
    assert (s.evictions, s.expirations) == (0, 1)


def test_len_keys_items_skip_expired(LRU: Any) -> None:
    clock = FakeClock()
    c = LRU(10, ttl=5, clock=clock)
    c.set("a", 1)
    clock.advance(3)
    c.set("b", 2)
    assert len(c) == 2
    clock.advance(2)
    assert len(c) == 1
    assert c.keys() == ["b"]
    assert c.items() == [("b", 2)]


def test_delete_and_pop_of_expired_entry(LRU: Any) -> None:
    clock = FakeClock()
    rec = Recorder()
    c = LRU(10, ttl=1, clock=clock, dispose=rec)
    c.set("a", 1)
    c.set("b", 2)
    clock.advance(1)
    assert c.delete("a") is False
    with pytest.raises(KeyError):
        c.pop("b")
    assert rec.calls == [("a", 1, "expire"), ("b", 2, "expire")]
    assert c.stats().expirations == 2


def test_set_over_expired_entry_disposes_it_as_expired(LRU: Any) -> None:
    clock = FakeClock()
    rec = Recorder()
    c = LRU(10, ttl=1, clock=clock, dispose=rec)
    c.set("a", 1)
    clock.advance(1)
    c.set("a", 2)
    assert rec.calls == [("a", 1, "expire")]
    assert c.get("a") == 2


def test_clear_disposes_expired_as_expire(LRU: Any) -> None:
    clock = FakeClock()
    rec = Recorder()
    c = LRU(10, ttl=5, clock=clock, dispose=rec)
    c.set("old", 1)
    clock.advance(5)
    c.set("new", 2)  # purges "old" first
    c.set("brief", 3, ttl=1)
    clock.advance(1)
    c.clear()
    assert sorted(rec.calls) == [("brief", 3, "expire"), ("new", 2, "clear"), ("old", 1, "expire")]


@pytest.mark.parametrize("update_age", [False, True])
def test_stale_deadline_does_not_expire_a_renewed_entry(LRU: Any, update_age: bool) -> None:
    # "k" is set at t=0 (due at 5), then renewed at t=3 (due at 8), by a new set or, with
    # update_age_on_get, by a read. Its first deadline, now stale, passes at t=5.
    clock = FakeClock()
    c = LRU(3, ttl=5, update_age_on_get=update_age, clock=clock)
    c.set("k", 1)
    c.set("other", 0)
    clock.advance(3)
    if update_age:
        assert c.get("k") == 1
    else:
        c.set("k", 1)
    clock.advance(2)
    assert c.purge_stale() == 1  # "other" only
    assert c.keys() == ["k"]
    clock.advance(3)
    assert c.keys() == []


@pytest.mark.parametrize("bound", ["max", "max_size"])
def test_equal_deadlines_and_eviction(LRU: Any, bound: str) -> None:
    # Entries set at the same instant share a deadline value; evicting one must not lose the
    # others' deadlines (an int clock even makes them the same int object).
    clock = FakeClock(7)
    if bound == "max":
        c = LRU(2, ttl=5, clock=clock)
    else:
        c = LRU(max_size=2, size_of=lambda k, v: 1, ttl=5, clock=clock)
    c.set("a", 1)
    c.set("b", 2)
    assert c.get("a") == 1  # "b" becomes the least recently used
    c.set("c", 3)  # evicts "b"
    assert c.keys() == ["c", "a"]
    clock.advance(5)
    assert c.keys() == []
    assert c.stats().expirations == 2


def test_own_ttl_replaced_by_another_own_ttl(LRU: Any) -> None:
    # The first deadline (t=2) is stale once the entry is set again with a ttl ending at t=6.
    clock = FakeClock()
    c = LRU(10, ttl=10, clock=clock)
    c.set("k", 1, ttl=2)
    clock.advance(1)
    c.set("k", 2, ttl=5)
    clock.advance(1)
    assert c.keys() == ["k"]
    assert c.get("k") == 2
    clock.advance(4)
    assert c.keys() == []


def test_own_ttl_refreshed_by_update_age_on_get(LRU: Any) -> None:
    clock = FakeClock()
    c = LRU(10, update_age_on_get=True, clock=clock)
    c.set("k", 1, ttl=5)
    clock.advance(3)
    assert c.get("k") == 1  # now due at t=8; the t=5 deadline is stale
    clock.advance(2)
    assert c.purge_stale() == 0
    assert c.keys() == ["k"]
    clock.advance(3)
    assert c.purge_stale() == 1


def test_own_ttl_entry_replaced_by_default_ttl_entry(LRU: Any) -> None:
    clock = FakeClock()
    c = LRU(10, ttl=10, clock=clock)
    c.set("k", 1, ttl=2)
    c.set("k", 2)  # now on the default ttl: due at t=10
    clock.advance(2)
    assert c.keys() == ["k"]
    clock.advance(8)
    assert c.keys() == []


@pytest.mark.parametrize("clock_step", [0, 1, 0.01])
def test_deadline_queue_stays_bounded(LRU: Any, clock_step: float) -> None:
    # Refreshed, replaced and evicted entries leave stale deadlines behind; they must not pile
    # up, even when the clock does not move (an int clock even reuses the same int objects).
    clock = FakeClock()
    refreshing = LRU(10, ttl=10**6, update_age_on_get=True, clock=clock)
    replacing = LRU(10, ttl=10**6, clock=clock)
    evicting = LRU(10, ttl=10**6, clock=clock)
    for i in range(5_000):
        refreshing.set(i % 10, i)
        refreshing.get(i % 10)
        replacing.set("same", i)
        evicting.set(i, i)
        clock.advance(clock_step)
    still = LRU(10, ttl=5, clock=FakeClock(0))  # int deadlines: one cached int object, 5
    for i in range(5_000):
        still.set("same", i)
    for c in (refreshing, replacing, evicting, still):
        assert len(c._deadline_keys) == len(c._deadline_times) <= 2 * len(c) + 64 + 1
    assert len(refreshing) == len(evicting) == 10 and len(replacing) == 1
    clock.advance(10**6)
    assert refreshing.purge_stale() + replacing.purge_stale() + evicting.purge_stale() == 21


def test_deadline_queue_stays_bounded_when_evictions_skip_the_oldest_deadline(LRU: Any) -> None:
    # One key is read before every set, so it is never the least recently used: each eviction
    # leaves a stale deadline behind (not the oldest one), which only compaction removes.
    clock = FakeClock()
    c = LRU(10, ttl=10**6, clock=clock)
    c.set("hot", 0)
    for i in range(5_000):
        assert c.get("hot") == 0
        c.set(i, i)
        clock.advance(0.001)
    assert len(c._deadline_keys) == len(c._deadline_times) <= 2 * len(c) + 64 + 1
    assert c.stats().evictions == 5_000 - 9
    clock.advance(10**6)
    assert c.purge_stale() == 10 and len(c) == 0


def test_compacted_deadline_queue_still_expires_everything(LRU: Any) -> None:
    clock = FakeClock()
    c = LRU(100, ttl=10, clock=clock)
    for _ in range(4):  # 400 deadlines queued for 100 entries: compaction runs
        for i in range(100):
            c.set(i, i)
    assert len(c._deadline_keys) < 400
    clock.advance(10)
    assert c.purge_stale() == 100
    assert len(c) == 0


def test_heap_of_own_ttls_stays_bounded(LRU: Any) -> None:
    # Entries with their own ttl are tracked in a heap; refreshes leave stale items there,
    # which must not pile up (that would be a leak in a course about leaks).
    clock = FakeClock()
    c = LRU(10, update_age_on_get=True, clock=clock)
    for i in range(10):
        c.set(i, i, ttl=1000)
    for _ in range(2_000):
        for i in range(10):
            c.get(i)
        clock.advance(0.01)
    assert len(c._heap) <= 2 * 10 + 64 + 1
    assert len(c) == 10
    still = LRU(10, clock=FakeClock(5))  # the clock does not move: equal int deadlines
    for i in range(5_000):
        still.set("same", i, ttl=3)
    assert len(still._heap) <= 2 * 1 + 64 + 1


# ------------------------------------------------------------------------------------------
# Size bound


def test_max_size_with_size_of(LRU: Any) -> None:
    c = LRU(max_size=10, size_of=lambda k, v: len(v))
    c.set("a", "xxxx")  # 4
    c.set("b", "xxxx")  # 8
    c.set("c", "xx")  # 10
    assert c.stats().total_size == 10
    c.set("d", "xxxxxx")  # 16 > 10: evicts a and b
    assert c.keys() == ["d", "c"]
    s = c.stats()
    assert (s.size, s.total_size, s.evictions) == (2, 8, 2)


def test_max_size_replacing_an_entry_evicts_others_not_itself(LRU: Any) -> None:
    c = LRU(max_size=10, size_of=lambda k, v: len(v))
    c.set("a", "xxx")
    c.set("b", "xxx")
    c.set("c", "xxx")
    c.set("a", "xxxxxxxxx")  # 9: b and c must go, "a" stays even though it was the LRU
    assert c.items() == [("a", "xxxxxxxxx")]
    c.set("a", "x")
    assert c.stats().total_size == 1


def test_max_and_max_size_together(LRU: Any) -> None:
    c = LRU(2, max_size=100, size_of=lambda k, v: v)
    c.set("a", 10)
    c.set("b", 10)
    c.set("c", 10)  # count bound
    assert c.keys() == ["c", "b"]
    c.set("d", 95)  # size bound: both others go
    assert c.keys() == ["d"]
    assert c.stats().evictions == 3


def test_oversize_entry_raises_and_leaves_cache_unchanged(LRU: Any) -> None:
    rec = Recorder()
    c = LRU(max_size=10, size_of=lambda k, v: len(v), dispose=rec)
    c.set("a", "xxxx")
    c.set("b", "xxxx")
    before = (c.items(), c.stats())
    with pytest.raises(ValueError, match=r"size 11.*max_size=10"):
        c.set("big", "x" * 11)
    with pytest.raises(ValueError, match="max_size"):
        c.set("a", "x" * 11)  # also when replacing: the old value stays
    assert (c.items(), c.stats()) == before
    assert rec.calls == []


@pytest.mark.parametrize(
    ("size", "error"),
    [
        (True, TypeError),
        (1.0, TypeError),
        ("1", TypeError),
        (None, TypeError),
        (0, ValueError),
        (-3, ValueError),
    ],
)
def test_bad_size_of_result_raises_and_leaves_cache_unchanged(
    LRU: Any, size: Any, error: type[Exception]
) -> None:
    c = LRU(max_size=10, size_of=lambda k, v: v)
    c.set("a", 5)
    with pytest.raises(error, match="size_of"):
        c.set("b", size)
    assert c.items() == [("a", 5)]


def test_default_size_of_is_shallow_getsizeof(LRU: Any) -> None:
    value = b"x" * 1000
    c = LRU(max_size=10_000)
    c.set("k", value)
    assert c.stats().total_size == sys.getsizeof(value)


# ------------------------------------------------------------------------------------------
# dispose


def test_dispose_reasons(LRU: Any) -> None:
    clock = FakeClock()
    rec = Recorder()
    c = LRU(2, clock=clock, dispose=rec)
    c.set("a", 1)
    c.set("b", 2)
    c.set("c", 3)  # evict a
    c.set("b", 20)  # set: replaces 2
    c.set("b", 20)  # the same object again: nothing left
    c.set("e", 5, ttl=1)  # evicts c
    clock.advance(1)
    c.purge_stale()  # expire e
    c.set("f", 6)
    assert c.delete("b") is True  # delete
    c.set("g", 7)
    assert c.pop("g") == 7  # pop is a delete too
    c.set("h", 8)
    c.clear()  # clear f, h
    assert rec.calls == [
        ("a", 1, "evict"),
        ("b", 2, "set"),
        ("c", 3, "evict"),
        ("e", 5, "expire"),
        ("b", 20, "delete"),
        ("g", 7, "delete"),
        ("f", 6, "clear"),  # clear goes least recently used first
        ("h", 8, "clear"),
    ]


def test_dispose_runs_after_the_entry_left_and_outside_the_lock(LRU: Any) -> None:
    seen: list[tuple[str, bool, Any]] = []

    def dispose(key: str, value: Any, reason: str) -> None:
        # The cache is usable from inside dispose: this would deadlock under the lock.
        seen.append((reason, c.has(key), c.peek(key)))
        if reason == "evict":
            c.set("from-dispose", 0)

    c = LRU(2, dispose=dispose)

    def scenario() -> None:
        c.set("a", 1)
        c.set("b", 2)
        c.set("c", 3)  # evicts a; dispose then sets a key, which evicts b
        c.set("c", 30)  # "set": the new value is already in place

    worker = threading.Thread(target=scenario, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "dispose ran under the cache's lock (deadlock)"
    assert seen[0] == ("evict", False, None)
    assert ("set", True, 30) in seen
    assert c.keys() == ["c", "from-dispose"]


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"dispose": lambda k, v, r: None}, {"ttl": 100}],
    ids=["short-path", "general", "timed"],
)
def test_values_released_outside_the_lock(LRU: Any, kwargs: dict[str, Any]) -> None:
    # A value whose finalizer uses the cache: its last reference must drop after the lock is
    # released, on every path (set that evicts, set that replaces, delete, clear).
    c = LRU(1, **kwargs)
    finalized: list[Any] = []

    class Resource:
        def __del__(self) -> None:
            c.set("finalizer", 0)
            finalized.append(self)

    def scenario() -> None:
        c.set("a", Resource())
        c.set("b", 1)  # evicts the Resource
        c.set("a", Resource())
        c.set("a", 2)  # replaces it
        c.set("a", Resource())
        c.delete("a")
        c.set("a", Resource())
        c.clear()

    worker = threading.Thread(target=scenario, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "a finalizer ran under the cache's lock (deadlock)"
    assert len(finalized) == 4


def test_dispose_exception_propagates_after_cache_is_consistent(LRU: Any) -> None:
    calls: list[Any] = []

    def dispose(key: str, value: Any, reason: str) -> None:
        calls.append(key)
        raise RuntimeError(f"cannot dispose {key}")

    c = LRU(2, dispose=dispose)
    c.set("a", 1)
    c.set("b", 2)
    with pytest.raises(RuntimeError, match="cannot dispose a"):
        c.set("c", 3)
    # The set completed: "c" is in, "a" is out, the counters agree.
    assert c.keys() == ["c", "b"]
    assert dataclasses.asdict(c.stats()) == dict(
        hits=0, misses=0, evictions=1, expirations=0, size=2, total_size=2
    )
    assert c.get("c") == 3
    with pytest.raises(RuntimeError, match="cannot dispose b"):
        c.delete("b")
    assert not c.has("b")
    c.set("d", 4)
    assert c.keys() == ["d", "c"]


def test_dispose_exception_later_disposals_still_run(LRU: Any) -> None:
    clock = FakeClock()
    calls: list[Any] = []

    def dispose(key: str, value: Any, reason: str) -> None:
        calls.append((key, reason))
        if key != "b":
            raise ValueError(f"bad {key}")

    c = LRU(3, ttl=1, clock=clock, dispose=dispose)
    for key in "abc":
        c.set(key, key)
    clock.advance(1)
    with pytest.raises(ValueError, match="bad a") as info:
        c.purge_stale()
    assert sorted(calls) == [("a", "expire"), ("b", "expire"), ("c", "expire")]
    assert any("also raised" in note and "bad c" in note for note in info.value.__notes__)
    assert len(c) == 0
    assert c.stats().expirations == 3


# ------------------------------------------------------------------------------------------
# Bad configuration


class _Index:
    """An int-like (as numpy.int64 is): accepted where an int is meant."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __index__(self) -> int:
        return self.n


@pytest.mark.parametrize("name", ["max", "max_size"])
@pytest.mark.parametrize(
    ("value", "error"),
    [
        (True, TypeError),
        (False, TypeError),
        (3.0, TypeError),
        (2.5, TypeError),
        ("3", TypeError),
        ([3], TypeError),
        (math.nan, TypeError),
        (0, ValueError),
        (-1, ValueError),
    ],
)
def test_bad_bounds(LRU: Any, name: str, value: Any, error: type[Exception]) -> None:
    kwargs: dict[str, Any] = {"max": 5, name: value}
    with pytest.raises(error, match=name + r"\b.*" + _escaped(value)):
        LRU(**kwargs)


def test_int_like_bounds_are_accepted(LRU: Any) -> None:
    c = LRU(_Index(2), max_size=_Index(10), size_of=lambda k, v: 1)
    assert (c.max, c.max_size) == (2, 10)
    assert type(c.max) is int


@pytest.mark.parametrize(
    ("ttl", "error"),
    [
        (True, TypeError),
        ("5", TypeError),
        (b"5", TypeError),
        ([5], TypeError),
        (0, ValueError),
        (0.0, ValueError),
        (-1, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-math.inf, ValueError),
        (10**400, ValueError),
    ],
)
def test_bad_ttl(LRU: Any, ttl: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="ttl"):
        LRU(5, ttl=ttl)
    c = LRU(5)
    c.set("a", 1)
    with pytest.raises(error, match="ttl"):
        c.set("b", 2, ttl=ttl)  # the per-entry ttl is checked the same way
    assert c.items() == [("a", 1)]


def test_good_ttls(LRU: Any) -> None:
    assert LRU(5, ttl=1).ttl == 1
    assert LRU(5, ttl=0.001).ttl == 0.001


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, "max or max_size"),
        ({"ttl": 10}, ValueError, "ttl alone is no bound"),
        ({"max": None, "max_size": None}, ValueError, "max or max_size"),
        ({"max": 5, "size_of": len}, ValueError, "size_of.*needs max_size"),
        ({"max_size": 5, "size_of": 3}, TypeError, "size_of must be callable"),
        ({"max": 5, "dispose": "print"}, TypeError, "dispose must be callable"),
        ({"max": 5, "clock": 0.0}, TypeError, "clock must be callable"),
        ({"max": 5, "update_age_on_get": 1}, TypeError, "update_age_on_get must be a bool"),
        ({"max": 5, "update_age_on_get": "yes"}, TypeError, "update_age_on_get"),
        ({"max": 5, "ttl": 5, "update_age_on_get": None}, TypeError, "update_age_on_get"),
    ],
)
def test_bad_configuration(
    LRU: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        LRU(**kwargs)


def test_positional_use_is_limited_to_max() -> None:
    with pytest.raises(TypeError):
        LRUCache(5, 100)  # type: ignore[misc]


# ------------------------------------------------------------------------------------------
# Threads


THREADS = 8


def _run_threads(target: Any, count: int = THREADS) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def runner(index: int) -> None:
        try:
            start.wait()
            target(index)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(i,), daemon=True) for i in range(count)]
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, to shake out races
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    finally:
        sys.setswitchinterval(old_interval)
    assert not any(t.is_alive() for t in threads), "a thread is stuck (deadlock?)"
    assert not errors, errors


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"ttl": 1000.0},
        {"dispose": Recorder()},
        {"max_size": 10**9},
        {"update_age_on_get": True, "ttl": 1000.0},
    ],
    ids=["short-path", "ttl", "dispose", "max_size", "update-age"],
)
def test_threads_disjoint_keys_nothing_lost(LRU: Any, config: dict[str, Any]) -> None:
    per_thread = 400
    c = LRU(THREADS * per_thread, **config)
    gets = [0] * THREADS

    def work(index: int) -> None:
        mine = [(index, i) for i in range(per_thread)]
        for round_ in range(3):
            for key in mine:
                c.set(key, (key, round_))
            for key in mine:
                assert c.get(key) == (key, round_)
                gets[index] += 1
                other = ((index + 1) % THREADS, key[1])
                c.get(other)  # whatever the other thread has stored so far
                gets[index] += 1
                assert c.has(key)
                assert c.peek(key) == (key, round_)
                assert len(c) <= THREADS * per_thread
            # delete and put back a slice of my keys
            for key in mine[::7]:
                assert c.delete(key) is True
                assert c.pop(key, "gone") == "gone"
                c.set(key, (key, round_))

    _run_threads(work)
    s = c.stats()
    assert s.size == len(c) == THREADS * per_thread
    assert s.evictions == 0 and s.expirations == 0
    assert s.hits + s.misses == sum(gets)
    assert s.hits >= THREADS * per_thread * 3  # every own read hit
    for index in range(THREADS):
        for i in range(per_thread):
            assert c.peek((index, i)) == ((index, i), 2)
    assert len(set(c.keys())) == THREADS * per_thread


def test_threads_readers_during_the_switch_to_timed_entries(LRU: Any) -> None:
    # The first per-entry ttl on a cache made without one switches its table to
    # (value, expires) entries while lock-free readers run: none may see a raw tuple, a
    # missing key or an exception.
    for _attempt in range(5):
        c = LRU(1000)
        for i in range(500):
            c.set(i, f"v{i}")
        switched = threading.Event()

        def work(index: int, c: Any = c, switched: threading.Event = switched) -> None:
            if index == 0:
                try:
                    for i in range(200):
                        c.get(i)
                    c.set("brief", "x", ttl=1000)
                finally:
                    switched.set()  # even on failure, so that the readers stop
                for i in range(500, 700):
                    c.set(i, f"v{i}")
            else:
                rounds = 0
                while not switched.is_set() or rounds < 3:
                    for i in range(0, 500, 7):
                        assert c.get(i) == f"v{i}"
                        assert c.peek(i) == f"v{i}"
                        assert i in c
                    rounds += 1

        _run_threads(work)
        assert c.get("brief") == "x"
        assert len(c) == 701


@pytest.mark.parametrize("config", [{}, {"ttl": 1000.0}, {"dispose": Recorder()}])
def test_threads_len_never_above_max(LRU: Any, config: dict[str, Any]) -> None:
    # Readers poll len() without the lock while a writer keeps inserting new keys: a set must
    # make room before it inserts, or a reader could see max + 1 entries.
    max_entries = 8
    c = LRU(max_entries, **config)
    done = threading.Event()
    seen: list[int] = []

    def work(index: int) -> None:
        if index == 0:
            for i in range(30_000):
                c.set(i, i)
            done.set()
        else:
            largest = 0
            while not done.is_set():
                largest = max(largest, len(c))
            seen.append(largest)

    _run_threads(work, count=4)
    assert max(seen) <= max_entries
    assert len(c) == max_entries


@pytest.mark.parametrize(
    "config",
    [{}, {"ttl": 0.002}, {"max_size": 64 * 3, "size_of": lambda k, v: 1 + k % 3}],
    ids=["count", "ttl", "size"],
)
def test_threads_contended_invariants(LRU: Any, config: dict[str, Any]) -> None:
    # 8 threads on overlapping keys with a small bound. Every stored value is a distinct
    # object, so every set() makes one entry, and every entry either is still held at the end
    # or was disposed exactly once: sets == disposals + size (a conservation law: nothing is
    # lost, nothing leaves twice).
    max_entries = 64
    rec = Recorder()
    c = LRU(max_entries, dispose=rec, **config)
    sets = [0] * THREADS
    gets = [0] * THREADS
    over_bound: list[int] = []

    def work(index: int) -> None:
        for i in range(3000):
            key = (i * 7 + index * 13) % 200
            op = i % 10
            if op < 5:
                c.set(key, [index, i])
                sets[index] += 1
            elif op < 8:
                value = c.get(key)
                gets[index] += 1
                assert value is None or isinstance(value, list)
            elif op == 8:
                c.delete(key)
            else:
                c.pop(key, None)
            if i % 50 == 0:
                n = len(c)
                if n > max_entries:
                    over_bound.append(n)
                c.keys()
                c.peek(key)
                c.has(key)

    _run_threads(work)
    assert over_bound == []
    if "ttl" in config:
        time.sleep(0.02)  # let every entry expire, so that the counts below stop moving
    c.purge_stale()
    s = c.stats()
    assert s.size == len(c) == len(c.keys()) == len(set(c.keys())) <= max_entries
    assert sum(sets) == len(rec.calls) + s.size
    reasons = rec.reasons()
    assert reasons["evict"] == s.evictions
    if "ttl" not in config:
        assert s.evictions > 0
    assert reasons["expire"] == s.expirations
    assert s.hits + s.misses == sum(gets)
    if "max_size" in config:
        held = c.keys()
        assert s.total_size == sum(1 + k % 3 for k in held) <= 64 * 3
    # Values held are ones that some thread stored under that key.
    for key, value in c.items():
        index, i = value
        assert (i * 7 + index * 13) % 200 == key


# ------------------------------------------------------------------------------------------
# The compiled read path (leaklab.caches._core) and the pure-Python read agree


def test_compiled_read_is_used_where_a_compiler_exists() -> None:
    """``make test`` installs with a C compiler here, so the compiled read must be in use."""
    compiler = (sysconfig.get_config_var("CC") or "").split()
    headers = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    if (
        os.environ.get("LEAKLAB_PURE_PYTHON")
        or not compiler
        or not shutil.which(compiler[0])
        or not os.path.exists(headers)
    ):
        pytest.skip("no C compiler or Python headers (or LEAKLAB_PURE_PYTHON set): pure Python")
    assert caches_gil.COMPILED
    assert type(LRUCache.get).__name__ == "method_descriptor"
    assert LRUCache.get.__qualname__ == "CacheCore.get"
    assert type(LRUCache(2, ttl=5)).get is LRUCache.get  # the ttl class too
    assert type(LRUCache(2)).get is LRUCache.get
    assert LRUCache.get.__doc__ and "most recently used" in LRUCache.get.__doc__
    counted = type(LRUCache(2))
    assert counted.set is caches_gil._core.CacheCore._counted_set  # the count-only write
    assert type(LRUCache(2, ttl=5)).set is caches_gil._core.CacheCore._timed_set  # default ttl
    assert type(LRUCache(max_size=9)).set is LRUCache.set  # the general write: Python


def test_pure_python_write_is_used_when_asked() -> None:
    for cache in (caches_pure.LRUCache(2), caches_pure.LRUCache(2, ttl=5)):
        assert type(cache).set is type(cache)._set_slow
        assert type(type(cache).set).__name__ == "function"


def test_pure_python_read_is_used_when_asked() -> None:
    assert caches_pure.LRUCache.get is caches_pure.LRUCache._get_slow
    assert type(caches_pure.LRUCache.get).__name__ == "function"


@pytest.mark.parametrize("ttl", [None, 50])
def test_get_keeps_reference_counts(LRU: Any, ttl: int | None) -> None:
    """Hits, misses, defaults and expiries leave every object's reference count as it was."""
    clock = FakeClock()
    c = LRU(4, ttl=ttl, clock=clock)
    # Strings built at run time: constants may be immortal (3.12+), with a fixed count.
    key, value, default, gone = "".join(["k"] * 50), object(), object(), "".join(["g"] * 50)
    c.set(key, value)
    c.set(gone, object(), ttl=1)
    for _ in range(3):  # warm up: the first calls may create interned or cached objects
        c.get(key), c.get("absent", default)
    before = [sys.getrefcount(x) for x in (key, value, default, gone)]
    for _ in range(1000):
        assert c.get(key) is value
        assert c.get("absent", default) is default
        assert c.get("absent") is None
        assert c.get(key, default=default) is value
    clock.advance(2)
    assert c.get(gone, default) is default  # expired: a miss that removes it
    after = [sys.getrefcount(x) for x in (key, value, default, gone)]
    assert after[:3] == before[:3]
    assert after[3] < before[3]  # the cache let go of the expired key
    s = c.stats()
    assert (s.hits, s.misses, s.expirations) == (2003, 2004, 1)


@pytest.mark.parametrize("kwargs", [{}, {"ttl": 50}], ids=["count", "ttl"])
def test_set_keeps_reference_counts(LRU: Any, kwargs: dict[str, Any]) -> None:
    """Replacing and evicting release every value and key the cache let go of."""
    c = LRU(2, clock=FakeClock(), **kwargs)
    keys = ["k" * 40 + str(i) for i in range(3)]
    value = object()
    before = [sys.getrefcount(x) for x in [value, *keys]]
    for _ in range(500):
        for k in keys:  # three keys in a cache of two: every set evicts
            c.set(k, value)
        c.set(keys[2], value)  # replaces
    del k  # the loop variable's reference
    c.clear()
    assert [sys.getrefcount(x) for x in [value, *keys]] == before
    assert c.stats().evictions == 500 * 3 - 2


@pytest.mark.parametrize("kwargs", [{}, {"ttl": 50}], ids=["count", "ttl"])
def test_set_argument_errors_and_the_lock_is_released(LRU: Any, kwargs: dict[str, Any]) -> None:
    c = LRU(2, **kwargs)
    with pytest.raises(TypeError, match="value"):
        c.set("a")
    with pytest.raises(TypeError, match="positional argument"):
        c.set("a", 1, 2)
    with pytest.raises(TypeError, match="bogus"):
        c.set("a", 1, bogus=2)
    with pytest.raises(TypeError, match="unhashable"):
        c.set(["a"], 1)

    class BadHash:
        def __hash__(self) -> int:
            raise RuntimeError("no hash")

    with pytest.raises(RuntimeError, match="no hash"):
        c.set(BadHash(), 1)
    c.set("a", 1, ttl=None)  # the lock was released each time (else this would hang)
    c.set("b", 2, ttl=5)  # a per-entry ttl: the general path
    c.set("c", 3)  # now in a table of (value, expires) entries
    assert c.keys() == ["c", "b"] and c.get("b") == 2
    assert c.stats().evictions == 1


@pytest.mark.parametrize("kwargs", [{}, {"ttl": 5}, {"max_size": 10}])
def test_get_and_set_signatures(LRU: Any, kwargs: dict[str, Any]) -> None:
    """help() and inspect show the same signatures, compiled or not."""
    c = LRU(2, **kwargs)
    get, put = inspect.signature(c.get), inspect.signature(c.set)
    assert list(get.parameters) == ["key", "default"]
    assert get.parameters["default"].default is None
    assert list(put.parameters) == ["key", "value", "ttl"]
    assert put.parameters["ttl"].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize(
    "kwargs", [{}, {"ttl": 50}, {"max_size": 64}], ids=["count", "ttl", "size"]
)
def test_no_memory_kept_per_operation(LRU: Any, kwargs: dict[str, Any]) -> None:
    """Chapter 00's leak_rate on the cache itself: a full cache under hits, misses, replacements
    and evictions with fresh keys and values keeps nothing per operation (a missing decref in the
    compiled code would keep every value it touched)."""
    c = LRU(8, clock=FakeClock(), **kwargs)
    n = itertools.count()

    def operate() -> None:
        i = next(n)
        key, value = f"key {i}", [i]  # fresh objects, about 120 bytes together
        c.set(key, value)  # a new key: evicts once full
        c.get(key)  # a hit
        c.get(f"absent {i}", value)  # a miss that returns the default
        c.set(key, [i])  # a replacement

    rate = leak_rate(operate, calls=2000, warmup=100)
    assert not rate.leaking and rate.bytes_per_call < 16, rate


def test_get_argument_errors(LRU: Any) -> None:
    c = LRU(2)
    c.set("a", 1)
    with pytest.raises(TypeError, match="key"):
        c.get()
    with pytest.raises(TypeError, match="positional argument"):
        c.get("a", 1, 2)
    with pytest.raises(TypeError, match="bogus"):
        c.get("a", bogus=1)
    with pytest.raises(TypeError, match="unhashable"):
        c.get(["a"])
    assert c.get(key="a") == 1 and c.get("b", default=7) == 7
    assert (c.stats().hits, c.stats().misses) == (1, 1)


def test_get_propagates_errors_of_hash_and_clock(LRU: Any) -> None:
    class BadHash:
        def __hash__(self) -> int:
            raise RuntimeError("no hash")

    failing = {"on": False}

    def clock() -> float:
        if failing["on"]:
            raise OSError("clock broke")
        return 0.0

    c = LRU(2, ttl=5, clock=clock)
    c.set("a", 1)
    with pytest.raises(RuntimeError, match="no hash"):
        c.get(BadHash())
    failing["on"] = True
    with pytest.raises(OSError, match="clock broke"):
        c.get("a")
    failing["on"] = False
    assert c.get("a") == 1
    assert (c.stats().hits, c.stats().misses) == (1, 0)  # a failed read counts nothing


def test_get_survives_a_key_that_empties_the_cache_while_compared(LRU: Any) -> None:
    """A key's ``__eq__`` is Python code run in the middle of a read; here it clears the cache.

    The read must neither crash nor lose the value it found: it returns it, as a hit that came
    just before the clear.
    """

    armed: dict[str, Any] = {"cache": None}

    class Key:
        def __init__(self, name: str) -> None:
            self.name = name

        def __hash__(self) -> int:
            return 1  # every Key collides, so lookups compare with __eq__

        def __eq__(self, other: object) -> bool:
            cache, armed["cache"] = armed["cache"], None
            if cache is not None:
                cache.clear()
            return isinstance(other, Key) and other.name == self.name

    c = LRU(4)
    value = object()
    c.set(Key("a"), value)
    armed["cache"] = c
    got = c.get(Key("a"))
    assert armed["cache"] is None  # __eq__ ran, and cleared the cache
    assert got is value or got is None  # None if the clear restarted the lookup first
    assert len(c) == 0
    assert sys.getrefcount(value) == 2  # ours and getrefcount's argument: the cache let go


def test_a_cycle_through_the_cache_is_collected(LRU: Any) -> None:
    """The compiled base class takes part in garbage collection like the Python slots."""

    class Value:
        cache: Any = None

    for kwargs in ({}, {"ttl": 5}, {"max_size": 100}):
        c = LRU(2, **kwargs)
        v = Value()
        v.cache = c  # value -> cache -> table -> value
        c.set("v", v)
        ref = weakref.ref(v)
        del c, v
        gc.collect()
        assert ref() is None, kwargs


def test_a_subclass_keeps_the_compiled_read(LRU: Any) -> None:
    class Tagged(LRU):  # type: ignore[misc, valid-type]
        __slots__ = ("tag",)

    c = Tagged(2)
    c.tag = "x"
    c.set("a", 1)
    assert c.get("a") == 1 and c.get("b", 0) == 0 and c.tag == "x"
    assert (c.stats().hits, c.stats().misses) == (1, 1)


# ------------------------------------------------------------------------------------------
# Property-based: LRUCache against a plain reference model


class _Model:
    """What LRUCache should do, written as plainly as possible (O(n) everywhere)."""

    def __init__(
        self, max: int | None, max_size: int | None, ttl: int | None, update_age: bool
    ) -> None:
        self.max, self.max_size, self.ttl, self.update_age = max, max_size, ttl, update_age
        self.now = 0
        # key -> [value, expires or None, ttl or None, size], least recently used first
        self.entries: OrderedDict[Any, list[Any]] = OrderedDict()
        self.hits = self.misses = self.evictions = self.expirations = 0
        self.disposed: list[tuple[Any, Any, str]] = []

    def size_of(self, value: str) -> int:
        return len(value) + 1

    def expired(self, key: Any) -> bool:
        expires = self.entries[key][1]
        return expires is not None and expires <= self.now

    def remove_expired(self, key: Any) -> None:
        value = self.entries.pop(key)[0]
        self.expirations += 1
        self.disposed.append((key, value, "expire"))

    def purge(self) -> int:
        stale = [key for key in self.entries if self.expired(key)]
        for key in stale:
            self.remove_expired(key)
        return len(stale)

    def total(self) -> int:
        return sum(e[3] for e in self.entries.values())

    def set(self, key: Any, value: str, ttl: int | None) -> None:
        size = self.size_of(value) if self.max_size is not None else 1
        if self.max_size is not None and size > self.max_size:
            raise ValueError
        self.purge()
        ttl = ttl if ttl is not None else self.ttl
        expires = None if ttl is None else self.now + ttl
        replacing = key in self.entries
        if replacing:
            old = self.entries[key][0]
            if old is not value:
                self.disposed.append((key, old, "set"))
            del self.entries[key]
        while (self.max is not None and not replacing and len(self.entries) >= self.max) or (
            self.max_size is not None and self.total() + size > self.max_size
        ):
            lru_key, lru = self.entries.popitem(last=False)
            self.evictions += 1
            self.disposed.append((lru_key, lru[0], "evict"))
        self.entries[key] = [value, expires, ttl, size]

    def get(self, key: Any) -> Any:
        if key not in self.entries:
            self.misses += 1
            return None
        if self.expired(key):
            self.remove_expired(key)
            self.misses += 1
            return None
        entry = self.entries[key]
        if self.update_age and entry[2] is not None:
            entry[1] = self.now + entry[2]
        self.entries.move_to_end(key)
        self.hits += 1
        return entry[0]

    def peek(self, key: Any) -> Any:
        if key not in self.entries:
            return None
        if self.expired(key):
            self.remove_expired(key)
            return None
        return self.entries[key][0]

    def take(self, key: Any) -> tuple[bool, Any]:
        if key not in self.entries:
            return False, None
        if self.expired(key):
            self.remove_expired(key)
            return False, None
        value = self.entries.pop(key)[0]
        self.disposed.append((key, value, "delete"))
        return True, value

    def clear(self) -> None:
        for key in list(self.entries):
            if self.expired(key):
                self.remove_expired(key)
            else:
                self.disposed.append((key, self.entries.pop(key)[0], "clear"))

    def items(self) -> list[tuple[Any, Any]]:
        self.purge()
        return [(key, e[0]) for key, e in reversed(self.entries.items())]


KEYS = st.sampled_from(["a", "b", "c", "d"])
VALUES = st.text(alphabet="xyz", max_size=6)
TTLS = st.one_of(st.none(), st.integers(1, 6))


class LRUCacheMachine(RuleBasedStateMachine):
    """Random operation sequences; after each one, the cache must agree with the model."""

    module: ModuleType = caches_gil

    @initialize(
        max=st.one_of(st.none(), st.integers(1, 5)),
        max_size=st.one_of(st.none(), st.integers(1, 14)),
        ttl=st.one_of(st.none(), st.integers(1, 6)),
        update_age=st.booleans(),
    )
    def setup(
        self, max: int | None, max_size: int | None, ttl: int | None, update_age: bool
    ) -> None:
        if max is None and max_size is None:
            max = 3
        self.clock = FakeClock()
        self.disposed: list[tuple[Any, Any, str]] = []
        self.cache = self.module.LRUCache(
            max,
            max_size=max_size,
            size_of=(lambda k, v: len(v) + 1) if max_size is not None else None,
            ttl=ttl,
            update_age_on_get=update_age,
            dispose=lambda k, v, r: self.disposed.append((k, v, r)),
            clock=self.clock,
        )
        self.model = _Model(max, max_size, ttl, update_age)

    @rule(key=KEYS, value=VALUES, ttl=TTLS)
    def set(self, key: str, value: str, ttl: int | None) -> None:
        try:
            self.model.set(key, value, ttl)
        except ValueError:
            with pytest.raises(ValueError):
                self.cache.set(key, value, ttl=ttl)
        else:
            self.cache.set(key, value, ttl=ttl)

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        assert self.cache.get(key) == self.model.get(key)

    @rule(key=KEYS)
    def peek(self, key: str) -> None:
        assert self.cache.peek(key) == self.model.peek(key)

    @rule(key=KEYS)
    def has(self, key: str) -> None:
        assert (key in self.cache) == (self.model.peek(key) is not None)

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        assert self.cache.delete(key) == self.model.take(key)[0]

    @rule(key=KEYS)
    def pop(self, key: str) -> None:
        found, value = self.model.take(key)
        if found:
            assert self.cache.pop(key) == value
        else:
            with pytest.raises(KeyError):
                self.cache.pop(key)

    @rule(seconds=st.integers(0, 4))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self.model.now += seconds

    @rule()
    def purge_stale(self) -> None:
        assert self.cache.purge_stale() == self.model.purge()

    @rule()
    def clear(self) -> None:
        self.cache.clear()
        self.model.clear()

    @rule()
    def length(self) -> None:
        self.model.purge()
        assert len(self.cache) == len(self.model.entries)

    @rule()
    def agrees_with_model(self) -> None:
        # A rule, not an invariant: items() and stats() remove expired entries, and the other
        # rules must also meet expired entries that are still held.
        assert self.cache.items() == self.model.items()
        s = self.cache.stats()
        m = self.model
        assert (s.hits, s.misses, s.evictions, s.expirations) == (
            m.hits,
            m.misses,
            m.evictions,
            m.expirations,
        )
        assert s.size == len(m.entries)
        assert s.total_size == (m.total() if m.max_size is not None else len(m.entries))
        if m.max is not None:
            assert s.size <= m.max
        if m.max_size is not None:
            assert s.total_size <= m.max_size
        assert Counter(self.disposed) == Counter(m.disposed)

    @invariant()
    def bounds_hold(self) -> None:
        if hasattr(self, "model"):  # reads the table without removing anything
            held = self.cache._table[0]
            assert self.model.max is None or len(held) <= self.model.max

    def teardown(self) -> None:
        if hasattr(self, "model"):
            self.agrees_with_model()


_machine_settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestLRUCacheAgainstModel = LRUCacheMachine.TestCase
TestLRUCacheAgainstModel.settings = _machine_settings


class LockedReadsMachine(LRUCacheMachine):
    module = caches_locked


TestLockedReadsAgainstModel = LockedReadsMachine.TestCase
TestLockedReadsAgainstModel.settings = settings(_machine_settings, max_examples=40)


class PurePythonMachine(LRUCacheMachine):
    module = caches_pure


TestPurePythonAgainstModel = PurePythonMachine.TestCase
TestPurePythonAgainstModel.settings = settings(_machine_settings, max_examples=40)


def test_public_names() -> None:
    assert set(caches_gil.__all__) == {"LimitableMap", "LRUCache", "CacheStats", "DisposeReason"}
    for cls in (LimitableMap, LRUCache, CacheStats):
        assert cls.__doc__
        for name, member in vars(cls).items():
            if callable(member) and not name.startswith("_"):
                assert member.__doc__, f"{cls.__name__}.{name} has no docstring"


# ------------------------------------------------------------------------------------------
# Issue 10: bounds beyond sys.maxsize, dispose after a failed set, copies, size_of, int-likes


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"ttl": 5}, {"dispose": Recorder()}, {"max_size": 1000}],
    ids=["count", "ttl", "dispose", "max_size"],
)
@pytest.mark.parametrize(
    "value", [sys.maxsize + 1, 2**63, 2**64, 10**30, _Index(2**63)], ids=repr
)
def test_max_beyond_sys_maxsize_is_refused_at_construction(
    LRU: Any, kwargs: dict[str, Any], value: Any
) -> None:
    """No cache holds more than sys.maxsize entries; the compiled write could not even compare
    against a larger max (OverflowError at every set): refused at once, the same on every
    build."""
    shown = value if isinstance(value, int) else value.n
    with pytest.raises(ValueError, match=rf"max\b.*{shown}"):
        LRU(value, **kwargs)
    c = LRU(sys.maxsize, **kwargs)  # the largest accepted: every write works
    for key in range(3):
        c.set(key, key)
    c.set(0, "zero")
    assert c.max == sys.maxsize and c.get(0) == "zero" and len(c) == 3


def test_huge_max_size_works_on_every_build(LRU: Any) -> None:
    """max_size is a total of sizes, summed as Python ints on every build: no upper limit."""
    clock = FakeClock()
    rec = Recorder()
    c = LRU(2, max_size=2**70, size_of=lambda k, v: 2**68, ttl=5, clock=clock, dispose=rec)
    for key in "abc":
        c.set(key, key)
    assert c.stats().total_size == 2 * 2**68 and rec.calls == [("a", "a", "evict")]
    big = LimitableMap(2**100)
    big[1] = 1
    assert big.limit == 2**100 and dict(big) == {1: 1}


class _FlakyKey:
    """A key whose ``__hash__`` fails once, on its ``fail_on``-th call (counted from
    ``arm``): a key that hashed fine a moment ago and fails now."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0
        self.fail_on = 0

    def arm(self, fail_on: int) -> None:
        self.calls, self.fail_on = 0, fail_on

    def __hash__(self) -> int:
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError(f"hash of {self.name} failed")
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __repr__(self) -> str:
        return f"_FlakyKey({self.name!r})"


_FAILED_SET_CONFIGS = {
    "count": ({"max": 2}, None),
    "ttl": ({"max": 2, "ttl": 5}, None),
    "own-ttl": ({"max": 2}, 5),
    "size": ({"max_size": 2, "size_of": lambda k, v: 1, "ttl": 5}, None),
    "count+size": ({"max": 2, "max_size": 20, "size_of": lambda k, v: 1}, None),
    "refresh": ({"max": 2, "ttl": 5, "update_age_on_get": True}, None),
}


def _assert_accounting(c: Any, rec: Recorder, entered: list[Any]) -> None:
    """Every value that entered the cache is held or was disposed, never both, and at most
    once; the counters agree with what is held."""
    held = [value for _, value in c.items()]
    disposed = [value for _, value, _ in rec.calls]
    assert len(disposed) == len(set(disposed)), f"disposed twice: {rec.calls}"
    assert not set(held) & set(disposed), f"held and disposed: {held} {rec.calls}"
    assert set(entered) <= set(held) | set(disposed), f"lost: {entered} {held} {rec.calls}"
    stats = c.stats()
    assert stats.size == len(held)
    if c.max_size is not None:
        assert stats.total_size == len(held)  # every entry has size 1
        assert c._total_size == sum(c._sizes.values()) and len(c._sizes) == len(held)


@pytest.mark.parametrize("config", list(_FAILED_SET_CONFIGS))
@pytest.mark.parametrize("key", [["unhashable"], "flaky"], ids=["unhashable", "flaky"])
def test_a_set_that_fails_after_purging_disposes_what_was_purged(
    LRU: Any, config: str, key: Any
) -> None:
    """The purge of expired entries comes first; the key's hash failing afterwards must not
    leave them uncounted by dispose."""
    kwargs, own_ttl = _FAILED_SET_CONFIGS[config]
    clock = FakeClock()
    rec = Recorder()
    c = LRU(**kwargs, clock=clock, dispose=rec)
    c.set("a", "va", ttl=own_ttl or 5)
    c.set("b", "vb", ttl=own_ttl or 5)
    clock.advance(10)
    if key == "flaky":
        key = _FlakyKey("k")
        key.arm(1)
    with pytest.raises((TypeError, RuntimeError)):
        c.set(key, "vk", ttl=own_ttl)
    assert sorted(rec.calls) == [("a", "va", "expire"), ("b", "vb", "expire")]
    assert c.stats().expirations == 2 and len(c) == 0
    c.clear()
    assert len(rec.calls) == 2  # exactly once


@pytest.mark.parametrize("config", list(_FAILED_SET_CONFIGS))
@pytest.mark.parametrize("scenario", ["evict", "expire", "replace"])
@pytest.mark.parametrize("fail_on", range(1, 9))
def test_a_key_whose_hash_fails_later_leaves_everything_disposed_once(
    LRU: Any, config: str, scenario: str, fail_on: int
) -> None:
    """A key's hash succeeds, then fails on its ``fail_on``-th call within one ``set``: the
    entries that left (purged, evicted, replaced) are disposed exactly once, no entry still held
    is disposed, the counters stay right, and the cache goes on working."""
    kwargs, own_ttl = _FAILED_SET_CONFIGS[config]
    clock = FakeClock()
    rec = Recorder()
    c = LRU(**kwargs, clock=clock, dispose=rec)
    key = _FlakyKey("k")
    entered = ["va", "vb"]
    if scenario == "replace":
        c.set("a", "va", ttl=own_ttl)
        c.set(key, "vk0", ttl=own_ttl)
        entered = ["va", "vk0"]
    else:
        c.set("a", "va", ttl=own_ttl)
        c.set("b", "vb", ttl=own_ttl)
    if scenario == "expire":
        c.set("a", "va", ttl=1)  # expires first; "b" lives on
        clock.advance(2)
    key.arm(fail_on)
    try:
        c.set(key, "vk", ttl=own_ttl)
    except RuntimeError as exc:
        assert "hash of k failed" in str(exc)
    else:
        entered.append("vk")
    key.arm(0)  # from now on its hash works
    _assert_accounting(c, rec, entered)
    for name in "xyz":  # the cache goes on: everything old is evicted in turn
        c.set(name, "v" + name, ttl=own_ttl)
        entered.append("v" + name)
        _assert_accounting(c, rec, entered)
    c.clear()
    _assert_accounting(c, rec, entered)
    assert len(c) == 0


@pytest.mark.parametrize("kwargs", [{}, {"ttl": 5}], ids=["count", "ttl"])
@pytest.mark.parametrize("scenario", ["evict", "expire"])
@pytest.mark.parametrize("fail_on", range(1, 7))
def test_a_key_whose_hash_fails_later_keeps_the_counters_right_without_dispose(
    LRU: Any, kwargs: dict[str, Any], scenario: str, fail_on: int
) -> None:
    """The same on the short (and, where built, compiled) writes of the two specialised
    configurations: every entry is held, evicted or expired, and counted once."""
    clock = FakeClock()
    c = LRU(2, **kwargs, clock=clock)
    c.set("a", "va", ttl=1 if scenario == "expire" else None)
    c.set("b", "vb")
    clock.advance(2)
    key = _FlakyKey("k")
    key.arm(fail_on)
    entered = 2
    try:
        c.set(key, "vk")
    except RuntimeError:
        pass
    else:
        entered += 1
    key.arm(0)
    for name in "xyz":
        s = c.stats()
        assert s.size == len(c.items()) <= 2
        assert s.size + s.evictions + s.expirations == entered
        c.set(name, name)
        entered += 1
    c.clear()
    assert c.stats().size == 0 and len(c) == 0


@pytest.mark.parametrize("operation", ["clear", "delete", "pop"])
def test_a_failing_clock_in_a_removal_loses_nothing(LRU: Any, operation: str) -> None:
    """clear, delete and pop read the clock before taking anything out: if it raises, the cache
    is unchanged (before, the entries were gone and never disposed)."""
    clock = FakeClock()
    rec = Recorder()
    c = LRU(3, ttl=5, clock=clock, dispose=rec)
    c.set("a", 1)
    c.set("b", 2)

    def broken() -> float:
        raise OSError("clock broke")

    c._clock = broken
    with pytest.raises(OSError, match="clock broke"):
        if operation == "clear":
            c.clear()
        elif operation == "delete":
            c.delete("a")
        else:
            c.pop("a")
    c._clock = clock
    assert rec.calls == [] and c.keys() == ["b", "a"]
    c.clear()
    assert sorted(rec.calls) == [("a", 1, "clear"), ("b", 2, "clear")]


def test_dispose_raising_during_a_failed_set_becomes_a_note(LRU: Any) -> None:
    """The set's own error propagates; a dispose error meanwhile is noted on it, and every
    dispose call still runs."""
    clock = FakeClock()
    seen = []

    def dispose(key: Any, value: Any, reason: str) -> None:
        seen.append(key)
        raise KeyError(f"dispose of {key}")

    c = LRU(3, ttl=5, clock=clock, dispose=dispose)
    c.set("a", 1)
    c.set("b", 2)
    clock.advance(10)
    with pytest.raises(TypeError, match="unhashable") as info:
        c.set(["x"], 3)
    assert sorted(seen) == ["a", "b"]
    assert any("dispose" in note for note in getattr(info.value, "__notes__", []))


def test_limitable_map_copies_are_independent() -> None:
    """copy.copy, copy.deepcopy and pickle give a map of its own (before, a shallow copy shared
    the storage: setting on the copy evicted from the original)."""
    import copy
    import pickle

    m: LimitableMap[str, Any] = LimitableMap(3)
    m["a"] = [1]
    m["b"] = [2]
    m["c"] = [3]
    m["d"] = [4]  # one eviction
    for dup in (
        copy.copy(m),
        copy.deepcopy(m),
        pickle.loads(pickle.dumps(m)),
        pickle.loads(pickle.dumps(m, protocol=0)),
    ):
        assert type(dup) is LimitableMap
        assert (dup.limit, dup.evictions, list(dup.items())) == (3, 1, list(m.items()))
        dup["e"] = [5]  # evicts "b" from the copy only
        del dup["c"]
        assert list(m) == ["b", "c", "d"] and m.evictions == 1
        assert list(dup) == ["d", "e"] and dup.evictions == 2
    assert copy.copy(m)["b"] is m["b"]  # shallow: the same values
    deep = copy.deepcopy(m)
    assert deep["b"] == m["b"] and deep["b"] is not m["b"]


@pytest.mark.parametrize(
    "kwargs",
    [{"max": 2}, {"max": 2, "ttl": 5}, {"max_size": 100}, {"max": 2, "dispose": Recorder()}],
    ids=["count", "ttl", "max_size", "dispose"],
)
def test_lru_cache_refuses_copy_and_pickle_the_same_on_every_build(
    LRU: Any, kwargs: dict[str, Any]
) -> None:
    """An LRUCache holds a lock, a clock, callbacks and monotonic deadlines: a copy could not be
    made faithfully (and would dispose the same values twice), so copy.copy, copy.deepcopy and
    pickle all refuse clearly, on every build (before, the pure-Python copy.copy shared the
    storage, and a copied size-bounded cache broke)."""
    import copy
    import pickle

    c = LRU(**kwargs)
    c.set("a", 1)
    for make in (copy.copy, copy.deepcopy, pickle.dumps, lambda c: pickle.dumps(c, protocol=0)):
        with pytest.raises(TypeError, match=r"LRUCache cannot be copied or pickled.*items\(\)"):
            make(c)
    assert c.items() == [("a", 1)]


def test_size_of_must_take_the_key_and_the_value(LRU: Any) -> None:
    """size_of=len is the natural mistake: refused at construction, naming size_of."""
    with pytest.raises(TypeError, match=r"size_of.*\(key, value\).*len"):
        LRU(max_size=10, size_of=len)
    with pytest.raises(TypeError, match=r"size_of.*\(key, value\)"):
        LRU(max_size=10, size_of=lambda value: 1)
    c = LRU(max_size=10, size_of=lambda *args: 1)  # anything that takes two arguments
    c.set("a", 1)
    assert LRU(max_size=10, size_of=max).max_size == 10  # no signature to read: accepted


@pytest.mark.parametrize(
    ("size_of", "error"),
    [(lambda k, v: len(v), TypeError), (lambda k, v: {}[k], KeyError)],
    ids=["len-of-int", "raises-keyerror"],
)
def test_size_of_errors_name_size_of_and_the_key(
    LRU: Any, size_of: Any, error: type[Exception]
) -> None:
    rec = Recorder()
    c = LRU(max_size=10, size_of=size_of, dispose=rec)
    with pytest.raises(error, match=r"size_of.*'k1'") as info:
        c.set("k1", 5)
    assert type(info.value) is error  # the callback's own exception, with a note
    assert len(c) == 0 and rec.calls == []


def test_int_like_size_of_results_and_ttls_are_accepted(LRU: Any) -> None:
    """operator.index is the rule for an int, as for max and max_size."""
    c = LRU(max_size=10, size_of=lambda k, v: _Index(v), ttl=_Index(5))
    c.set("a", 3)
    c.set("b", 4, ttl=_Index(2))
    assert c.stats().total_size == 7 and type(c.stats().total_size) is int
    assert c.ttl == 5 and type(c.ttl) is int
    with pytest.raises(ValueError, match="size_of"):
        c.set("c", 0)
    with pytest.raises(ValueError, match="ttl"):
        LRU(2, ttl=_Index(0))


def test_numpy_integers_are_accepted_as_ints(LRU: Any) -> None:
    np = pytest.importorskip("numpy")
    c = LRU(np.int64(2), max_size=np.int64(10), size_of=lambda k, v: np.int64(v))
    c.set("a", 3)
    c.set("b", 4, ttl=np.int32(5))
    assert c.stats().total_size == 7 and (c.max, c.max_size) == (2, 10)
    d = LRU(max_size=10, size_of=lambda k, v: v)
    with pytest.raises(TypeError, match="size_of"):
        d.set("c", np.float64(2.0))  # a float is not an int, numpy's neither
    assert LimitableMap(np.int64(3)).limit == 3
