"""Workloads for chapter 03 ("Module state never dies") that run in a fresh process.

``track_isolated`` imports its target in a new interpreter, so the chapter's RSS-over-time runs
live here rather than in the notebook. :func:`serve` plays a long-running service that handles
requests in batches through :mod:`leaklab.scenarios.module_state`, in one of three ways
(:data:`VARIANTS`):

- ``"leaky"``: :func:`~leaklab.scenarios.module_state.handle_request_leaky` on every request,
  nothing ever emptied: the module-level list grows for as long as the process runs;
- ``"drained"``: the same calls, but the caller uses the module's interface and
  empties the list with :func:`~leaklab.scenarios.module_state.drain` after every batch (as if
  writing the batch somewhere), then drops what it was handed;
- ``"bounded"``: :func:`~leaklab.scenarios.module_state.handle_request_bounded`, whose
  ``deque(maxlen=...)`` keeps only the last few payloads.

The chapter's blind-spot demonstration needs a cache that objgraph cannot see: :data:`rendered`
maps page names to rendered text, both ``str``, and a dict whose keys and values are all ``str``
is one tracked object however big it grows, because ``str`` is never tracked by the garbage
collector. :func:`render_page` fills it; :func:`reset` empties it and the module_state globals.
"""

from __future__ import annotations

import time

from leaklab.scenarios import module_state

__all__ = ["VARIANTS", "serve", "rendered", "render_page", "reset"]

#: The ways :func:`serve` can handle its requests.
VARIANTS = ("leaky", "drained", "bounded")

#: Page name -> rendered page, both ``str``: a cache that is invisible to object counts.
rendered: dict[str, str] = {}


def serve(variant: str, batches: int = 30, per_batch: int = 2000, pause: float = 0.01) -> dict[str, int]:
    """Handle ``batches * per_batch`` requests the ``variant`` way, pausing ``pause`` s after each
    batch so that RSS samples spread over time.

    Returns ``{"calls": ..., "kept": ...}``: the requests handled and the payloads the module
    still holds at the end (in ``leak_array`` and ``recent`` together). Starts from
    :func:`module_state.reset` so repeated runs in one process do not add up.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    module_state.reset()
    handle = (module_state.handle_request_bounded if variant == "bounded"
              else module_state.handle_request_leaky)
    request_id = 0
    for _ in range(batches):
        for _ in range(per_batch):
            request_id += 1
            handle(request_id)
        if variant == "drained":
            module_state.drain()  # the caller would write the batch out; here it drops it
        time.sleep(pause)
    kept = len(module_state.leak_array) + len(module_state.recent)
    return {"calls": request_id, "kept": kept}


def render_page(request_id: int, size: int = 1024) -> None:
    """Render a page of ``size`` characters for the request and cache it in :data:`rendered`,
    a cache with no bound and no expiry."""
    name = f"page-{request_id}"
    rendered[name] = f"<p>{name}</p>".ljust(size, ".")


def reset() -> None:
    """Empty :data:`rendered` and the globals of :mod:`leaklab.scenarios.module_state`."""
    rendered.clear()
    module_state.reset()
