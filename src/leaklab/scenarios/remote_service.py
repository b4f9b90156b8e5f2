"""A service in front of a shared cache, and what happens around it, for chapter 05.

- :func:`outage_run` plays a service that answers requests cache-aside through a
  :class:`~leaklab.remote.RemoteCache` while its server is stopped in the middle of the run (its
  ``with embedded_server()`` block ends: the process is gone, its files removed) and a new one is
  started a moment later. The service knows the server by one address, a symbolic link in a
  private directory that is pointed at whichever server is up, as a host name or ``REDIS_URL``
  would be in production. Every request is timed and classified (a hit, a miss, or answered
  without the cache because of an error) and :func:`outage_run` returns them in windows of time.
- :func:`cluster_nodes` describes each node of a cluster: its state, the hash slots it owns and
  the keys it holds.
- :func:`memcached_lru` fills a memcached with twice its ``-m`` limit while reading one hot key,
  and reports its own counters; where there is no memcached it says so and skips.
- :func:`poisoned_value` is what someone with write access to a shared cache could store: a pickle
  whose loading runs code (here it only appends to :data:`ran`, so the damage is visible).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from leaklab.remote import MEMCACHED_MISSING, RemoteCache, embedded_memcached, embedded_server
from leaklab.scenarios.cache_service import skewed_keys
from leaklab.scenarios.remote_workers import TTL_SECONDS, product_page, redis_admin

__all__ = [
    "OUTCOMES",
    "Service",
    "cluster_nodes",
    "memcached_lru",
    "outage_run",
    "poisoned_value",
    "ran",
]

#: How :func:`outage_run` classifies a request.
OUTCOMES = ("hit", "miss", "error")

#: What the code inside :func:`poisoned_value`'s pickle did in this process (nothing, unless a
#: reader unpickled it).
ran: list[str] = []


class Service:
    """A service that answers a product request from the shared cache, or computes the page.

    ``get_or_set`` never raises and never waits longer than the cache's timeout: when the server
    cannot be used, the page is computed and the error counted in ``cache.stats()``.
    """

    def __init__(self, cache: RemoteCache) -> None:
        self.cache = cache

    def handle(self, key: int) -> dict[str, Any]:
        """Answer one request for product ``key``."""
        return self.cache.get_or_set(f"product:{key}", lambda: product_page(key))


def _point(address: str, url: str) -> None:
    """Point the symbolic link ``address`` at the socket of ``url`` (atomically)."""
    staging = address + ".new"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(staging)
    os.symlink(urlsplit(url).path, staging)
    os.replace(staging, address)


def _sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))


def outage_run(*, down_at: float = 0.6, down_for: float = 0.4, after: float = 0.8, window: float = 0.1,
               pace: float = 0.002, keys: int = 200, timeout: float = 0.2,
               retry_after: float = 0.25) -> dict[str, Any]:
    """Serve requests for ``keys`` products (a skewed stream), one every ``pace`` s, through a
    :class:`Service`; stop the server ``down_at`` s into the run, start a new one ``down_for`` s
    after the first has gone, and keep serving ``after`` s once it is up.

    Returns ``windows`` (one row per whole ``window`` s: ``t`` (its start), ``hit``, ``miss``,
    ``error`` counts and ``max_ms``, the slowest request), ``rows`` (``(t, outcome, seconds)`` per
    request), ``events`` (seconds since the start: ``stopping`` when the
    block began to end, ``down`` when the server was gone, ``back`` just before the address was
    pointed at the new one, already up: a request that ended before ``back`` cannot have reached it),
    ``requests``, ``raised`` (requests that raised: none should), ``wrong`` (answers for the wrong
    product), ``max_ms``, and ``stats`` (the cache's counters).
    """
    directory = tempfile.mkdtemp(prefix="leaklab-outage-")  # mode 0700: only this user enters
    address = os.path.join(directory, "cache.sock")  # the one address the service knows
    cache = RemoteCache(f"unix://{address}", ttl=TTL_SECONDS, timeout=timeout, retry_after=retry_after)
    service = Service(cache)
    stream = skewed_keys(10_000, keys)
    rows: list[tuple[float, str, float]] = []
    failures = {"raised": 0, "wrong": 0}
    stop = threading.Event()
    start = time.monotonic()

    def serve() -> None:
        i = 0
        while not stop.is_set():
            key = stream[i % len(stream)]
            i += 1
            before = cache.stats()
            t0 = time.monotonic()
            try:
                page = service.handle(key)
            except Exception:  # noqa: BLE001  counted: the service must never raise
                failures["raised"] += 1
                continue
            t1 = time.monotonic()
            after_stats = cache.stats()
            if page.get("id") != key:
                failures["wrong"] += 1
            outcome = ("error" if after_stats.errors > before.errors
                       else "hit" if after_stats.hits > before.hits else "miss")
            rows.append((t0 - start, outcome, t1 - t0))
            time.sleep(pace)

    thread = threading.Thread(target=serve, daemon=True)
    events: dict[str, float] = {}
    try:
        with embedded_server() as first:
            _point(address, first)
            start = time.monotonic()
            thread.start()
            _sleep_until(start + down_at)
            events["stopping"] = time.monotonic() - start
        events["down"] = time.monotonic() - start  # the server process is gone, its files removed
        _sleep_until(start + events["down"] + down_for)
        with embedded_server() as second:
            events["back"] = time.monotonic() - start  # taken first: the serving thread may run
            _point(address, second)                    # between the switch and the next line
            _sleep_until(start + events["back"] + after)
            stop.set()
            thread.join()
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        cache.close()
        shutil.rmtree(directory, ignore_errors=True)
    end = rows[-1][0] if rows else 0.0
    windows = []
    for w in range(int(end / window)):
        inside = [r for r in rows if w * window <= r[0] < (w + 1) * window]
        counts = {outcome: sum(r[1] == outcome for r in inside) for outcome in OUTCOMES}
        windows.append({"t": round(w * window, 6), **counts,
                        "max_ms": max((r[2] for r in inside), default=0.0) * 1e3})
    return {"windows": windows, "events": events, "requests": len(rows) + failures["raised"],
            "rows": rows, "max_ms": max((r[2] for r in rows), default=0.0) * 1e3,
            "stats": cache.stats(), **failures}


def cluster_nodes(urls: Sequence[str]) -> list[dict[str, Any]]:
    """One row per node of the cluster at ``urls``: ``node`` (1, 2, ...), ``state`` (its
    ``cluster_state``), ``slots`` (the hash-slot ranges it owns, e.g. ``"0-5460"``) and ``keys``."""
    rows = []
    for n, url in enumerate(urls, 1):
        client = redis_admin(url)
        try:
            info = client.execute_command("CLUSTER", "INFO")
            info = info.decode() if isinstance(info, bytes) else str(info)
            state = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)["cluster_state"]
            port = urlsplit(url).port
            owned = [f"{lo}-{hi}" for lo, hi, primary, *_ in client.execute_command("CLUSTER", "SLOTS")
                     if int(primary[1]) == port]
            rows.append({"node": n, "state": state.strip(), "slots": ", ".join(sorted(owned)),
                         "keys": int(client.dbsize())})
        finally:
            client.close()
    return rows


def memcached_lru(*, memory_mb: int = 8, value_bytes: int = 8_000, hot_every: int = 20) -> dict[str, Any]:
    """Start memcached with ``-m memory_mb`` (or use ``MEMCACHED_URL``), store twice its limit in
    values of ``value_bytes`` while reading one hot key every ``hot_every`` writes, and return its
    counters: ``limit_maxbytes``, ``bytes`` (held), ``evictions``, ``items``, ``written`` (bytes
    stored in all), ``hot_kept`` and ``first_kept`` (whether the hot key and the first value
    written are still there).

    Where there is no memcached, returns ``{"skipped": MEMCACHED_MISSING}`` (what to install).
    """
    from pymemcache.client.base import Client

    with contextlib.ExitStack() as stack:
        url = os.environ.get("MEMCACHED_URL")
        if not url:
            try:
                url = stack.enter_context(embedded_memcached(memory_mb=memory_mb))
            except RuntimeError as exc:
                if str(exc) != MEMCACHED_MISSING:
                    raise
                return {"skipped": MEMCACHED_MISSING}
        parts = urlsplit(url)
        admin = Client((parts.hostname, parts.port or 11211), connect_timeout=2, timeout=2)
        stack.callback(admin.close)
        cache = stack.enter_context(RemoteCache(url, ttl=TTL_SECONDS, namespace="lru"))
        limit = int(admin.stats()[b"limit_maxbytes"])
        value = "v" * value_bytes
        cache.set("hot", "a hot key")
        pages = 2 * limit // value_bytes
        for i in range(pages):
            cache.set(f"page:{i}", value)
            if i % hot_every == 0:
                cache.get("hot")
        stats = admin.stats()
        return {"limit_maxbytes": limit, "bytes": int(stats[b"bytes"]), "evictions": int(stats[b"evictions"]),
                "items": int(stats[b"curr_items"]), "written": pages * value_bytes,
                "hot_kept": cache.get("hot") is not None, "first_kept": cache.get("page:0") is not None,
                "errors": cache.stats().errors}
    raise AssertionError("unreachable")  # pragma: no cover


class _Payload:
    """Pickles into a call of ``exec``: whoever unpickles it runs the code inside."""

    def __reduce__(self) -> tuple[Any, ...]:
        code = "import leaklab.scenarios.remote_service as m; m.ran.append('code from the cache ran here')"
        return (exec, (code,))


def poisoned_value() -> bytes:
    """A pickle that someone who can write to the cache might store under a key the service reads."""
    return pickle.dumps(_Payload())
