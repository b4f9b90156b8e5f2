"""Tests for the chapter 05 scenarios (leaklab.scenarios.remote_workers and remote_service),
against real servers only: a Valkey server, a Valkey cluster and, where installed, memcached."""

from __future__ import annotations

import gc
import json
import os
import pickle
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from leaklab.caches import LRUCache
from leaklab.measure import MemoryTrace
from leaklab.remote import MEMCACHED_MISSING, RemoteCache, embedded_cluster, embedded_server
from leaklab.scenarios import remote_service as rs
from leaklab.scenarios import remote_workers as rw
from leaklab.scenarios.cache_service import skewed_keys


@pytest.fixture(scope="module", autouse=True)
def _no_server_outlives_the_tests():
    before = rw.server_processes()
    yield
    assert rw.server_processes() == before


@pytest.fixture(scope="module")
def url():
    with embedded_server(maxmemory="64mb") as address:
        yield address


# --------------------------------------------------------------------------- the workload


def test_a_product_page_is_json_and_42_tracked_containers():
    page = rw.product_page(3)
    assert json.loads(json.dumps(page)) == page and page["id"] == 3
    gc.collect()  # dicts of atomic values would be untracked now; these hold lists
    containers = [page, page["reviews"], *page["reviews"], *(r["tags"] for r in page["reviews"])]
    assert len(containers) == 2 * rw.REVIEWS + 2 and all(gc.is_tracked(c) for c in containers)


def test_worker_keys_deal_one_seeded_stream_round_robin():
    stream = skewed_keys(3 * 100, rw.KEYS, s=rw.SKEW)
    dealt = [rw.worker_keys(i, workers=3, requests=100) for i in range(3)]
    assert [k for trio in zip(*dealt) for k in trio] == stream
    assert rw.worker_keys(1, workers=3, requests=100) == dealt[1]
    with pytest.raises(ValueError):
        rw.worker_keys(3, workers=3)


def test_handle_is_cache_aside_and_counts():
    cache, counter = LRUCache(10), rw.Counter()
    pages = [rw.handle(cache, key, counter) for key in (1, 2, 1, 1)]
    assert (counter.hits, counter.misses) == (2, 2) and pages[0] == pages[2] == rw.product_page(1)
    assert len(cache) == 2


@pytest.mark.parametrize(("args", "error"), [(("everywhere", 0), ValueError), (("shared", 0), ValueError)])
def test_worker_rejects_bad_arguments(args, error):
    with pytest.raises(error):
        rw.worker(*args)
    with pytest.raises(error):
        rw.run_workers(args[0])


def test_in_process_workers_each_build_their_own_copy():
    run = rw.run_workers("in-process", workers=2, requests=300)
    stream = skewed_keys(600, rw.KEYS, s=rw.SKEW)
    results = [t.result for t in run["traces"]]
    for i, result in enumerate(results):
        assert result["held"] == result["misses"] == len(set(stream[i::2]))
        assert result["hits"] + result["misses"] == 300
        assert result["tracked"] >= (2 * rw.REVIEWS + 2) * result["held"]  # start-up objects frozen
    for trace in run["traces"]:  # cut at the last request served
        assert trace.frame["done"].iloc[-1] == 300 and (trace.frame["done"].iloc[:-1] < 300).all()
    assert run["server"] == [] and "keys" not in run


def test_shared_workers_hold_one_copy_in_the_server(url):
    run = rw.run_workers("shared", url, workers=2, requests=300)
    stream = skewed_keys(600, rw.KEYS, s=rw.SKEW)
    results = [t.result for t in run["traces"]]
    assert run["keys"] == len(set(stream))
    misses = sum(r["misses"] for r in results)
    assert len(set(stream)) <= misses <= sum(len(set(stream[i::2])) for i in range(2))
    assert all(r["held"] == 0 and r["tracked"] < 2 * rw.REVIEWS * 20 for r in results)
    assert len(run["server"]) >= 2
    total = rw.total_trace(run, points=11)
    assert total.frame["done"].tolist() == [30.0 * i for i in range(11)]
    workers_only = rw.total_trace({**run, "server": []}, points=11)
    assert (total.frame["rss_mib"] > workers_only.frame["rss_mib"]).all()   # the server is added


def test_rise_at_interpolates_the_rss_rise():
    frame = pd.DataFrame({"seconds": [0, 1, 2, 3], "rss_mib": [10.0, 12.0, 14.0, 14.5],
                          "done": [0, 100, 200, 200]})
    assert rw.rise_at(MemoryTrace(frame=frame), [0, 50, 200, 300]) == [0.0, 1.0, 4.5, 4.5]


# --------------------------------------------------------------------------- the server's own memory


def test_fill_server_stays_under_maxmemory_by_evicting():
    with embedded_server(maxmemory="2mb", policy="allkeys-lru") as small:
        result = rw.fill_server(small, requests=2_000, batches=10, pause=0, payload_bytes=4096)
        info = rw.server_info(small)
    assert result["requests"] == 2_000 and result["hits"] == 1_000 and result["errors"] == 0
    assert max(result["used_memory"]) <= 1.02 * result["maxmemory"] == 1.02 * 2 * 2**20
    assert result["evicted_keys"][-1] > 0.5 * result["misses"] and result["keys"] < 1_000
    assert result["evicted_keys"] == sorted(result["evicted_keys"])
    assert info["evicted_keys"] == result["evicted_keys"][-1]


