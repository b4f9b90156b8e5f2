"""A small service you did not write, with two leaks in it: the case that chapter 06 hunts.

Chapter 06 ("Hunting a leak you did not write") treats this module as inherited code: the reader
sees only that memory climbs while it serves requests, and finds the leaks with the method of the
chapter (confirm, locate, find the owner, fix, verify). Stop reading here if you want to hunt
them yourself.

What it does. :func:`handle_request` serves one request the way many web services do:

- it builds a :class:`Request` (with its body) and subscribes the request's
  ``on_config_changed`` to :data:`bus`, an :class:`EventBus`, so that a configuration change
  published while the request runs reaches it;
- it renders the page through a page cache, :data:`page_cache`;
- it queues an audit record in :data:`outbox`, which is shipped (emptied) every
  :data:`AUDIT_BATCH` records, as a background writer would.

The two planted leaks, of different kinds:

1. **A container that grows.** :data:`page_cache` is keyed by the request's full URL, which
   carries a per-request cache-buster (``?t=...``), so no key ever repeats: every request adds an
   entry (its key and its :data:`PAGE_BYTES`-long page) and nothing is ever evicted.
   :class:`~leaklab.state.GlobalsWatch` names it.
2. **A reference the reader must trace.** ``bus.subscribe`` keeps a strong reference to the bound
   method, and a bound method holds its object (``__self__``), so the bus keeps every request and
   its :data:`BODY_BYTES` body alive. No module global grows (the bus has no length);
   ``objgraph.find_backref_chain`` shows the path from this module to a kept request.

The audit outbox rises and falls every :data:`AUDIT_BATCH` requests: it is not a leak.

The fixes (:func:`handle_request_fixed`) use the earlier chapters' tools: pages cached by path in
an :class:`~leaklab.caches.LRUCache` with a bound (chapter 01), and the listener subscribed
weakly, ``bus.subscribe(..., weak=True)``, through :class:`weakref.WeakMethod` (chapter 03).

:func:`serve` runs many requests one way or the other (:data:`VARIANTS`), reporting
:func:`~leaklab.measure.progress`, so ``track_isolated`` can run either in a fresh process;
:func:`release` is the fix applied to a running process (it drops what the leaks kept), and
:func:`reset` returns the module to its state at import.
"""

from __future__ import annotations

import gc
import itertools
import time
import tracemalloc
import weakref
from collections.abc import Callable
from typing import Any

from leaklab.caches import LRUCache
from leaklab.measure import progress

__all__ = [
    "BODY_BYTES",
    "PAGE_BYTES",
    "AUDIT_BATCH",
    "PATHS",
    "PAGES_KEPT",
    "VARIANTS",
    "EventBus",
    "Request",
    "bus",
    "page_cache",
    "pages",
    "outbox",
    "handle_request",
    "handle_request_fixed",
    "render_page",
    "render_page_fixed",
    "serve",
    "release",
    "reset",
]

#: Bytes in each request's body.
BODY_BYTES = 4096
#: Characters in each rendered page.
PAGE_BYTES = 1024
#: The outbox is shipped (emptied) every this many audit records.
AUDIT_BATCH = 100
#: How many distinct pages the service has (``/report/0`` ... ``/report/49``).
PATHS = 50
#: The fixed page cache's bound (chapter 01's LRUCache).
PAGES_KEPT = 256
#: The ways :func:`serve` can run.
VARIANTS = ("leaky", "fixed", "fixed midway")


