"""Workloads for chapter 01 ("Memory is a costly cache") that run in fresh processes.

``track_isolated`` imports its target in a new interpreter, so the chapter's services live here
rather than in the notebook. Each one plays a long-running service in front of a cache:

- :func:`serve` handles a stream of requests for ever-new keys through a cache that is a plain
  module-level ``dict`` (:data:`cache`, read and written with :func:`cache_get` and
  :func:`cache_set`, like ``var cache = {}`` in the source chapter), a
  :class:`~leaklab.caches.LimitableMap`, an :class:`~leaklab.caches.LRUCache`, or an
  ``LRUCache`` with a ttl (:data:`VARIANTS`). Time is a :class:`RequestClock` that advances by
  one millisecond per request, so expiry happens at the same request on every run. It reports
  its progress (:func:`leaklab.measure.progress`), so a figure can put requests on x.
- :func:`latency_run` times every request and records every garbage collection
  (:func:`leaklab.measure.gc_pauses`) while a cache of dicts, a cache of ``str`` or a bounded
  cache grows (:data:`LATENCY_KINDS`): the collector's work grows with the tracked objects alive.
- :func:`skewed_keys` and :func:`hit_ratio` compare eviction policies on a Zipf-like key stream
  (seeded, so every run sees the same stream): FIFO (``LimitableMap``) evicts hot keys, LRU keeps
  them.
- :func:`mixed_sizes` fills a count-bounded and a size-bounded ``LRUCache`` with values of very
  different sizes (:data:`SIZE_VARIANTS`): a count bound lets memory explode when big values come.
- :func:`preforked_workers` fills a cache and then forks worker processes, as a server that loads
  its data before forking does (``python -m leaklab.scenarios.cache_service fork ...``); some
  workers only wait, the others read every entry once (:func:`read_every_page`). Each reports the
  growth of its USS, the memory only it holds: the fork shares the cache's pages until a worker
  touches them, and in CPython reading an object writes its reference count.

Nothing here imports pandas, so the fresh processes stay lean.
"""

from __future__ import annotations

import bisect
import gc
import itertools
import json
import os
import random
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import psutil

from leaklab.caches import LimitableMap, LRUCache
from leaklab.measure import gc_pauses, progress

__all__ = [
    "BOUND",
    "LATENCY_KINDS",
    "MAX_SIZE_BYTES",
    "PAYLOAD_BYTES",
    "SIZE_VARIANTS",
    "TICK_SECONDS",
    "TTL_SECONDS",
    "VARIANTS",
    "RequestClock",
    "Service",
    "cache",
    "cache_get",
    "cache_set",
    "hit_ratio",
    "latency_run",
    "make_cache",
    "mixed_sizes",
    "fill_cache",
    "preforked_workers",
    "profile_request",
    "read_every_page",
    "render_page",
    "reset",
    "serve",
    "services",
    "size_caches",
    "skewed_keys",
]

#: Size of one cached page in :func:`serve`, in bytes (characters of ASCII).
PAYLOAD_BYTES = 2048
#: The entry bound of the bounded variants.
BOUND = 2000
#: How far the :class:`RequestClock` moves per request: the service handles 1,000 requests a second.
TICK_SECONDS = 0.001
#: The time to live of the ``"LRUCache+TTL"`` variant: 1,000 requests of the clock.
TTL_SECONDS = 1.0
#: The ways :func:`serve` can cache.
VARIANTS = ("dict", "LimitableMap", "LRUCache", "LRUCache+TTL")

#: The leaky variant's store: a plain dict at module level, alive as long as the process.
cache: dict[Hashable, Any] = {}

#: The services :func:`serve` ran and the caches :func:`mixed_sizes` filled, by variant. A
#: service's cache lives as long as its process; keeping them here does the same, so that the
#: last RSS sample of a run still sees the cache (a local would be freed when the run returns).
services: dict[str, Any] = {}
size_caches: dict[str, Any] = {}


def cache_get(key: Hashable) -> Any:
    """Read :data:`cache`: the value for ``key``, or None."""
    return cache.get(key)


