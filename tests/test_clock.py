"""Tests for leaklab.clock.FakeClock, the hand-moved clock of chapters 01 and 02."""

from __future__ import annotations

import pytest

from leaklab.caches import LRUCache
from leaklab.clock import FakeClock


def test_moves_only_when_told():
    clock = FakeClock(5)
    assert clock() == 5.0 and clock() == 5.0
    assert clock.advance(2.5) == 7.5 and clock() == 7.5
    assert clock.advance(0) == 7.5


@pytest.mark.parametrize("bad, error", [("1", TypeError), (True, TypeError), (float("nan"), ValueError),
                                        (float("inf"), ValueError), (-1, ValueError)])
def test_advance_refuses_bad_seconds(bad, error):
    clock = FakeClock()
    with pytest.raises(error, match="seconds"):
        clock.advance(bad)
    assert clock() == 0.0


def test_start_must_be_a_finite_number():
    with pytest.raises(TypeError, match="now"):
        FakeClock("0")
    with pytest.raises(ValueError, match="now"):
        FakeClock(float("nan"))


def test_drives_a_cache_ttl():
    clock = FakeClock()
    cache = LRUCache(10, ttl=30, clock=clock)
    cache.set("k", "v")
    clock.advance(29.9)
    assert cache.get("k") == "v"
    clock.advance(0.1)
    assert cache.get("k") is None
