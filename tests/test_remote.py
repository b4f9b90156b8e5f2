"""Tests for leaklab.remote, against real servers only: an embedded Valkey, a local Valkey cluster,
and memcached where it is installed (CI installs it)."""

from __future__ import annotations

import math
import os
import pickle
import signal
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from urllib.parse import urlsplit

import psutil
import pytest

from leaklab import remote
from leaklab.memoize import memoize
from leaklab.remote import (
    MEMCACHED_MISSING,
    RemoteCache,
    RemoteCacheStats,
    embedded_cluster,
    embedded_memcached,
    embedded_server,
)

needs_memcached = pytest.mark.skipif(shutil.which("memcached") is None and not os.environ.get("MEMCACHED_URL"),
                                     reason=MEMCACHED_MISSING)


def _servers() -> set[psutil.Process]:
    return {p for p in psutil.Process().children(recursive=True)
            if p.name() in ("valkey-server", "memcached")}


@pytest.fixture(autouse=True)
def no_server_left_behind():
    """Every test stops every server it started (the module's shared one aside)."""
    before = _servers()
    yield
    assert _servers() <= before


def _raw(url: str):
    return remote._redis_client(url, timeout=1.0)


def _info(url: str, section: str) -> dict:
    client = _raw(url)
    try:
        return client.info(section)
    finally:
        client.close()


@pytest.fixture(scope="module")
def server():
    with embedded_server() as url:
        yield url


# --------------------------------------------------------------------------- the embedded server


def test_embedded_server_is_private_bounded_and_leaves_nothing_behind():
    with embedded_server(maxmemory="8mb", policy="allkeys-lru") as url:
        sock = urlsplit(url).path
        directory = os.path.dirname(sock)
        assert url.startswith("unix://") and stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        client = _raw(url)
        assert client.ping()
        config = client.config_get("maxmemory*") | client.config_get("save") | client.config_get("port")
        client.close()
        assert config["maxmemory"] == str(8 * 2**20) and config["maxmemory-policy"] == "allkeys-lru"
        assert config["save"] == "" and config["port"] == "0"  # no snapshots, no TCP
    assert not os.path.exists(directory)


def test_tcp_listens_on_loopback_only_behind_a_password():
    with embedded_server(tcp=True) as url:
        parts = urlsplit(url)
        assert parts.scheme == "redis" and parts.hostname == "127.0.0.1" and len(parts.password) == 32
        anonymous = remote._redis_client(f"redis://127.0.0.1:{parts.port}")
        import redis

        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        cache = RemoteCache(url, ttl=5)
        cache.set("k", 1)
        assert cache.get("k") == 1 and _raw(url).config_get("bind")["bind"] == "127.0.0.1"
        cache.close()


def test_the_server_is_stopped_and_removed_when_the_block_raises():
    with pytest.raises(KeyError), embedded_server() as url:
        directory = os.path.dirname(urlsplit(url).path)
        raise KeyError("boom")
    assert not os.path.exists(directory)


@pytest.mark.parametrize("kwargs, error, name", [
    ({"maxmemory": "lots"}, ValueError, "maxmemory"),
    ({"maxmemory": 0}, ValueError, "maxmemory"),
    ({"maxmemory": True}, TypeError, "maxmemory"),
    ({"maxmemory": 1.5}, TypeError, "maxmemory"),
    ({"policy": "lru"}, ValueError, "policy"),
    ({"tcp": 1}, TypeError, "tcp"),
])
def test_embedded_server_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=name), embedded_server(**kwargs):
        pass


