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
in RSS as well as in tracemalloc. The functions return nothing (a notebook's output history
would otherwise keep what they return alive). They live in a file so that ``track_isolated``
and line profilers can run them; :func:`reset` empties both globals.
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
    """Handle one request and remember its payload in :data:`leak_array`, forever.

    ``request_id`` defaults to a fresh id.
    """
    leak_array.append(_payload(request_id))


def drain() -> list[bytes]:
    """Hand the payloads :func:`handle_request_leaky` kept to the caller and forget them.

    The chapter's interface for emptying module state: a caller that drains (say, writes a batch
    to disk) every so often keeps the module's memory bounded.
    """
    items = leak_array[:]
    # Delete exactly what was copied, in place: a payload appended meanwhile (another thread)
    # stays for the next drain, and whoever else holds a reference to the list sees it empty.
    del leak_array[: len(items)]
    return items


def handle_request_bounded(request_id: int | None = None) -> None:
    """Handle one request and remember its payload in :data:`recent`, which keeps only the last
    :data:`RECENT_LIMIT`: memory stays flat however many calls there are.

    ``request_id`` defaults to a fresh id.
    """
    recent.append(_payload(request_id))


def reset() -> None:
    """Empty :data:`leak_array` and :data:`recent`, as if no request had been handled."""
    leak_array.clear()
    recent.clear()
