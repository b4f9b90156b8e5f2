"""Workloads for chapter 03 ("Stop module state from growing forever") that run in a fresh process.

``track_isolated`` imports its target in a new interpreter, so the chapter's RSS-over-requests
runs live here rather than in the notebook. :func:`serve` plays a long-running service that
handles requests in batches through :mod:`leaklab.scenarios.module_state`, in one of three ways
(:data:`VARIANTS`):

- ``"leaky"``: :func:`~leaklab.scenarios.module_state.handle_request_leaky` on every request,
  nothing ever emptied: the module-level list grows for as long as the process runs;
- ``"drained"``: the same calls, but the caller uses the module's interface and
  empties the list with :func:`~leaklab.scenarios.module_state.drain` after every batch (as if
  writing the batch somewhere), then drops what it was handed;
- ``"bounded"``: :func:`~leaklab.scenarios.module_state.handle_request_bounded`, whose
  ``deque(maxlen=...)`` keeps only the last few payloads.

After every batch it reports the requests served so far with :func:`leaklab.measure.progress`,
so a tracked run can be plotted per request (``plot_rss(..., per="request")``). :func:`reset`
empties the module_state globals.
"""

from __future__ import annotations

import time

from leaklab.measure import progress
from leaklab.scenarios import module_state

__all__ = ["VARIANTS", "serve", "reset"]

#: The ways :func:`serve` can handle its requests.
VARIANTS = ("leaky", "drained", "bounded")


def serve(variant: str, batches: int = 30, per_batch: int = 2000, pause: float = 0.01) -> dict[str, int]:
    """Handle ``batches * per_batch`` requests the ``variant`` way, pausing ``pause`` s after each
    batch so that RSS samples spread over time, and reporting :func:`~leaklab.measure.progress`.

    Returns ``{"calls": ..., "kept": ...}``: the requests handled and the payloads the module
    still holds at the end (in ``leak_array`` and ``recent`` together). Starts from
    :func:`module_state.reset` so repeated runs in one process do not add up.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    for name, value in (("batches", batches), ("per_batch", per_batch)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value!r}")
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
        progress(request_id)
        time.sleep(pause)
    kept = len(module_state.leak_array) + len(module_state.recent)
    return {"calls": request_id, "kept": kept}


def reset() -> None:
    """Empty the globals of :mod:`leaklab.scenarios.module_state`."""
    module_state.reset()
