"""Tests for leaklab.scenarios.cache_service, the workloads of chapter 01."""

import gc
import itertools
import os

import pytest

from leaklab.caches import LimitableMap, LRUCache
from leaklab.measure import leak_rate
from leaklab.scenarios import cache_service as cs


@pytest.fixture(autouse=True)
def _reset():
    cs.reset()
    yield
    cs.reset()


# The service and its caches


def test_the_dict_variant_is_the_module_level_dict():
    cs.cache_set("a", 1)
    assert cs.cache_get("a") == 1 and cs.cache == {"a": 1} and cs.cache_get("b") is None
    service = cs.Service("dict")  # starts from an empty module-level dict
    assert cs.cache == {} and service.handle(3) == cs.render_page(3) and 3 in cs.cache


def test_make_cache_builds_each_variant():
    clock = cs.RequestClock()
    assert isinstance(cs.make_cache("LimitableMap", clock, bound=5), LimitableMap)
    plain, timed = cs.make_cache("LRUCache", clock, bound=5), cs.make_cache("LRUCache+TTL", clock, bound=5)
    assert isinstance(plain, LRUCache) and plain.max == 5 and plain.ttl is None
    assert isinstance(timed, LRUCache) and timed.max == 5 and timed.ttl == cs.TTL_SECONDS
    with pytest.raises(ValueError, match="variant"):
        cs.make_cache("unbounded")


def test_request_clock_moves_only_when_ticked():
    clock = cs.RequestClock(step=0.5)
    assert clock() == 0.0
    clock.tick()
    clock.tick()
    assert clock() == 1.0


def test_render_page_has_the_payload_size():
    assert len(cs.render_page(12)) == cs.PAYLOAD_BYTES and cs.render_page(12).startswith("<p>page 12</p>")
    assert len(cs.render_page(1, 100)) == 100


def test_service_counts_hits_and_misses():
    service = cs.Service("LRUCache", bound=2)
    for key in (1, 1, 2, 3, 1):
        service.handle(key)
    assert service.counters() == {"held": 2, "hits": 1, "misses": 4, "evictions": 2, "expirations": 0}


@pytest.mark.parametrize("variant, held, evictions, expirations", [
    ("dict", 3000, 0, 0),
    ("LimitableMap", 1000, 2000, 0),
    ("LRUCache", 1000, 2000, 0),
    ("LRUCache+TTL", 500, 0, 2500),
])
def test_serve_counts(variant, held, evictions, expirations):
    result = cs.serve(variant, requests=6000, batches=6, payload_bytes=64, pause=0, bound=1000)
    assert result["requests"] == 6000 and result["hits"] == result["misses"] == 3000
    assert result["held"] == held and result["evictions"] == evictions
    if variant == "LRUCache+TTL":
        assert abs(result["expirations"] - expirations) <= 1 and result["held"] <= 501
    else:
        assert result["expirations"] == expirations
    assert len(result["sizes"]) == 6 and result["sizes"][-1] == result["held"]
    assert cs.services[variant].cache is not None  # the cache outlives the run, like a service's


def test_serve_rejects_uneven_batches():
    with pytest.raises(ValueError, match="multiple"):
        cs.serve("dict", requests=10, batches=3)


@pytest.mark.parametrize("variant, leaking", [
    ("dict", True), ("LimitableMap", False), ("LRUCache", False), ("LRUCache+TTL", False),
])
def test_only_the_dict_service_leaks(variant, leaking):
    service = cs.Service(variant, bound=100, payload_bytes=1024)
    keys = itertools.count()
    rate = leak_rate(lambda: service.handle(next(keys)), calls=500, warmup=200)
    assert rate.leaking is leaking
    if leaking:
        assert 1024 < rate.bytes_per_call < 2 * 1024


# Latency and the collector


def test_profile_values_are_tracked_or_not():
    value = cs.profile_value("dict of dicts", 3)
    assert gc.is_tracked(value) and gc.is_tracked(value["profile"]) and gc.is_tracked(value["profile"]["tags"])
    assert not gc.is_tracked(cs.profile_value("dict of str", 3))


def test_latency_run_shape_and_collector_work():
    dicts = cs.latency_run("dict of dicts", requests=40_000, windows=4)
    strs = cs.latency_run("dict of str", requests=40_000, windows=4)
    bounded = cs.latency_run("LRUCache of dicts", requests=40_000, windows=4, bound=100)
    for run in (dicts, strs, bounded):
        assert [w["requests"] for w in run["windows"]] == [10_000, 20_000, 30_000, 40_000]
        assert all(w["p50_us"] <= w["p99_us"] <= w["max_ms"] * 1e3 for w in run["windows"])
        assert run["p50_us"] <= run["p99_us"] <= run["max_ms"] * 1e3
    assert [w["entries"] for w in bounded["windows"]] == [100] * 4
    assert dicts["collections"] > 10 and dicts["gc_ms"] > 0
    assert strs["collections"] == 0 and bounded["full"] == []
    assert all(entries <= 40_000 for entries, _ in dicts["full"])


