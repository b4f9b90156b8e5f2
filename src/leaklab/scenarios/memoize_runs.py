"""Workloads for chapter 02 ("Bound what memoize remembers") that run in a fresh process.

``track_isolated`` imports its target in a new interpreter, so the chapter's RSS-over-time runs
live here rather than in the notebook. The chapter prints the source of the functions a result
depends on (``inspect.getsource``), so their docstrings stay short and the details are here.

- :func:`naive_memoize` is the port of the source chapter's memoize: every result goes into one
  plain dict, ``memo``, and nothing ever removes an entry (no bound, no expiry, no ``clear``).
  That is the library's whole design, and the chapter's leak; ``functools.cache`` behaves the
  same way. Like the original, an optional ``hasher(*args)`` builds the key; without one, this
  port keys by the lone argument, or by the tuple of the positional arguments (the original keys
  by the first argument only, a different bug that does not matter here). Keyword arguments are
  not supported, as in the original. The memoized function exposes the dict as ``memo``.
- :func:`serve_diverse` serves requests that each render one item, :func:`render_item`, through
  a memoized function, each request with a new argument (high volume, diverse arguments),
  memoized in one of the ways of :data:`DIVERSE_VARIANTS`: the chapter's memoize and
  ``functools.cache`` keep every result; ``functools.lru_cache(maxsize=...)``,
  :func:`leaklab.memoize.memoize` and ``cachetools.cached(LRUCache(...))`` keep at most
  :data:`BOUND`. With ``distinct=`` the arguments repeat, which is the short-lived web page where
  an unbounded memoize is harmless. The memoized function stays in :data:`renderers` afterwards,
  as a module-level function would.
- :func:`serve_requests` handles requests with :func:`handle_request`, which creates a
  request-scoped :class:`Quote` and calls its cached method (:data:`REQUEST_VARIANTS`):
  ``functools.cache`` on the method keeps every ``self`` alive in its keys, a bare
  ``functools.lru_cache`` keeps the latest 128, and ``leaklab.memoize``, which holds instances
  weakly, keeps none. ruff flags the first two (rule B019), hence the ``noqa`` comments below:
  these are the bugs the chapter demonstrates.

Both services call :func:`leaklab.measure.progress` after every batch, so that a tracked run can
be plotted per request. :func:`reset` clears every cache this module owns.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Hashable
from typing import Any

import cachetools

from leaklab.measure import progress
from leaklab.memoize import memoize

__all__ = [
    "BOUND",
    "DIVERSE_VARIANTS",
    "ITEM_BYTES",
    "PAYLOAD_BYTES",
    "REQUEST_VARIANTS",
    "Quote",
    "QuoteCache",
    "QuoteLRU",
    "QuoteMemoize",
    "currsize",
    "handle_request",
    "memoized_render",
    "naive_memoize",
    "quote_class",
    "render_item",
    "renderers",
    "reset",
    "serve_diverse",
    "serve_requests",
]

#: Size of one result of :func:`render_item`, in characters (one byte each).
ITEM_BYTES = 1024
#: The bound of the bounded variants of :func:`serve_diverse`.
BOUND = 1000
#: Size of the payload each request-scoped :class:`Quote` carries, in bytes.
PAYLOAD_BYTES = 4096


def naive_memoize(
    fn: Callable[..., Any], hasher: Callable[..., Hashable] | None = None
) -> Callable[..., Any]:
    """The source chapter's memoize, ported: one dict, ``memo``, that never lets go of a result."""
    memo: dict[Hashable, Any] = {}

    @functools.wraps(fn)
    def memoized(*args: Any) -> Any:
        if hasher is not None:
            key = hasher(*args)
        else:
            key = args[0] if len(args) == 1 else args
        if key in memo:
            return memo[key]
        result = memo[key] = fn(*args)
        return result

    memoized.memo = memo  # type: ignore[attr-defined]
    return memoized


# --------------------------------------------------------------------------------------------
# A memoized function called with diverse arguments


def render_item(item_id: int) -> str:
    """One item as ITEM_BYTES (1,024) characters of HTML: a result worth memoizing."""
    return f"<li>item {item_id}</li>".ljust(ITEM_BYTES, " ")


#: How :func:`memoized_render` can memoize :func:`render_item`.
DIVERSE_VARIANTS = (
    "naive memoize",
    "functools.cache",
    f"lru_cache(maxsize={BOUND})",
    f"leaklab.memoize(maxsize={BOUND})",
    f"cachetools.cached(LRUCache({BOUND}))",
)


def memoized_render(variant: str, bound: int = BOUND) -> Callable[[int], str]:
    """A freshly memoized :func:`render_item` (an empty cache), the ``variant`` way.

    ``bound`` replaces :data:`BOUND` for the bounded variants (their names keep saying BOUND).
    """
    if variant == "naive memoize":
        return naive_memoize(render_item)
    if variant == "functools.cache":
        return functools.cache(render_item)
    if variant == DIVERSE_VARIANTS[2]:
        return functools.lru_cache(maxsize=bound)(render_item)
    if variant == DIVERSE_VARIANTS[3]:
        return memoize(render_item, maxsize=bound)
    if variant == DIVERSE_VARIANTS[4]:
        return cachetools.cached(cachetools.LRUCache(maxsize=bound))(render_item)  # type: ignore[no-any-return]
    raise ValueError(f"variant must be one of {DIVERSE_VARIANTS}, got {variant!r}")