def test_a_killed_parent_takes_its_server_and_files_with_it(tmp_path):
    """A kernel killed with SIGKILL cannot run its cleanup: the watchdog does it."""
    script = textwrap.dedent("""
        import os, sys, time
        from leaklab.remote import embedded_server
        with embedded_server() as url:
            print(url, flush=True)
            time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        url = child.stdout.readline().strip()
        directory = os.path.dirname(urlsplit(url).path)
        valkey = [p for p in psutil.Process(child.pid).children(recursive=True) if p.name() == "valkey-server"]
        assert len(valkey) == 1 and os.path.isdir(directory)
    finally:
        child.kill()
        child.wait()
    gone, alive = psutil.wait_procs(valkey, timeout=5)
    assert alive == []
    deadline = time.monotonic() + 5
    while os.path.exists(directory) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(directory)


def test_server_url_prefers_redis_url_and_the_shared_server_stops_at_exit(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://example.invalid:6379/0")
    assert remote.server_url() == "redis://example.invalid:6379/0"
    script = textwrap.dedent("""
        import os
        from leaklab.remote import server_url
        first, second = server_url(), server_url()
        assert first == second
        print(first, flush=True)
    """)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    directory = os.path.dirname(urlsplit(out.stdout.strip()).path)
    assert out.stdout.startswith("unix://") and not os.path.exists(directory)


# --------------------------------------------------------------------------- RemoteCache arguments


@pytest.mark.parametrize("kwargs, error, name", [
    ({"ttl": 0}, ValueError, "ttl"),
    ({"ttl": -5}, ValueError, "ttl"),
    ({"ttl": math.nan}, ValueError, "ttl"),
    ({"ttl": math.inf}, ValueError, "ttl"),
    ({"ttl": True}, TypeError, "ttl"),
    ({"ttl": "60"}, TypeError, "ttl"),
    ({"ttl": None}, TypeError, "ttl"),
    ({"ttl": 60, "namespace": ""}, ValueError, "namespace"),
    ({"ttl": 60, "namespace": "a b"}, ValueError, "namespace"),
    ({"ttl": 60, "namespace": 5}, ValueError, "namespace"),
    ({"ttl": 60, "timeout": 0}, ValueError, "timeout"),
    ({"ttl": 60, "retry_after": -1}, ValueError, "retry_after"),
])
def test_remote_cache_bad_arguments(server, kwargs, error, name):
    with pytest.raises(error, match=name):
        RemoteCache(server, **kwargs)


def test_ttl_is_required():
    with pytest.raises(TypeError, match="ttl"):
        RemoteCache("unix:///nowhere.sock")  # type: ignore[call-arg]


def test_bad_urls():
    with pytest.raises(ValueError, match="url"):
        RemoteCache("http://localhost", ttl=1)
    with pytest.raises(TypeError, match="url"):
        RemoteCache(42, ttl=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not both"):
        RemoteCache("unix:///x.sock", ttl=1, client=object())


# --------------------------------------------------------------------------- cache-aside, ttl, eviction


def test_cache_aside_computes_once_and_counts(server):
    cache = RemoteCache(server, ttl=30, namespace="aside")
    calls = []

    def compute():
        calls.append(1)
        return {"price": 9.5, "tags": ["a", "b"]}

    values = [cache.get_or_set("item:1", compute) for _ in range(5)]
    assert values == [{"price": 9.5, "tags": ["a", "b"]}] * 5 and len(calls) == 1
    assert cache.stats() == RemoteCacheStats(hits=4, misses=1, errors=0, fallbacks=0)
    assert cache.get("absent", "default") == "default"
    cache.delete("item:1")
    assert cache.get("item:1") is None
    cache.close()


def test_keys_are_namespaced_and_non_str_keys_kept_apart(server):
    a, b = RemoteCache(server, ttl=30, namespace="a"), RemoteCache(server, ttl=30, namespace="b")
    a.set("k", 1)
    b.set("k", 2)
    a.set(7, "seven")
    assert (a.get("k"), b.get("k"), a.get(7), a.get("7")) == (1, 2, "seven", None)
    client = _raw(server)
    assert client.get("a:k") == b"1" and client.get("b:k") == b"2"
    client.close()


def test_entries_expire_with_their_ttl(server):
    cache = RemoteCache(server, ttl=0.2, namespace="expiry")
    cache.set("short", "v")
    cache.set("long", "v", ttl=30)
    client = _raw(server)
    assert 0 < client.pttl("expiry:short") <= 200 and client.pttl("expiry:long") > 29_000
    client.close()
    time.sleep(0.35)
    assert cache.get("short") is None and cache.get("long") == "v"
    with pytest.raises(ValueError, match="ttl"):
        cache.set("k", 1, ttl=0)


def test_the_server_evicts_under_maxmemory_while_a_dict_would_grow():
    with embedded_server(maxmemory="4mb", policy="allkeys-lru") as url:
        cache = RemoteCache(url, ttl=600, namespace="evict")
        payload = "x" * 2_000
        for i in range(6_000):  # 12 MB of values into a 4 MiB server
            cache.set(f"page:{i}", payload)
        memory, stats = _info(url, "memory"), _info(url, "stats")
        assert stats["evicted_keys"] > 2_000
        assert memory["used_memory"] <= 4 * 2**20 * 1.1
        assert cache.get("page:0") is None and cache.get("page:5999") == payload  # LRU: old ones went
        cache.close()


# --------------------------------------------------------------------------- JSON, never pickle


def test_values_json_cannot_encode_raise_before_anything_is_sent(server):
    cache = RemoteCache(server, ttl=30, namespace="json")
    with pytest.raises(TypeError, match="JSON"):
        cache.set("obj", object())
    loop = []
    loop.append(loop)
    with pytest.raises(TypeError, match="JSON"):
        cache.set("cycle", loop)
    client = _raw(server)
    assert client.exists("json:obj", "json:cycle") == 0
    client.close()
    assert cache.get("t", None) is None
    cache.set("t", (1, 2))
    assert cache.get("t") == [1, 2]  # JSON has no tuples


class _Exploit:
    def __reduce__(self):
        return (exec, ("import os; os.environ['LEAKLAB_PWNED'] = '1'",))


def test_a_pickle_someone_else_wrote_is_refused_not_run(server):
    client = _raw(server)
    client.set("shared:session", pickle.dumps(_Exploit()))
    client.close()
    cache = RemoteCache(server, ttl=30, namespace="shared")
    assert cache.get("session", "refused") == "refused"
    assert "LEAKLAB_PWNED" not in os.environ
    assert cache.stats().errors == 1


def test_a_poisoned_key_or_a_refused_write_fails_only_its_own_call():
    with embedded_server(maxmemory="4mb", policy="noeviction") as url:
        cache = RemoteCache(url, ttl=60, namespace="poison", retry_after=30)
        cache.set("good", 1)
        client = _raw(url)
        client.set("poison:bad", pickle.dumps({"a": 1}))
        client.close()
        assert cache.get("bad", "d") == "d" and cache.get("good") == 1
        for i in range(6_000):  # 6 MB into 4 MiB: once full, writes are refused (OOM)
            cache.set(f"big:{i}", "z" * 1_000)
        assert cache.get("good") == 1  # reads still reach it
        stats = cache.stats()
        assert stats.errors > 1 and stats.hits == 2
        cache.close()


# --------------------------------------------------------------------------- outages


def _valkey_of(url: str) -> psutil.Process:
    sock = urlsplit(url).path
    for p in _servers():
        if p.name() == "valkey-server" and sock in " ".join(p.cmdline()):
            return p
    raise AssertionError("no server for " + url)


def test_a_killed_server_degrades_every_call_without_raising_or_blocking():
    with embedded_server() as url:
        cache = RemoteCache(url, ttl=30, namespace="outage", timeout=0.2, retry_after=0.05)
        for i in range(20):
            cache.set(f"k{i}", i)
        _valkey_of(url).kill()
        slowest = 0.0
        values = []
        for i in range(40):
            started = time.monotonic()
            values.append(cache.get_or_set(f"k{i % 20}", lambda i=i: -i))
            cache.set("x", 1)
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.002)
        stats = cache.stats()
        assert values == [-i for i in range(40)]  # computed without the cache, none raised
        assert stats.errors >= 40 and stats.fallbacks == 40 and stats.hits == 0
        assert slowest < 1.0


def test_a_hung_server_times_out_and_the_cache_is_used_again_once_it_is_back():
    with embedded_server() as url:
        cache = RemoteCache(url, ttl=30, namespace="hang", timeout=0.2, retry_after=0.1)
        cache.set("k", "v")
        valkey = _valkey_of(url)
        valkey.suspend()  # SIGSTOP: connections hang without an answer
        try:
            started = time.monotonic()
            assert cache.get("k", "fallback") == "fallback"
            assert time.monotonic() - started < 1.0
            assert cache.get("k", "fallback") == "fallback"  # within retry_after: not even tried
        finally:
            valkey.resume()
        errors = cache.stats().errors
        assert errors == 2
        time.sleep(0.15)
        deadline = time.monotonic() + 5
        while cache.get("k") != "v" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cache.get("k") == "v" and cache.stats().hits >= 1


def test_an_unreachable_url_answers_at_once():
    cache = RemoteCache("unix:///nonexistent/leaklab.sock", ttl=5, timeout=0.2)
    started = time.monotonic()
    assert cache.get_or_set("k", lambda: 1) == 1
    assert cache.get("k", 2) == 2
    assert time.monotonic() - started < 1.0
    assert cache.stats().fallbacks == 1 and cache.stats().errors >= 2


# --------------------------------------------------------------------------- memoize, cluster


def test_it_plugs_into_memoize(server):
    calls = []

    @memoize(cache=RemoteCache(server, ttl=30, namespace="memo-square"))
    def square(x):
        calls.append(x)
        return x * x

    assert [square(3) for _ in range(4)] == [9] * 4 and calls == [3]
    assert square(4) == 16 and calls == [3, 4]


def test_the_same_client_code_runs_on_a_cluster_with_keys_spread_over_the_nodes():
    with embedded_cluster(3) as urls:
        assert len(urls) == 3 and all(int(urlsplit(u).port) <= 55_535 for u in urls)
        info = _raw(urls[0]).execute_command("CLUSTER", "INFO").decode()
        assert "cluster_state:ok" in info and "cluster_slots_assigned:16384" in info
        cache = RemoteCache(urls, ttl=30, namespace="spread")
        for i in range(300):
            cache.set(f"user:{i}", {"id": i})
        assert [cache.get(f"user:{i}")["id"] for i in range(300)] == list(range(300))
        per_node = [_raw(u).dbsize() for u in urls]
        assert sum(per_node) == 300 and min(per_node) > 50  # about a third each
        cache.close()


def test_cluster_bad_arguments():
    with pytest.raises(ValueError, match="nodes"), embedded_cluster(0):
        pass
    with pytest.raises(TypeError, match="nodes"), embedded_cluster(2.5):
        pass


# --------------------------------------------------------------------------- memcached


@needs_memcached
def test_memcached_backend_cache_aside_and_its_own_lru_limit():
    with embedded_memcached(memory_mb=2) as url:
        cache = RemoteCache(url, ttl=60, namespace="mc")
        assert cache.get_or_set("a key with spaces", lambda: [1, 2]) == [1, 2]
        assert cache.get("a key with spaces") == [1, 2]
        payload = "y" * 4_000
        for i in range(2_000):  # 8 MB into a 2 MB memcached
            cache.set(f"page:{i}", payload)
        assert cache.get("page:0") is None and cache.get("page:1999") == payload
        stats = cache._backend.client.stats()
        assert stats[b"evictions"] > 0 and stats[b"limit_maxbytes"] == 2 * 2**20
        cache.close()


def test_without_memcached_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(remote.servers.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install memcached"), embedded_memcached():
        pass
