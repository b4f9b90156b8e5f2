"""A registry of live objects that should have been a WeakValueDictionary (chapter 03).

A module keeps a registry of the sessions that are open, so that other code can look one up by
id (an admin page, a broadcast). With a plain dict, :data:`registry`, the registry itself keeps
every session alive: :func:`register_leaky` adds one per request and nothing removes it, so a
registry "of live objects" ends up holding every object there ever was.

The fix, :func:`register_weak`, registers in a :class:`weakref.WeakValueDictionary`,
:data:`weak_registry`: the request that owns the session keeps it alive while it needs it, and
the entry disappears by itself when the session is freed. :func:`lookup` finds a session in
either registry; :func:`reset` empties both.

Each session carries a :data:`PAYLOAD_BYTES` payload, every byte written, so the growth shows in
RSS too. Both ``register_*`` functions take an optional ``request_id`` (a fresh one by default).
"""

from __future__ import annotations

import itertools
import weakref

__all__ = [
    "PAYLOAD_BYTES",
    "Session",
    "registry",
    "weak_registry",
    "register_leaky",
    "register_weak",
    "lookup",
    "reset",
]

#: Bytes each session carries.
PAYLOAD_BYTES = 1024

#: Request id -> session, held strongly: every session ever registered stays alive.
registry: dict[int, Session] = {}
#: Request id -> session, held weakly: an entry lives exactly as long as its session.
weak_registry: weakref.WeakValueDictionary[int, Session] = weakref.WeakValueDictionary()

_request_ids = itertools.count(1)


class Session:
    """What one request opens and, when it is done, drops."""

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self.payload = (b"session %d " % request_id).ljust(PAYLOAD_BYTES, b".")

    def __repr__(self) -> str:
        return f"Session(request_id={self.request_id})"


def _open(request_id: int | None) -> Session:
    return Session(next(_request_ids) if request_id is None else request_id)


def register_leaky(request_id: int | None = None) -> None:
    """Handle one request: open a session and register it in the plain dict, for ever."""
    session = _open(request_id)
    registry[session.request_id] = session


def register_weak(request_id: int | None = None) -> None:
    """Handle one request: open a session and register it weakly; it leaves with the session."""
    session = _open(request_id)
    weak_registry[session.request_id] = session


def lookup(request_id: int) -> Session | None:
    """The registered session with ``request_id``, from either registry, or None."""
    session = registry.get(request_id)
    return session if session is not None else weak_registry.get(request_id)


def reset() -> None:
    """Empty both registries, freeing the sessions only the plain dict kept alive."""
    registry.clear()
    weak_registry.clear()
