"""What an LRUCache (chapter 01) is given: its arguments, and the callbacks it calls.

Bad configuration fails at construction, with a TypeError or ValueError that names the argument
(:func:`_checked`). The two callbacks, ``size_of`` and ``dispose``, are the user's code: they run
outside the cache's lock, and their mistakes are reported in words that name them. A ``dispose``
that raises still lets every other entry of the same operation be disposed of (:class:`_Change`
runs a change under the lock and disposes of what left after it).
"""

from __future__ import annotations

import operator
import reprlib
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

from leaklab._checks import check_callable, check_int, check_seconds

DisposeReason = Literal["evict", "expire", "set", "delete", "clear"]
"""Why an entry left an :class:`LRUCache`, as passed to its ``dispose`` callback."""

_Removed = list[tuple[Any, Any, DisposeReason]]  # entries that left, for dispose


def _shown(obj: object) -> str:
    """A short repr for an error message, which never raises."""
    try:
        return reprlib.repr(obj)
    except Exception:
        return f"<{type(obj).__name__} object>"


# -- arguments ----------------------------------------------------------------------------------


def _checked(
    max: Any,
    max_size: Any,
    size_of: Any,
    ttl: Any,
    update_age_on_get: Any,
    dispose: Any,
    clock: Any,
) -> tuple[int | None, int | None, Callable[[Any, Any], int] | None, float | None]:
    """LRUCache's arguments checked (see its docstring): ``max``, ``max_size``, ``size_of``
    (the default where ``max_size`` needs one) and ``ttl``, each as the cache keeps it.

    Wherever an int is taken (``max``, ``max_size``, a ttl), an int-like such as ``numpy.int64``
    is accepted (``operator.index`` is the rule); a bool or a float is not an int.

    Raises:
        TypeError: a count or size is a bool or not an int; ``ttl`` is a bool, a string or not a
            number; ``update_age_on_get`` is not a bool; a callback is not callable;
            ``size_of`` cannot be called with two arguments.
        ValueError: no bound given (``ttl`` alone bounds nothing); ``size_of`` without
            ``max_size``; a count or size below 1; ``max`` above ``sys.maxsize``; ``ttl`` not
            finite and > 0.
    """
    if max is not None:
        # No container holds more than sys.maxsize entries, and the compiled write compares
        # lengths with max as a C ssize_t: a larger max is refused on every build alike.
        max = check_int("max", max, maximum=sys.maxsize)
    if max_size is not None:
        max_size = check_int("max_size", max_size)  # sums of Python ints: no upper limit
    if ttl is not None:
        ttl = check_seconds("ttl", ttl, int_like=True)
    if size_of is not None:
        check_callable("size_of", size_of)
    if dispose is not None:
        check_callable("dispose", dispose)
    check_callable("clock", clock)
    if not isinstance(update_age_on_get, bool):
        raise TypeError(
            f"update_age_on_get must be a bool, got {update_age_on_get!r} "
            f"of type {type(update_age_on_get).__name__}"
        )
    if max is None and max_size is None:
        hint = " (ttl alone is no bound: expired entries stay until touched)" if ttl else ""
        raise ValueError(f"LRUCache needs max or max_size, got max=None, max_size=None{hint}")
    if size_of is not None and max_size is None:
        raise ValueError(f"size_of={size_of!r} needs max_size, got max_size=None")
    if size_of is not None:
        _check_takes_key_and_value(size_of)
    if max_size is not None and size_of is None:
        size_of = _default_size_of
    return max, max_size, size_of, ttl


def _entry_ttl(ttl: Any, default: float | None) -> float:
    """A ``ttl`` given to ``set``, checked; the default's own object if equal to it, so that the
    entry is tracked with the others of the default ttl, in deadline order (``expiry.py``)."""
    ttl = check_seconds("ttl", ttl, int_like=True)
    return default if ttl == default else ttl  # type: ignore[return-value]


# -- size_of ------------------------------------------------------------------------------------


def _default_size_of(key: object, value: object) -> int:
    """The default ``size_of``: the value's shallow size in bytes (``sys.getsizeof``)."""
    return sys.getsizeof(value)