def test_fill_server_without_eviction_counts_refused_writes():
    with embedded_server(maxmemory="2mb", policy="noeviction") as full:
        result = rw.fill_server(full, requests=2_000, batches=10, pause=0, payload_bytes=4096)
    assert result["evicted_keys"][-1] == 0 and result["errors"] > 0 and result["hits"] < 1_000


def test_fill_server_rejects_uneven_batches(url):
    with pytest.raises(ValueError):
        rw.fill_server(url, requests=1_001, batches=10)


def test_server_info_reads_info_and_dbsize(url):
    cache = RemoteCache(url, ttl=60, namespace="info-test")
    before = rw.server_info(url)
    cache.set("one", 1)
    after = rw.server_info(url)
    assert after["keys"] == before["keys"] + 1 and after["maxmemory"] == 64 * 2**20
    assert after["process_id"] > 0 and after["used_memory"] > 0


# --------------------------------------------------------------------------- processes


def test_tree_memory_adds_up_child_processes():
    code = "import time; x = bytearray(60 * 2**20); x[::4096] = b'x' * len(x[::4096]); time.sleep(1.0)"
    with rw.TreeMemory(period=0.02) as tree:
        own = tree.sample()
        subprocess.run([sys.executable, "-c", code], check=True)
    assert tree.peak_mib > own + 40


def test_server_processes_lists_running_servers_only():
    before = rw.server_processes()
    with embedded_server():
        during = rw.server_processes()
    assert sorted(during) == sorted([*before, "python", "valkey-server"])   # the watchdog and the server
    assert rw.server_processes() == before


# --------------------------------------------------------------------------- the service


def test_service_answers_cache_aside(url):
    service = rs.Service(RemoteCache(url, ttl=60, namespace="service-test"))
    assert service.handle(5) == service.handle(5) == rw.product_page(5)
    stats = service.cache.stats()
    assert (stats.hits, stats.misses, stats.errors) == (1, 1, 0)


def test_outage_run_answers_every_request_and_recovers():
    servers = rw.server_processes()
    run = rs.outage_run(down_at=0.3, down_for=0.3, after=0.6)
    events = run["events"]
    assert 0.3 <= events["stopping"] < events["down"] < events["back"]
    assert run["raised"] == run["wrong"] == 0 and run["max_ms"] < 500
    rows = pd.DataFrame(run["rows"], columns=["t", "outcome", "seconds"])
    assert set(rows["outcome"]) <= set(rs.OUTCOMES)
    ended = rows["t"] + rows["seconds"]  # a request is judged by when it started and ended
    gone = rows[(rows["t"] > events["down"]) & (ended < events["back"])]
    assert len(gone) > 10 and (gone["outcome"] == "error").all()
    assert (rows[ended < events["stopping"]]["outcome"] != "error").all()
    settled = rows[rows["t"] > events["back"] + 0.3]
    assert (settled["outcome"] != "error").all() and (settled["outcome"] == "hit").any()
    windows = pd.DataFrame(run["windows"])
    assert windows[["hit", "miss", "error"]].to_numpy().sum() <= len(rows)
    assert run["stats"].errors > 0 and rw.server_processes() == servers


def test_cluster_nodes_describe_a_ready_cluster():
    with embedded_cluster(nodes=3) as urls:
        cache = RemoteCache(urls, ttl=60)
        for key in range(300):
            cache.set(f"k{key}", key)
        nodes = rs.cluster_nodes(urls)
    assert [n["node"] for n in nodes] == [1, 2, 3] and {n["state"] for n in nodes} == {"ok"}
    assert [n["slots"] for n in nodes] == ["0-5460", "5461-10921", "10922-16383"]
    assert sum(n["keys"] for n in nodes) == 300 and min(n["keys"] for n in nodes) > 60


# --------------------------------------------------------------------------- memcached


@pytest.mark.skipif(shutil.which("memcached") is None and not os.environ.get("MEMCACHED_URL"),
                    reason=MEMCACHED_MISSING)
def test_memcached_lru_keeps_under_its_limit_and_keeps_the_hot_key():
    result = rs.memcached_lru(memory_mb=8)
    assert result["limit_maxbytes"] == 8 * 2**20 or os.environ.get("MEMCACHED_URL")
    assert result["bytes"] <= result["limit_maxbytes"] < result["written"] and result["evictions"] > 0
    assert result["hot_kept"] and not result["first_kept"] and result["errors"] == 0


def test_memcached_lru_says_what_to_install_where_there_is_none(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))   # no memcached binary on this PATH
    monkeypatch.delenv("MEMCACHED_URL", raising=False)
    assert rs.memcached_lru() == {"skipped": MEMCACHED_MISSING}


# --------------------------------------------------------------------------- pickle


def test_a_poisoned_pickle_runs_code_but_remote_cache_refuses_it(url):
    rs.ran.clear()
    payload = rs.poisoned_value()
    pickle.loads(payload)
    assert rs.ran == ["code from the cache ran here"]
    rs.ran.clear()
    admin = rw.redis_admin(url)
    admin.set("poison-test:session", payload)
    admin.close()
    reader = RemoteCache(url, ttl=60, namespace="poison-test")
    assert reader.get("session", "default") == "default"
    assert reader.stats().errors == 1 and rs.ran == []