class EventBus:
    """Named events and their handlers: ``subscribe(event, handler)``, ``publish(event, data)``.

    A handler is held strongly by default. With ``weak=True`` a bound method is held through a
    :class:`weakref.WeakMethod` (a function through a :class:`weakref.ref`), and its entry is
    removed when its object is freed.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, list[Any]] = {}

    def subscribe(self, event: str, handler: Callable[[Any], None], *, weak: bool = False) -> None:
        """Call ``handler(data)`` on every ``publish(event, data)`` from now on."""
        handlers = self._handlers.setdefault(event, [])
        if not weak:
            handlers.append(handler)
            return

        def forget(ref: weakref.ref[Any]) -> None:
            try:
                handlers.remove(ref)  # a dead reference is equal only to itself
            except ValueError:  # already gone (reset)
                pass

        maker = weakref.WeakMethod if hasattr(handler, "__self__") else weakref.ref
        handlers.append(maker(handler, forget))

    def unsubscribe(self, event: str, handler: Callable[[Any], None]) -> None:
        """Stop calling ``handler`` (a strongly held one) on ``event``."""
        self._handlers.get(event, []).remove(handler)

    def publish(self, event: str, data: Any) -> int:
        """Call every live handler of ``event`` with ``data``; return how many were called."""
        called = 0
        for handler in list(self._handlers.get(event, ())):
            if isinstance(handler, weakref.ref):
                handler = handler()
                if handler is None:
                    continue
            handler(data)
            called += 1
        return called

    def clear(self) -> None:
        """Forget every handler."""
        self._handlers.clear()


class Request:
    """One request: its URL (with the client's cache-buster), its body and its settings."""

    def __init__(self, request_id: int) -> None:
        self.id = request_id
        self.path = f"/report/{request_id % PATHS}"
        self.url = f"{self.path}?t={request_id}"
        self.body = (b"request %d " % request_id).ljust(BODY_BYTES, b".")
        self.locale = "en"

    def on_config_changed(self, config: dict[str, Any]) -> None:
        """A configuration change reaches the request while it runs."""
        self.locale = config.get("locale", self.locale)

    def __repr__(self) -> str:
        return f"Request(id={self.id}, url={self.url!r})"


#: Configuration changes are published here.
bus = EventBus()
#: Rendered pages, by URL.
page_cache: dict[str, str] = {}
#: Rendered pages, by path, at most PAGES_KEPT of them (the fix).
pages: LRUCache[str, str] = LRUCache(max=PAGES_KEPT)
#: Audit records waiting to be shipped.
outbox: list[tuple[int, str, int]] = []
#: Audit records shipped so far.
shipped = 0

_request_ids = itertools.count(1)


def _render(request: Request) -> str:
    """The page for ``request``: :data:`PAGE_BYTES` characters."""
    return f"<h1>{request.path}</h1><p lang={request.locale}>".ljust(PAGE_BYTES, ".")


def _audit(request: Request, page: str) -> None:
    """Queue an audit record; ship the batch once it is full."""
    global shipped
    outbox.append((request.id, request.path, len(page)))
    if len(outbox) >= AUDIT_BATCH:
        shipped += len(outbox)  # a background writer would send them somewhere
        outbox.clear()


def render_page(request: Request) -> str:
    """The page for ``request``, from the page cache when it is there."""
    page = page_cache.get(request.url)
    if page is None:
        page = _render(request)
        page_cache[request.url] = page
    return page


def handle_request(request_id: int | None = None) -> int:
    """Serve one request (a fresh id when none is given); return the page's length."""
    request = Request(next(_request_ids) if request_id is None else request_id)
    bus.subscribe("config_changed", request.on_config_changed)
    page = render_page(request)
    _audit(request, page)
    return len(page)


# --------------------------------------------------------------------------- the fixes


def render_page_fixed(request: Request) -> str:
    """The page depends on the path only: cache it by path, in a bounded LRU cache."""
    page = pages.get(request.path)
    if page is None:
        page = _render(request)
        pages.set(request.path, page)
    return page


def handle_request_fixed(request_id: int | None = None) -> int:
    """:func:`handle_request` with both fixes: a weak listener and a bounded page cache."""
    request = Request(next(_request_ids) if request_id is None else request_id)
    bus.subscribe("config_changed", request.on_config_changed, weak=True)
    page = render_page_fixed(request)
    _audit(request, page)
    return len(page)


# --------------------------------------------------------------------------- runs


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return value


def release() -> None:
    """The fix applied to a running process: drop every page and listener the leaks kept."""
    page_cache.clear()
    bus.clear()
    gc.collect()


def serve(variant: str, requests: int = 30_000, *, every: int = 1_000, pause: float = 0.01,
          trace: bool = False) -> dict[str, Any]:
    """Serve ``requests`` requests the ``variant`` way, from a fresh start (:func:`reset`).

    ``"leaky"`` calls :func:`handle_request`, ``"fixed"`` :func:`handle_request_fixed`;
    ``"fixed midway"`` serves the first half leaky, then applies the fix to the running process
    (:func:`release`) and serves the second half fixed. Every ``every`` requests it publishes a
    configuration change, reports :func:`~leaklab.measure.progress` and sleeps ``pause`` s, so
    that RSS samples spread over the run.

    Returns the requests served, the pages and listeners kept at the end, and the listeners
    the last publish reached. With ``trace=True`` (``"fixed midway"`` only) tracemalloc runs
    and the result also has ``traced_mib``: the traced MiB at the start, at the switch before
    and after :func:`release`, and at the end.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    requests = _check_count("requests", requests)
    every = _check_count("every", every)
    if trace and variant != "fixed midway":
        raise ValueError("trace=True is for the 'fixed midway' variant only")
    reset()
    traced: dict[str, float] = {}
    if trace:
        tracemalloc.start()
        traced["start"] = tracemalloc.get_traced_memory()[0] / 2**20
    handle = handle_request_fixed if variant == "fixed" else handle_request
    reached = 0
    try:
        for done in range(1, requests + 1):
            handle(done)
            if done == requests // 2 and variant == "fixed midway":
                if trace:
                    traced["before release"] = tracemalloc.get_traced_memory()[0] / 2**20
                release()
                handle = handle_request_fixed
                if trace:
                    traced["after release"] = tracemalloc.get_traced_memory()[0] / 2**20
            if done % every == 0 or done == requests:
                reached = bus.publish("config_changed", {"locale": "en"})
                progress(done)
                time.sleep(pause)
        if trace:
            gc.collect()
            traced["end"] = tracemalloc.get_traced_memory()[0] / 2**20
    finally:
        if trace:
            tracemalloc.stop()
    result: dict[str, Any] = {"requests": requests, "pages": len(page_cache) + len(pages),
                              "listeners": sum(map(len, bus._handlers.values())),
                              "reached": reached}
    if trace:
        result["traced_mib"] = traced
    return result


def reset() -> None:
    """Return the module to its state at import: no pages, listeners or audit records."""
    global shipped, _request_ids
    page_cache.clear()
    pages.clear()
    bus.clear()
    outbox.clear()
    shipped = 0
    _request_ids = itertools.count(1)
