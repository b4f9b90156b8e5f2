"""The chapter's example of module state that never dies, and its fix (chapter 03).

A module is imported once and cached in ``sys.modules``, so its globals live as long as the
process. :func:`handle_request_leaky` is the chapter's ``leakArray.push(...)``: every call
appends to the module-level list :data:`leak_array`, which nothing ever empties; deleting the
caller's names frees nothing, because ``sys.modules`` still holds the module and the module
holds the list.

The fix is the chapter's: a module that must keep state offers an interface to empty or bound
it, and callers use it.

- :func:`drain` hands the pending items to the caller and empties the list (a caller that flushes
  a batch now and then keeps memory flat);
- :func:`handle_request_bounded` keeps only the last :data:`RECENT_LIMIT` items in a
  ``collections.deque(maxlen=...)``, which drops the oldest item on every append once full.

Every call keeps a :data:`PAYLOAD_BYTES` payload whose bytes are all written, so the growth shows
in RSS as well as in tracemalloc; ``request_id`` (written into the payload) defaults to a fresh
id. The functions return nothing (a notebook's output history would otherwise keep what they
return alive). They live in a file so that ``track_isolated`` and line profilers can run them;
:func:`reset` empties both globals.
"""

from __future__ import annotations

import itertools
from collections import deque

__all__ = [
    "PAYLOAD_BYTES",
    "RECENT_LIMIT",
    "leak_array",
    "recent",
    "handle_request_leaky",
    "handle_request_bounded",
    "drain",
    "reset",
]

#: Bytes kept per call.
PAYLOAD_BYTES = 1024
#: How many items the bounded variant keeps.
RECENT_LIMIT = 64

#: The chapter's ``leakArray``: every call of :func:`handle_request_leaky` appends here.
leak_array: list[bytes] = []
#: The fix: only the last :data:`RECENT_LIMIT` payloads are kept.
recent: deque[bytes] = deque(maxlen=RECENT_LIMIT)

_request_ids = itertools.count(1)


def _payload(request_id: int | None) -> bytes:
    """A fresh ``PAYLOAD_BYTES``-byte payload naming the request, every byte written."""
    if request_id is None:
        request_id = next(_request_ids)
    return (b"request %d " % request_id).ljust(PAYLOAD_BYTES, b".")


def handle_request_leaky(request_id: int | None = None) -> None:
    """Handle one request and keep its payload in the module-level list, for ever."""
    leak_array.append(_payload(request_id))


def drain() -> list[bytes]:
    """Hand the kept payloads to the caller (to write out, say) and forget them."""
    items = leak_array[:]
    del leak_array[: len(items)]  # in place; what another thread appends meanwhile stays
    return items


def handle_request_bounded(request_id: int | None = None) -> None:
    """Handle one request and keep its payload in ``recent``, a deque of the last RECENT_LIMIT."""
    recent.append(_payload(request_id))


def reset() -> None:
    """Empty :data:`leak_array` and :data:`recent`, as if no request had been handled."""
    leak_array.clear()
    recent.clear()
