"""Workloads for chapter 05 ("Put big caches outside the process") that run in fresh processes.

A web service runs several worker processes, and a cache inside a worker is built, stored and
collected once per worker. This module plays such a service:

- :func:`worker` is one worker process (run by :func:`~leaklab.measure.track_isolated`): it serves
  its share of one key stream (:func:`worker_keys`: the load balancer deals the requests round-robin)
  through a cache, either its own :class:`~leaklab.caches.LRUCache` (``"in-process"``) or a
  :class:`~leaklab.remote.RemoteCache` on a server all the workers share (``"shared"``). Every
  request goes through :func:`handle`, the same cache-aside code for both. At the end it counts the
  objects its collector tracks and times a full collection, with its cache still alive.
- :func:`run_workers` starts the workers at the same time and, for the shared variant, samples the
  server's RSS meanwhile; :func:`total_trace` adds the workers' (and the server's) RSS up, request
  by request, into one :class:`~leaklab.measure.MemoryTrace`.
- :class:`TreeMemory` and :func:`server_processes` (from :mod:`leaklab.scenarios.process_tree`,
  re-exported here) watch the whole tree of processes the chapter starts: its summed RSS, and the
  cache servers still running.
- :func:`fill_server` replays chapter 01's request pattern (a new page every other request, never
  removed by the application) against a server with a ``maxmemory`` limit, and reports the
  server's ``used_memory`` and INFO counters after every batch.

Nothing here imports pandas at import time, so the fresh processes stay lean.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import redis  # imported before a tracked run starts, so both variants start from the same baseline

from leaklab.caches import LRUCache
from leaklab.measure import MIB, MemoryTrace, progress, track_isolated
from leaklab.remote import RemoteCache
from leaklab.scenarios.cache_service import PAYLOAD_BYTES, render_page, skewed_keys
from leaklab.scenarios.process_tree import SERVER_NAMES, TreeMemory, server_processes

__all__ = [
    "KEYS",
    "REQUESTS",
    "REVIEWS",
    "SERVER_NAMES",
    "SKEW",
    "TTL_SECONDS",
    "VARIANTS",
    "WORKERS",
    "Counter",
    "TreeMemory",
    "fill_server",
    "handle",
    "product_page",
    "redis_admin",
    "rise_at",
    "run_workers",
    "server_info",
    "server_processes",
    "total_trace",
    "worker",
    "worker_keys",
]

#: Worker processes of the service.
WORKERS = 4
#: Requests each worker serves.
REQUESTS = 2_000
#: Distinct products the requests ask for, and how skewed their popularity is (key k has weight
#: 1 / (k + 1) ** SKEW).
KEYS = 1_500
SKEW = 0.6
#: Reviews on a product page: each is a dict holding a list, so a page is 2 * REVIEWS + 2
#: containers that the collector tracks.
REVIEWS = 20
#: The cache of the last :func:`worker` run in this process: a worker's cache lives as long as
#: the worker, so it is kept here until the process ends (a local would go when the run returns).
kept: dict[str, Any] = {}
#: How long the shared server keeps a page.
TTL_SECONDS = 600
#: The two ways a worker can cache.
VARIANTS = ("in-process", "shared")


def product_page(key: int) -> dict[str, Any]:
    """The expensive thing worth caching (a database query and some assembly): a product with
    :data:`REVIEWS` reviews, about 7 KiB as JSON; as Python objects, 2 * REVIEWS + 2 containers
    the collector tracks (a dict of only strings and ints would not be tracked, one holding a
    list is)."""
    return {
        "id": key,
        "title": f"product {key}",
        "reviews": [{"user": f"user {(key * 31 + i) % 997}", "stars": (key + i) % 5 + 1,
                     "tags": ["verified", f"batch {i % 3}"],
                     "text": f"review {i} of product {key}. ".ljust(250, "*")} for i in range(REVIEWS)],
    }


class Counter:
    """Hits and misses of one worker, counted the same way whatever its cache."""

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0


def handle(cache: Any, key: int, counter: Counter) -> dict[str, Any]:
    """Answer one request for product ``key``: cache-aside, through any cache with ``get`` and
    ``set`` (an in-process ``LRUCache`` or a ``RemoteCache``)."""
    page = cache.get(f"product:{key}")
    if page is None:
        counter.misses += 1
        page = product_page(key)
        cache.set(f"product:{key}", page)
    else:
        counter.hits += 1
    return page


def worker_keys(index: int, workers: int = WORKERS, requests: int = REQUESTS) -> list[int]:
    """The keys worker ``index`` serves: every ``workers``-th request of one seeded skewed stream
    of ``workers * requests`` requests, as a round-robin load balancer deals them."""
    if not 0 <= index < workers:
        raise ValueError(f"index must be in range({workers}), got {index!r}")
    return skewed_keys(workers * requests, KEYS, s=SKEW)[index::workers]


def _full_collection_ms(repeat: int = 5) -> float:
    """The fastest of ``repeat`` full collections, in ms of this thread's CPU time (a busy
    machine that pauses the process does not count)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        gc.collect()
        best = min(best, time.thread_time() - start)
    return best * 1e3


