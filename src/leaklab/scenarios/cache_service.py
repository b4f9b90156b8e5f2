"""The service of chapter 01 ("Memory is a costly cache"): a cache that leaks, and its fixes.

The chapter (``notebooks/01_caches.ipynb``, as ``cs``) prints several of these functions with
``inspect.getsource``, and ``track_isolated`` imports its runs in a new interpreter, so they live
here rather than in the notebook:

- :func:`serve` handles a stream of requests for ever-new keys through a cache that is a plain
  module-level ``dict`` (:data:`cache`, read and written with :func:`cache_get` and
  :func:`cache_set`, like ``var cache = {}`` in the source chapter), a
  :class:`~leaklab.caches.LimitableMap`, an :class:`~leaklab.caches.LRUCache`, or an
  ``LRUCache`` with a ttl (:data:`VARIANTS`). Time is a :class:`RequestClock` that advances by
  one millisecond per request, so expiry happens at the same request on every run. It reports
  its progress (:func:`leaklab.measure.progress`), so a figure can put requests on x.
- :func:`profile_request` caches a user profile, as dicts or as one ``str``
  (:func:`profile_value`): the garbage collector tracks the dicts, never the ``str``.
- :func:`mixed_sizes` fills a count-bounded and a size-bounded ``LRUCache`` with values of very
  different sizes (:data:`SIZE_VARIANTS`): a count bound lets memory explode when big values come.
- :func:`fill_cache` is the cache a server fills before it forks its workers, and
  :func:`read_every_page` what a reading worker does with it.

The runs that measure around this service (collector pauses, hit ratios, forked workers) live in
:mod:`leaklab.scenarios.cache_service_measurements`; their names are importable from here too
(``cs.latency_run``, ``cs.skewed_keys``, ``cs.preforked_workers``, ...).

Nothing here imports pandas, so the fresh processes stay lean.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from leaklab.caches import LimitableMap, LRUCache
from leaklab.measure import progress

if TYPE_CHECKING:  # for type checkers; at run time, __getattr__ at the bottom finds them
    from leaklab.scenarios.cache_service_measurements import (
        LATENCY_KINDS,
        hit_ratio,
        latency_run,
        preforked_workers,
        skewed_keys,
    )

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
# Cached profiles: the collector walks what it tracks


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


def reset() -> None:
    """Empty the module-level :data:`cache` and drop :data:`services` and :data:`size_caches`."""
    cache.clear()
    services.clear()
    size_caches.clear()


# --------------------------------------------------------------------------------------------
# The measuring runs, moved to cache_service_measurements and still importable from here

#: What :mod:`leaklab.scenarios.cache_service_measurements` defines, found by :func:`__getattr__`.
_MEASUREMENTS = frozenset({
    "LATENCY_KINDS", "latency_run", "_percentile", "skewed_keys", "hit_ratio",
    "preforked_workers", "_preforked", "_forked_worker",
})


def __getattr__(name: str) -> Any:
    # Imported when first asked for, not at the top: that module imports this one, and a fresh
    # process (track_isolated) may import it first.
    if name in _MEASUREMENTS:
        from leaklab.scenarios import cache_service_measurements

        return getattr(cache_service_measurements, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_MEASUREMENTS})