def cache_set(key: Hashable, value: Any) -> None:
    """Write :data:`cache`. Nothing ever removes an entry: no bound, no expiry."""
    cache[key] = value


class _ModuleDict:
    """The module-level dict behind the same ``get`` / ``set`` interface as the real caches."""

    get = staticmethod(cache_get)
    set = staticmethod(cache_set)

    def __len__(self) -> int:
        return len(cache)


class RequestClock:
    """A ``time.monotonic``-like clock that moves only when :meth:`tick` is called.

    :func:`serve` ticks it once per request, so a ttl counts requests, the same on every run and
    on every machine.
    """

    def __init__(self, step: float = TICK_SECONDS) -> None:
        self.now = 0.0
        self.step = step

    def tick(self) -> None:
        """Advance by one request."""
        self.now += self.step

    def __call__(self) -> float:
        return self.now


def make_cache(variant: str, clock: Callable[[], float] = time.monotonic, bound: int = BOUND) -> Any:
    """An empty cache of the ``variant`` kind (for ``"dict"``, :data:`cache`, emptied)."""
    if variant == "dict":
        cache.clear()
        return _ModuleDict()
    if variant == "LimitableMap":
        return LimitableMap(bound)
    if variant == "LRUCache":
        return LRUCache(bound)
    if variant == "LRUCache+TTL":
        return LRUCache(bound, ttl=TTL_SECONDS, clock=clock)
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def render_page(key: Hashable, size: int = PAYLOAD_BYTES) -> str:
    """The expensive thing worth caching: a page of ``size`` characters for ``key``."""
    return f"<p>page {key}</p>".ljust(size, ".")


class Service:
    """A service that answers a request for ``key`` from its cache, or renders and caches it.

    ``hits`` and ``misses`` count the answers; ``clock`` ticks once per request.
    """

    def __init__(self, variant: str, bound: int = BOUND, payload_bytes: int = PAYLOAD_BYTES) -> None:
        self.variant = variant
        self.clock = RequestClock()
        self.cache = make_cache(variant, self.clock, bound)
        self.payload_bytes = payload_bytes
        self.hits = 0
        self.misses = 0

    def handle(self, key: Hashable) -> str:
        """Answer one request for ``key``."""
        self.clock.tick()
        page = self.cache.get(key)
        if page is None:
            self.misses += 1
            page = render_page(key, self.payload_bytes)
            self.cache.set(key, page)
        else:
            self.hits += 1
        return page

    def counters(self) -> dict[str, int]:
        """``held`` (entries now), ``hits``, ``misses``, ``evictions`` and ``expirations``."""
        cache_ = self.cache
        if isinstance(cache_, LRUCache):
            stats = cache_.stats()
            evictions, expirations = stats.evictions, stats.expirations
        else:
            evictions, expirations = getattr(cache_, "evictions", 0), 0
        return {"held": len(cache_), "hits": self.hits, "misses": self.misses,
                "evictions": evictions, "expirations": expirations}