def worker(variant: str, index: int, url: str | None = None, workers: int = WORKERS,
           requests: int = REQUESTS, every: int = 250) -> dict[str, Any]:
    """One worker process: serve ``worker_keys(index)`` through its cache, reporting
    :func:`~leaklab.measure.progress` every ``every`` requests and after the last.

    Before serving, the worker freezes what it built at start-up (``gc.freeze()``, as servers that
    load their code before forking do), so that its collector visits only what serving added.
    Returns ``hits``, ``misses``, ``held`` (pages in its own cache), ``tracked`` (objects a full
    collection visits, with the cache alive), ``gc_ms`` (a full collection's CPU time), and
    ``started`` and ``marks`` (wall-clock time at the start and ``(time, done)`` at each report),
    so that :func:`total_trace` can line the server's samples up with the workers'.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if variant == "shared" and url is None:
        raise ValueError("the shared variant needs the url of the server")
    started = time.time()
    cache: Any = LRUCache(KEYS) if variant == "in-process" else RemoteCache(url, ttl=TTL_SECONDS)
    counter = Counter()
    marks: list[tuple[float, int]] = []
    keys = worker_keys(index, workers, requests)
    gc.collect()
    gc.freeze()  # start-up objects: a full collection skips them from now on
    for done, key in enumerate(keys, 1):
        handle(cache, key, counter)
        if done % every == 0 or done == len(keys):
            progress(done)
            marks.append((time.time(), done))
    kept["cache"] = cache
    held = len(cache) if variant == "in-process" else 0
    return {"hits": counter.hits, "misses": counter.misses, "held": held,
            "tracked": len(gc.get_objects()),  # the permanent (frozen) generation is not listed
            "gc_ms": _full_collection_ms(), "started": started, "marks": marks}


def redis_admin(url: str) -> Any:
    """A plain redis-py client for looking at a server (INFO, DBSIZE), failing fast: redis-py
    retries a failed command by default, this client does not."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))


def server_info(url: str) -> dict[str, int]:
    """The server's ``used_memory``, ``maxmemory``, ``evicted_keys``, ``expired_keys``, ``keys``
    (DBSIZE) and ``process_id``, from INFO."""
    admin = redis_admin(url)
    try:
        info = admin.info()
        return {"used_memory": int(info["used_memory"]), "maxmemory": int(info["maxmemory"]),
                "evicted_keys": int(info["evicted_keys"]), "expired_keys": int(info["expired_keys"]),
                "keys": int(admin.dbsize()), "process_id": int(info["process_id"])}
    finally:
        admin.close()


