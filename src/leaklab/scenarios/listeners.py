"""Listeners kept as bound methods keep their objects alive, and the weak fix (chapter 03).

Python's version of module state that never dies: a module-level list of callbacks. Every
request makes a :class:`Session` that wants to hear about events while it lives, so it
subscribes its bound method ``session.on_event``. A bound method holds its object
(``method.__self__``), so :func:`subscribe_leaky` appending it to the module-level
:data:`listeners` keeps every session, and its payload, alive for as long as the process runs,
long after the request that made it has returned.

The fix, :func:`subscribe_weak`, keeps a :class:`weakref.WeakMethod` instead: it does not keep
the session alive, and its callback removes the dead entry from :data:`weak_listeners` when the
session is freed, so the list does not fill up with dead references either. (A plain
``weakref.ref(session.on_event)`` would not do: the bound method is a temporary object and dies
at once. blinker's ``Signal.connect(receiver, weak=True)`` holds receivers the same way.)
Unsubscribing explicitly when the session closes (:func:`remove_listener`) also works, but only
if every caller remembers.

:func:`add_listener` is the module's general interface (strong or weak, bound method or
function); the two ``subscribe_*`` variants spell out the one line each that matters. Each
session carries a :data:`PAYLOAD_BYTES` payload, every byte written, so the growth shows in RSS
too. :func:`emit` calls the live listeners; :func:`reset` forgets them all.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from typing import Any

__all__ = [
    "PAYLOAD_BYTES",
    "Session",
    "listeners",
    "weak_listeners",
    "add_listener",
    "subscribe_leaky",
    "subscribe_weak",
    "remove_listener",
    "emit",
    "reset",
]

#: Bytes each session carries.
PAYLOAD_BYTES = 1024

#: Strong references to bound methods: every subscribed session stays alive.
listeners: list[Callable[[Any], None]] = []
#: Weak references to listeners: an entry goes away with its listener's object.
weak_listeners: list[weakref.ref[Callable[[Any], None]]] = []

_request_ids = itertools.count(1)


class Session:
    """What one request creates: it listens for events while it lives."""

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self.payload = (b"session %d " % request_id).ljust(PAYLOAD_BYTES, b".")
        self.events_seen = 0

    def on_event(self, event: Any) -> None:
        """The listener: count the event."""
        self.events_seen += 1

    def __repr__(self) -> str:
        return f"Session(request_id={self.request_id}, events_seen={self.events_seen})"


def _session(request_id: int | None) -> Session:
    return Session(next(_request_ids) if request_id is None else request_id)


def _forget(ref: weakref.ref[Callable[[Any], None]]) -> None:
    """Weak-reference callback: the listener's object is gone, drop its entry."""
    try:
        weak_listeners.remove(ref)  # a dead reference compares equal only to itself
    except ValueError:  # already gone (reset() ran first)
        pass


def add_listener(listener: Callable[[Any], None], *, weak: bool = False) -> None:
    """Subscribe ``listener`` to :func:`emit`.

    With ``weak=False`` the module holds the listener, and a bound method holds its object:
    both live as long as the process. With ``weak=True`` it holds a :class:`weakref.WeakMethod`
    (a bound method) or a :class:`weakref.ref` (a function or other callable): the entry lasts as
    long as the caller keeps the object alive, then removes itself.
    """
    if not callable(listener):
        raise TypeError(f"listener must be callable, got {type(listener).__name__}: {listener!r}")
    if not isinstance(weak, bool):
        raise TypeError(f"weak must be a bool, got {type(weak).__name__}: {weak!r}")
    if not weak:
        listeners.append(listener)
    elif hasattr(listener, "__self__") and hasattr(listener, "__func__"):
        weak_listeners.append(weakref.WeakMethod(listener, _forget))  # type: ignore[arg-type]
    else:
        weak_listeners.append(weakref.ref(listener, _forget))


def subscribe_leaky(request_id: int | None = None) -> None:
    """Handle one request whose session listens through its bound method, held strongly."""
    session = _session(request_id)
    listeners.append(session.on_event)  # the method holds the session in __self__


def subscribe_weak(request_id: int | None = None) -> None:
    """Handle one request whose session listens through a WeakMethod, which lets it go."""
    session = _session(request_id)
    weak_listeners.append(weakref.WeakMethod(session.on_event, _forget))


def remove_listener(listener: Callable[[Any], None]) -> None:
    """Unsubscribe ``listener``, added with ``weak=False``; raise ValueError if it is not there.

    A bound method compares equal to another one of the same function and object, so
    ``remove_listener(session.on_event)`` finds the entry ``add_listener(session.on_event)`` made.
    """
    try:
        listeners.remove(listener)
    except ValueError:
        raise ValueError(f"{listener!r} is not subscribed (strongly)") from None


def emit(event: Any = None) -> int:
    """Call every live listener with ``event``; return how many were called."""
    called = 0
    for listener in listeners.copy():  # a listener may subscribe or go away meanwhile
        listener(event)
        called += 1
    for ref in weak_listeners.copy():
        method = ref()
        if method is not None:
            method(event)
            called += 1
    return called


def reset() -> None:
    """Forget every listener, strong and weak, freeing the sessions only they kept alive."""
    listeners.clear()
    weak_listeners.clear()