def _check_takes_key_and_value(size_of: Callable[..., Any]) -> None:
    """Refuse a ``size_of`` that cannot be called as ``size_of(key, value)`` (``len``...)."""
    import inspect  # only here: a slow import, and only a size_of needs it

    try:
        signature = inspect.signature(size_of)
    except (TypeError, ValueError):  # no signature to read (some builtins): trust it
        return
    try:
        signature.bind(None, None)
    except TypeError:
        name = getattr(size_of, "__name__", None)
        call = f"{name}(value)" if isinstance(name, str) and name.isidentifier() else "f(value)"
        raise TypeError(
            f"size_of is called as size_of(key, value), but {_shown(size_of)} cannot take "
            f"those two arguments; to size by the value alone, pass "
            f"size_of=lambda key, value: {call}"
        ) from None


def _size_of_entry(size_of: Callable[..., Any], key: Any, value: Any, max_size: Any) -> int:
    """``size_of(key, value)``, checked: an int from 1 to ``max_size``, else a clear error."""
    try:
        size = size_of(key, value)
    except Exception as exc:
        exc.add_note(
            f"raised by size_of(key, value) for key {_shown(key)}, "
            f"with size_of={_shown(size_of)}; the cache is unchanged"
        )
        raise
    if type(size) is not int:
        size = _index_size(key, size)
    if size < 1:
        raise ValueError(
            f"size_of(key, value) must return an int >= 1, got {size!r} for key {_shown(key)}"
        )
    if size > max_size:
        raise ValueError(
            f"entry for key {_shown(key)} has size {size}, larger than max_size="
            f"{max_size}; the cache is unchanged"
        )
    return size


def _index_size(key: Any, size: object) -> int:
    """A ``size_of`` result that is not exactly an int: an int-like (numpy.int64) as an int."""
    if not isinstance(size, bool):
        try:
            return operator.index(size)  # type: ignore[arg-type]
        except TypeError:
            pass
    raise TypeError(
        f"size_of(key, value) must return an int >= 1, got {_shown(size)} "
        f"of type {type(size).__name__} for key {_shown(key)}"
    )


# -- dispose ------------------------------------------------------------------------------------


def _run_dispose(dispose: Callable[[Any, Any, DisposeReason], object], removed: _Removed) -> None:
    """Call ``dispose`` for each removed entry, outside the lock; re-raise the first error.

    Every call runs whatever the ones before raised (a KeyboardInterrupt or SystemExit
    included, which then wins over an ordinary error); further errors become notes.
    """
    error: BaseException | None = None
    for key, value, reason in removed:
        try:
            dispose(key, value, reason)
        except BaseException as exc:  # re-raised below, once every call has run
            if error is None:
                error = exc
                continue
            note = f"dispose({_shown(key)}, ..., {reason!r}) also raised {exc!r}"
            if isinstance(error, Exception) and not isinstance(exc, Exception):
                note = f"an earlier dispose call raised {error!r}"
                error = exc
            error.add_note(note)
    if error is not None:
        raise error


def _dispose_after_error(
    dispose: Callable[[Any, Any, DisposeReason], object] | None,
    removed: _Removed,
    error: BaseException,
) -> None:
    """Dispose of what left the cache before ``error`` stopped an operation.

    The caller re-raises ``error``; an ordinary dispose error becomes a note on it.
    """
    if not removed or dispose is None:
        return
    try:
        _run_dispose(dispose, removed)
    except Exception as exc:
        error.add_note(f"the entries that had left were disposed of; dispose raised {exc!r}")


class _Change:
    """``with _Change(cache) as removed:`` runs the block under the cache's lock; each entry the
    block takes out goes into ``removed`` as ``(key, value, reason)`` and is disposed of after
    the lock is released (its value, too, is released only then), even when the block raises.
    """

    __slots__ = ("_cache", "_removed")

    def __init__(self, cache: Any) -> None:
        self._cache = cache
        self._removed: _Removed = []

    def __enter__(self) -> _Removed:
        self._cache._lock.acquire()
        return self._removed

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._cache._lock.release()
        dispose = self._cache._dispose
        if error is not None:
            _dispose_after_error(dispose, self._removed, error)  # then the error propagates
        elif self._removed and dispose is not None:
            _run_dispose(dispose, self._removed)