def run_workers(variant: str, url: str | None = None, workers: int = WORKERS, requests: int = REQUESTS,
                interval: float = 0.02) -> dict[str, Any]:
    """Start ``workers`` :func:`worker` processes at once and wait for them.

    Returns ``traces`` (one :class:`~leaklab.measure.MemoryTrace` per worker, cut at the sample
    where it had served its last request: what follows is its collector measurement) and, for the shared
    variant, ``server``: ``(time, rss_mib)`` samples of the server process taken meanwhile, and
    ``keys`` (product pages the server holds at the end).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    samples: list[tuple[float, float]] = []
    done = threading.Event()
    sampler = None
    if variant == "shared":
        if url is None:
            raise ValueError("the shared variant needs the url of the server")
        server = psutil.Process(server_info(url)["process_id"])

        def sample() -> None:
            while True:
                samples.append((time.time(), server.memory_info().rss / MIB))
                if done.wait(interval):
                    samples.append((time.time(), server.memory_info().rss / MIB))
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
    try:
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(track_isolated, worker, variant, i, url, workers, requests,
                                   interval=interval) for i in range(workers)]
            traces = [_serving(f.result()) for f in futures]
    finally:
        done.set()
        if sampler is not None:
            sampler.join()
    out: dict[str, Any] = {"traces": traces, "server": samples}
    if variant == "shared":
        admin = redis_admin(url)  # type: ignore[arg-type]
        try:
            out["keys"] = sum(1 for _ in admin.scan_iter(match="leaklab:product:*", count=1000))
        finally:
            admin.close()
    return out


def _serving(trace: MemoryTrace) -> MemoryTrace:
    """``trace`` up to its first sample at the last request served."""
    done = trace.frame["done"]
    last = int((done >= done.iloc[-1]).to_numpy().argmax())
    return MemoryTrace(frame=trace.frame.iloc[: last + 1].reset_index(drop=True), result=trace.result)


def _interp(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """Linear interpolation of ``ys`` at ``x`` (``xs`` nondecreasing), clamped at both ends."""
    if x <= xs[0]:
        return float(ys[0])
    for i in range(1, len(xs)):
        if x <= xs[i]:
            if xs[i] == xs[i - 1]:
                return float(ys[i])
            return float(ys[i - 1] + (ys[i] - ys[i - 1]) * (x - xs[i - 1]) / (xs[i] - xs[i - 1]))
    return float(ys[-1])


def rise_at(trace: MemoryTrace, done: Sequence[float]) -> list[float]:
    """How far RSS had risen since the first sample, in MiB, when the workload had done each of
    ``done`` (requests, say; the trace needs :func:`~leaklab.measure.progress` marks)."""
    frame = trace.frame.groupby("done", as_index=False).last()
    xs, ys = frame["done"].tolist(), frame["rss_mib"].tolist()
    start = float(trace.frame["rss_mib"].iloc[0])
    return [_interp(d, xs, ys) - start for d in done]


def total_trace(run: dict[str, Any], points: int = 21) -> MemoryTrace:
    """One trace of the whole run: at ``points`` steps of requests served per worker, the sum of
    the workers' RSS, plus the server's RSS at that moment when the run had a server.

    Its ``done`` column is the requests served by each worker, so ``plot_rss(..., per="request")``
    puts them on x; ``seconds`` is the mean time the workers took to get there.
    """
    import pandas as pd

    traces = run["traces"]
    last = min(t.frame["done"].iloc[-1] for t in traces)
    grid = [last * i / (points - 1) for i in range(points)]
    rss, seconds, wall = [], [], []
    for g in grid:
        total = 0.0
        times, walls = [], []
        for t in traces:
            frame = t.frame.groupby("done", as_index=False).last()
            total += _interp(g, frame["done"].tolist(), frame["rss_mib"].tolist())
            s = _interp(g, frame["done"].tolist(), frame["seconds"].tolist())
            times.append(s)
            walls.append(t.result["started"] + s)
        if run["server"]:
            stamps, values = zip(*run["server"])
            total += _interp(sum(walls) / len(walls), stamps, values)
        rss.append(total)
        seconds.append(sum(times) / len(times))
    return MemoryTrace(frame=pd.DataFrame({"seconds": seconds, "rss_mib": rss, "done": grid}),
                       result=[t.result for t in traces])


def fill_server(url: str, requests: int = 12_000, batches: int = 20, pause: float = 0.01,
                payload_bytes: int = PAYLOAD_BYTES) -> dict[str, Any]:
    """Chapter 01's request pattern (request ``i`` asks for page ``i // 2``: a new page of
    ``payload_bytes`` every other request, which the application never removes) through a
    ``RemoteCache`` on ``url``.

    After every batch it reports :func:`~leaklab.measure.progress` and records the server's INFO.
    Returns ``requests``, ``hits``, ``misses``, ``errors`` and, per batch, ``used_memory`` and
    ``evicted_keys``, plus ``maxmemory`` and ``keys`` (held at the end).
    """
    if requests % batches:
        raise ValueError(f"requests ({requests}) must be a multiple of batches ({batches})")
    cache = RemoteCache(url, ttl=TTL_SECONDS, namespace="chapter01")
    used, evicted = [], []
    request = 0
    for _ in range(batches):
        for _ in range(requests // batches):
            key = request // 2
            cache.get_or_set(f"page:{key}", lambda: render_page(key, payload_bytes))
            request += 1
        info = server_info(url)
        used.append(info["used_memory"])
        evicted.append(info["evicted_keys"])
        progress(request)
        time.sleep(pause)
    stats = cache.stats()
    cache.close()
    return {"requests": request, "hits": stats.hits, "misses": stats.misses, "errors": stats.errors,
            "used_memory": used, "evicted_keys": evicted, "maxmemory": info["maxmemory"],
            "keys": info["keys"]}