#: The memoized functions :func:`serve_diverse` made, by variant. A service defines its memoized
#: function at module level, where it lives as long as the process; keeping them here does the
#: same, so that their caches outlive the call that filled them.
renderers: dict[str, Callable[[int], str]] = {}


def currsize(fn: Callable[..., Any]) -> int:
    """Entries a function from :func:`memoized_render` holds (``len(memo)`` for the naive one,
    ``len(cache)`` for ``cachetools.cached``)."""
    for store in ("memo", "cache"):
        held = getattr(fn, store, None)
        if held is not None:
            return len(held)
    return fn.cache_info().currsize  # type: ignore[attr-defined, no-any-return]


def serve_diverse(
    variant: str,
    distinct: int | None = None,
    batches: int = 30,
    per_batch: int = 2000,
    pause: float = 0.01,
) -> dict[str, Any]:
    """Serve batches * per_batch requests, each rendering one item through a memoized render_item.

    Returns the requests served, the results held at the end, and after each batch.
    """
    if distinct is not None and distinct < 1:
        raise ValueError(f"distinct must be None or >= 1, got {distinct!r}")
    render = renderers[variant] = memoized_render(variant)  # lives on, like a module-level function
    sizes = []
    for request in range(batches * per_batch):
        render(request if distinct is None else request % distinct)  # request i asks for item i
        if (request + 1) % per_batch == 0:  # after each batch: count, report, let RSS be sampled
            sizes.append(currsize(render))
            progress(request + 1)
            time.sleep(pause)
    return {"calls": batches * per_batch, "currsize": currsize(render), "sizes": sizes}


# --------------------------------------------------------------------------------------------
# Request-scoped objects with a cached method


class Quote:
    """A price quote made for one request: a payload of :data:`PAYLOAD_BYTES` and a method worth
    caching. ``Quote.alive`` counts the instances of all the subclasses not yet freed."""

    alive = 0

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self.payload = bytes(PAYLOAD_BYTES)  # what the request carried
        Quote.alive += 1

    def __del__(self) -> None:
        Quote.alive -= 1

    def _total(self, tax_rate: float) -> float:
        return round((100 + self.request_id % 7) * (1 + tax_rate), 2)


class QuoteCache(Quote):
    """``total`` cached with ``functools.cache``: the cache keeps every ``self`` it has seen."""

    @functools.cache  # noqa: B019 - the leak chapter 02 demonstrates
    def total(self, tax_rate: float) -> float:
        return self._total(tax_rate)


class QuoteLRU(Quote):
    """``total`` cached with a bare ``functools.lru_cache``: it keeps the latest 128 ``self``."""

    @functools.lru_cache  # noqa: B019 - the leak chapter 02 demonstrates
    def total(self, tax_rate: float) -> float:
        return self._total(tax_rate)


class QuoteMemoize(Quote):
    """``total`` cached with ``leaklab.memoize``: one cache per instance, held weakly."""

    @memoize
    def total(self, tax_rate: float) -> float:
        return self._total(tax_rate)


#: The classes :func:`handle_request` and :func:`serve_requests` can use.
REQUEST_VARIANTS: dict[str, type[Quote]] = {
    "functools.cache": QuoteCache,
    "lru_cache": QuoteLRU,
    "leaklab.memoize": QuoteMemoize,
}


def quote_class(variant: str) -> type[Quote]:
    """The quote class of ``variant``, a key of :data:`REQUEST_VARIANTS`."""
    try:
        return REQUEST_VARIANTS[variant]
    except KeyError:
        raise ValueError(
            f"variant must be one of {tuple(REQUEST_VARIANTS)}, got {variant!r}"
        ) from None


def handle_request(variant: str, request_id: int = 0) -> float:
    """One request: make its quote, ask for the total twice (the second call is a hit)."""
    quote = quote_class(variant)(request_id)
    quote.total(0.2)
    return quote.total(0.2)  # the handler returns, the quote is dropped: nothing here keeps it


def serve_requests(
    variant: str, batches: int = 20, per_batch: int = 1000, pause: float = 0.01
) -> dict[str, int]:
    """Handle ``batches * per_batch`` requests through :func:`handle_request`, pausing ``pause`` s
    after each batch. Returns ``{"requests", "alive"}``: the requests handled and the quotes still
    alive at the end, all requests being over. Starts from :func:`reset`."""
    reset()
    request = 0
    for _ in range(batches):
        for _ in range(per_batch):
            handle_request(variant, request)
            request += 1
        progress(request)
        time.sleep(pause)
    return {"requests": request, "alive": Quote.alive}


def reset() -> None:
    """Drop :data:`renderers` and clear the method caches of the three quote classes (which
    frees the quotes they kept)."""
    renderers.clear()
    for cls in REQUEST_VARIANTS.values():
        cls.total.cache_clear()  # type: ignore[attr-defined]