def serve(
    variant: str,
    requests: int = 60_000,
    batches: int = 30,
    payload_bytes: int = PAYLOAD_BYTES,
    pause: float = 0.01,
    bound: int = BOUND,
) -> dict[str, Any]:
    """Serve ``requests`` requests in ``batches`` batches through a ``variant`` cache (bounded to
    ``bound`` entries unless it is the dict), pausing ``pause`` s after each batch so that RSS
    samples spread over time.

    Request ``i`` asks for page ``i // 2``: every visitor opens a new page and reloads it once, so
    half the requests are hits and a new key arrives every other request. Returns the counters of
    :meth:`Service.counters` plus ``requests`` and ``sizes`` (entries held after each batch).
    """
    if requests % batches:
        raise ValueError(f"requests ({requests}) must be a multiple of batches ({batches})")
    service = services[variant] = Service(variant, bound=bound, payload_bytes=payload_bytes)
    per_batch = requests // batches
    sizes = []
    request = 0
    for _ in range(batches):
        for _ in range(per_batch):
            service.handle(request // 2)
            request += 1
        sizes.append(len(service.cache))
        progress(request)
        time.sleep(pause)
    return {"requests": request, **service.counters(), "sizes": sizes}


# --------------------------------------------------------------------------------------------
# Latency and collector pauses while a cache grows

#: The caches :func:`latency_run` compares: what the values are, and whether the cache is bounded.
LATENCY_KINDS = ("dict of dicts", "dict of str", "LRUCache of dicts")


def profile_value(kind: str, user: int) -> Any:
    """A cached user profile: a dict holding a dict and a list (three containers the collector
    tracks), or the same information as one ``str`` (which it never tracks)."""
    if kind.endswith("str"):
        return f"id={user};name=user {user};tags={user},{user + 1}"
    return {"id": user, "profile": {"name": f"user {user}", "tags": [user, user + 1]}}


def profile_request(get: Callable[[str], Any], put: Callable[[str, Any], None], kind: str,
                    user: int) -> Any:
    """One request of :func:`latency_run`: look the user's profile up, cache it on a miss."""
    key = f"user:{user}"
    profile = get(key)
    if profile is None:
        profile = profile_value(kind, user)
        put(key, profile)
    return profile


def _percentile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_run(kind: str, requests: int = 200_000, windows: int = 8, bound: int = BOUND) -> dict[str, Any]:
    """Handle ``requests`` requests, each for a new user, through a cache of ``kind``; time every
    request and record every collection of the cyclic garbage collector.

    Returns ``windows``: one row per window of ``requests // windows`` requests with
    ``requests`` (served at its end), ``entries`` (held at its end), ``p50_us``, ``p99_us``,
    ``max_ms`` (its slowest request), ``mean_us``, ``gc_ms`` (time in collections) and
    ``full_gc_ms`` (in full, generation-2 collections); ``full``: one ``(entries, ms)`` pair per
    full collection (entries held when it started); ``total_ms`` (the whole run), ``gc_ms`` (all
    collections), ``max_pause_ms`` (the longest), ``collections`` (how many); and over all
    requests ``p50_us``, ``p99_us`` and ``max_ms``.
    """
    if kind not in LATENCY_KINDS:
        raise ValueError(f"kind must be one of {LATENCY_KINDS}, got {kind!r}")
    if requests % windows:
        raise ValueError(f"requests ({requests}) must be a multiple of windows ({windows})")
    bounded = kind.startswith("LRUCache")
    store: Any = LRUCache(bound) if bounded else {}
    put = store.set if bounded else store.__setitem__
    get = store.get
    latencies = [0] * requests
    started_at: list[tuple[int, int]] = []  # (request, entries) when each collection started

    def note_start(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started_at.append((request, len(store)))

    clock = time.perf_counter_ns
    request = 0
    gc.collect()
    with gc_pauses() as pauses:
        gc.callbacks.append(note_start)  # after gc_pauses' own: every start is noted by both
        begin = clock()
        try:
            for request in range(requests):
                t0 = clock()
                profile_request(get, put, kind, request)
                latencies[request] = clock() - t0
            total_ms = (clock() - begin) / 1e6
        finally:
            gc.callbacks.remove(note_start)
    collections = [(at, entries, generation, ms)
                   for (at, entries), (generation, ms, _) in zip(started_at, pauses._rows)]
    per = requests // windows
    rows = []
    for w in range(windows):
        lo, hi = w * per, (w + 1) * per
        ordered = sorted(latencies[lo:hi])
        inside = [c for c in collections if lo <= c[0] < hi]
        rows.append({
            "requests": hi,
            "entries": hi if not bounded else min(hi, bound),
            "p50_us": _percentile(ordered, 0.50) / 1e3,
            "p99_us": _percentile(ordered, 0.99) / 1e3,
            "max_ms": ordered[-1] / 1e6,
            "mean_us": sum(ordered) / len(ordered) / 1e3,
            "gc_ms": sum(c[3] for c in inside),
            "full_gc_ms": sum(c[3] for c in inside if c[2] == 2),
        })
    latencies.sort()
    return {
        "kind": kind,
        "windows": rows,
        "full": [(entries, ms) for _, entries, generation, ms in collections if generation == 2],
        "total_ms": total_ms,
        "gc_ms": pauses.total_ms,
        "max_pause_ms": pauses.max_ms,
        "collections": pauses.count,
        "p50_us": _percentile(latencies, 0.50) / 1e3,
        "p99_us": _percentile(latencies, 0.99) / 1e3,
        "max_ms": latencies[-1] / 1e6,
    }


# --------------------------------------------------------------------------------------------
# Eviction policies on a skewed key stream


def skewed_keys(requests: int, universe: int, s: float = 1.0, seed: int = 1) -> list[int]:
    """``requests`` keys from ``range(universe)``, key ``k`` drawn with weight ``1 / (k + 1) ** s``
    (Zipf-like: key 0 is the most popular). Seeded: the same list on every run and platform."""
    if requests < 0 or universe < 1:
        raise ValueError(f"need requests >= 0 and universe >= 1, got {requests}, {universe}")
    rng = random.Random(seed)
    cumulative = list(itertools.accumulate(1.0 / (rank ** s) for rank in range(1, universe + 1)))
    total = cumulative[-1]
    last = universe - 1
    return [min(bisect.bisect(cumulative, rng.random() * total), last) for _ in range(requests)]


def hit_ratio(store: Any, keys: Iterable[Hashable], watch: Hashable = 0) -> dict[str, Any]:
    """Look every key up in ``store`` (``get`` / ``set``), storing it on a miss.

    Returns ``hits``, ``misses``, ``ratio`` (hits / lookups) and ``watched_misses``: the misses of
    the key ``watch`` (by default key 0, the hottest key of :func:`skewed_keys`).
    """
    hits = misses = watched = 0
    missing = object()
    for key in keys:
        if store.get(key, missing) is missing:
            misses += 1
            if key == watch:
                watched += 1
            store.set(key, True)
        else:
            hits += 1
    lookups = hits + misses
    return {"hits": hits, "misses": misses, "ratio": hits / lookups if lookups else 0.0,
            "watched_misses": watched}


# --------------------------------------------------------------------------------------------
# Values of very different sizes

#: The size bound of the size-aware variant of :func:`mixed_sizes`.
MAX_SIZE_BYTES = 8 * 2**20
#: :func:`mixed_sizes`' caches: a count bound sized for small values, and a size bound.
SIZE_VARIANTS = ("max=400 entries", "max_size=8 MiB")
SMALL_BYTES = 1024
BIG_BYTES = 256 * 1024


def mixed_size_stream(requests: int = 4000, seed: int = 7) -> list[int]:
    """The size of each value in :func:`mixed_sizes`' stream: 1 KiB thumbnails, and 256 KiB
    reports with probability 2% in the first half, then 50% (a traffic shift)."""
    rng = random.Random(seed)
    half = requests // 2
    return [BIG_BYTES if rng.random() < (0.02 if i < half else 0.5) else SMALL_BYTES
            for i in range(requests)]


def size_bounded_cache(variant: str) -> LRUCache[int, bytes]:
    """An empty cache of a :data:`SIZE_VARIANTS` kind."""
    if variant == SIZE_VARIANTS[0]:
        return LRUCache(400)
    if variant == SIZE_VARIANTS[1]:
        return LRUCache(max_size=MAX_SIZE_BYTES, size_of=lambda key, value: len(value))
    raise ValueError(f"variant must be one of {SIZE_VARIANTS}, got {variant!r}")


def mixed_sizes(variant: str, requests: int = 4000, batches: int = 40, pause: float = 0.01) -> dict[str, Any]:
    """Cache one new value per request, sizes from :func:`mixed_size_stream`, in a
    :data:`SIZE_VARIANTS` cache; pause ``pause`` s after each batch.

    Returns ``held_bytes`` and ``entries`` after each batch (bytes of the values held).
    """
    store = size_caches[variant] = size_bounded_cache(variant)
    sizes = mixed_size_stream(requests)
    per = requests // batches
    held_bytes, entries = [], []
    for i, size in enumerate(sizes):
        store.set(i, bytes([i % 251]) * size)  # written, so its pages are resident
        if (i + 1) % per == 0:
            held = store.items()
            held_bytes.append(sum(len(value) for _, value in held))
            entries.append(len(held))
            del held
            progress(i + 1)
            time.sleep(pause)
    return {"held_bytes": held_bytes, "entries": entries}


# --------------------------------------------------------------------------------------------
# Worker processes forked after the cache was filled


def fill_cache(entries: int, payload_bytes: int) -> dict[Hashable, str]:
    """The cache a server fills before it forks its workers: ``entries`` pages of
    ``payload_bytes`` characters."""
    return {f"page:{i}": render_page(i, payload_bytes) for i in range(entries)}


def read_every_page(cache_: dict[Hashable, str]) -> int:
    """What a reading worker does with the cache it inherited: read every page, write nothing."""
    return sum(len(page) for page in cache_.values())


def _forked_worker(shared: dict[Hashable, str], reads: bool, report: int) -> None:
    """In a forked child: measure USS, read the cache if ``reads``, measure again, report, exit."""
    me = psutil.Process()
    start = me.memory_full_info().uss
    read = read_every_page(shared) if reads else 0
    grew = me.memory_full_info().uss - start
    os.write(report, json.dumps({"reads": reads, "read_bytes": read, "uss_growth_bytes": grew}).encode())


def _preforked(workers: int, readers: int, entries: int, payload_bytes: int) -> dict[str, Any]:
    """The body of :func:`preforked_workers`, run in a fresh single-threaded process."""
    process = psutil.Process()
    gc.collect()
    before = process.memory_info().rss
    shared = fill_cache(entries, payload_bytes)
    filled = process.memory_info().rss - before
    gc.collect()
    reports = []
    for n in range(workers):
        reads = n >= workers - readers
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(read_end)
                _forked_worker(shared, reads, write_end)
                code = 0
            except BaseException:  # noqa: BLE001  reported on stderr; the parent raises
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            answer = pipe.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not answer:
            raise RuntimeError(f"worker {n} failed (wait status {status})")
        reports.append(json.loads(answer))
    return {"cache_bytes": filled, "entries": len(shared),
            "reads": [r["reads"] for r in reports],
            "read_bytes": [r["read_bytes"] for r in reports],
            "uss_growth_bytes": [r["uss_growth_bytes"] for r in reports]}


def preforked_workers(workers: int = 4, readers: int = 2, entries: int = 25_000,
                      payload_bytes: int = 1024, timeout: float = 60.0) -> dict[str, Any]:
    """Fill a cache of ``entries`` pages in a fresh process, then fork ``workers`` workers from
    it; the last ``readers`` of them read every page once, the others only wait.

    Each worker measures its USS (unique set size: the memory only it holds, which the kernel
    would free if it exited) right after the fork and after its work. Returns ``cache_bytes``
    (the RSS the filling process grew by: the cache's size), ``entries``, and per worker
    ``reads`` (whether it read), ``read_bytes`` and ``uss_growth_bytes``.

    The fork happens in a fresh single-threaded process (``python -m
    leaklab.scenarios.cache_service fork ...``), never in the caller, which may have threads.
    """
    for name, value, low in (("workers", workers, 1), ("readers", readers, 0),
                             ("entries", entries, 1), ("payload_bytes", payload_bytes, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if readers > workers:
        raise ValueError(f"readers ({readers}) cannot exceed workers ({workers})")
    if not hasattr(os, "fork"):
        raise RuntimeError("preforked_workers needs os.fork (Linux or macOS)")
    command = [sys.executable, "-m", "leaklab.scenarios.cache_service", "fork",
               str(workers), str(readers), str(entries), str(payload_bytes)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the forking process failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)


def reset() -> None:
    """Empty the module-level :data:`cache` and drop :data:`services` and :data:`size_caches`."""
    cache.clear()
    services.clear()
    size_caches.clear()


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "fork":
        print(json.dumps(_preforked(*map(int, sys.argv[2:]))))
    else:
        sys.exit("usage: python -m leaklab.scenarios.cache_service fork WORKERS READERS ENTRIES PAYLOAD_BYTES")