def test_latency_run_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        cs.latency_run("dict of sets")
    with pytest.raises(ValueError, match="multiple"):
        cs.latency_run("dict of str", requests=10, windows=3)


# Eviction policies


def test_skewed_keys_are_seeded_and_skewed():
    keys = cs.skewed_keys(20_000, 1000, seed=3)
    assert keys == cs.skewed_keys(20_000, 1000, seed=3) and keys != cs.skewed_keys(20_000, 1000, seed=4)
    assert all(0 <= k < 1000 for k in keys)
    assert keys.count(0) > 5 * keys.count(9) > 0  # rank 1 is about 10x rank 10
    with pytest.raises(ValueError):
        cs.skewed_keys(10, 0)


def test_hit_ratio_counts():
    result = cs.hit_ratio(LRUCache(2), [1, 1, 2, 3, 1, 0, 0], watch=1)
    assert result == {"hits": 2, "misses": 5, "ratio": 2 / 7, "watched_misses": 2}


def test_lru_beats_fifo_on_a_skewed_stream():
    keys = cs.skewed_keys(50_000, 20_000)
    fifo, lru = cs.hit_ratio(LimitableMap(200), keys), cs.hit_ratio(LRUCache(200), keys)
    assert lru["ratio"] > fifo["ratio"] + 0.02
    assert lru["watched_misses"] == 1 and fifo["watched_misses"] > 10


# Values of very different sizes


def test_mixed_size_stream_shifts_to_big_values():
    sizes = cs.mixed_size_stream(4000)
    first, second = sizes[:2000], sizes[2000:]
    assert set(sizes) == {cs.SMALL_BYTES, cs.BIG_BYTES}
    assert first.count(cs.BIG_BYTES) < 100 < 800 < second.count(cs.BIG_BYTES)


def test_mixed_sizes_bounds_bytes_only_with_max_size():
    by_count = cs.mixed_sizes(cs.SIZE_VARIANTS[0], requests=2000, batches=20, pause=0)
    by_size = cs.mixed_sizes(cs.SIZE_VARIANTS[1], requests=2000, batches=20, pause=0)
    assert max(by_size["held_bytes"]) <= cs.MAX_SIZE_BYTES
    assert max(by_count["held_bytes"]) > 4 * cs.MAX_SIZE_BYTES
    assert max(by_count["entries"]) == 400 and by_size["entries"][9] > 400
    assert set(cs.size_caches) == set(cs.SIZE_VARIANTS)
    with pytest.raises(ValueError, match="variant"):
        cs.size_bounded_cache("max=everything")


# Worker processes forked after the cache was filled


def test_read_every_page_reads_without_writing():
    pages = cs.fill_cache(10, 100)
    snapshot = dict(pages)
    assert cs.read_every_page(pages) == 10 * 100 and pages == snapshot


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_preforked_workers_share_until_they_read():
    result = cs.preforked_workers(workers=3, readers=1, entries=10_000, payload_bytes=1024)
    assert result["entries"] == 10_000 and result["reads"] == [False, False, True]
    assert result["read_bytes"] == [0, 0, 10_000 * 1024]
    cache_bytes = result["cache_bytes"]
    assert cache_bytes > 9 * 2**20  # 10,000 pages of about 1 KiB
    idle, _, reader = result["uss_growth_bytes"]
    assert idle < 0.1 * cache_bytes < 0.6 * cache_bytes < reader  # shared until read


def test_preforked_workers_rejects_bad_arguments():
    for kwargs in ({"workers": 0}, {"readers": -1}, {"workers": 2, "readers": 3}, {"entries": 0},
                   {"payload_bytes": True}):
        with pytest.raises(ValueError):
            cs.preforked_workers(**kwargs)


# Progress marks: the services report requests, so figures can put them on x


def test_serve_and_mixed_sizes_report_progress(monkeypatch):
    marks = []
    monkeypatch.setattr(cs, "progress", marks.append)
    cs.serve("LRUCache", requests=600, batches=3, payload_bytes=16, pause=0)
    assert marks == [200, 400, 600]
    marks.clear()
    cs.mixed_sizes(cs.SIZE_VARIANTS[0], requests=40, batches=4, pause=0)
    assert marks == [10, 20, 30, 40]


def test_profile_request_caches_on_a_miss_only():
    store = {}
    first = cs.profile_request(store.get, store.__setitem__, "dict of str", 5)
    again = cs.profile_request(store.get, lambda key, value: pytest.fail("stored twice"), "dict of str", 5)
    assert first is again and store == {"user:5": cs.profile_value("dict of str", 5)}
