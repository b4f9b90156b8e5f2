"""Tests for leaklab.scenarios.cache_threads: the race chapter 01 runs to test thread safety."""

import sys
import threading

import cachetools
import pytest

from leaklab.caches import LRUCache
from leaklab.scenarios import cache_threads


class _LockedCachetools:
    """cachetools.LRUCache behind a lock: what chapter 01's third exercise builds."""

    def __init__(self, maxsize):
        self.lock, self.cache = threading.Lock(), cachetools.LRUCache(maxsize)

    def get(self, key, default=None):
        with self.lock:
            return self.cache.get(key, default)

    def set(self, key, value):
        with self.lock:
            self.cache[key] = value

    def __len__(self):
        return len(self.cache)


def test_unlocked_lru_is_an_lru_from_one_thread():
    lru = cache_threads.UnlockedLRU(2)
    lru.set("a", 1)
    lru.set("b", 2)
    assert lru.get("a") == 1  # "a" is now the most recently used
    lru.set("c", 3)
    assert len(lru) == 2 and lru.get("b") is None and lru.get("a") == 1 and lru.get("c") == 3


def test_race_counts_nothing_from_one_thread():
    result = cache_threads.race(cache_threads.UnlockedLRU(8), bound=8, threads=1, ops=2_000)
    assert result == {"operations": 4_000, "raised": 0, "over_bound": 0, "lost_capacity": 0, "failures": 0}


def test_race_restores_the_switch_interval():
    before = sys.getswitchinterval()
    cache_threads.race(LRUCache(4), bound=4, threads=2, ops=100)
    assert sys.getswitchinterval() == before


@pytest.mark.parametrize("make", [lambda: cachetools.LRUCache(32), lambda: cache_threads.UnlockedLRU(32)],
                         ids=["cachetools.LRUCache", "UnlockedLRU"])
def test_race_breaks_caches_without_a_lock(make):
    assert cache_threads.race(make(), bound=32)["failures"] > 0


@pytest.mark.parametrize("make", [lambda: LRUCache(32), lambda: _LockedCachetools(32)],
                         ids=["LRUCache", "cachetools behind a lock"])
def test_race_finds_nothing_wrong_with_a_locked_cache(make):
    result = cache_threads.race(make(), bound=32)
    assert result["failures"] == 0 and result["operations"] == 2 * 16 * 12_500


def test_lost_capacity_is_seen_after_the_race():
    class Drifting(cache_threads.UnlockedLRU):
        """An LRU whose bound silently shrank to 30, as a drifted count makes it behave."""

        def set(self, key, value):
            super().set(key, value)
            while len(self._data) > 30:
                self._data.popitem(last=False)

    result = cache_threads.race(Drifting(32), bound=32, threads=1, ops=10)
    assert result["lost_capacity"] == 2 and result["failures"] == 2


def test_race_rejects_bad_arguments():
    with pytest.raises(ValueError):
        cache_threads.race(LRUCache(4), bound=4, threads=0)
