"""What an LRUCache (chapter 01) shows without being used: entries, size, settings, counters.

``peek``, ``has`` (``in``), ``len``, ``keys``, ``items`` and ``stats`` neither mark an entry used
nor count a hit; what has expired is removed first, so that only live entries show. Chapter 01
reads a cache's hit ratio and evictions from :class:`CacheStats`. :class:`_Views` is a base class
of :class:`LRUCache` that holds no state of its own; its reads take no lock on a GIL build, as
``get`` does not (``locking.py``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from .arguments import _Change
from .entries import _MISSING, _NEVER, _items_of
from .locking import _locked_read


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of an :class:`LRUCache`'s counters, as returned by :meth:`LRUCache.stats`.

    Attributes:
        hits: ``get`` calls that found a live entry.
        misses: ``get`` calls that found none (absent or expired).
        evictions: live entries removed to respect ``max`` or ``max_size``.
        expirations: entries removed because their ttl had run out.
        size: live entries held now.
        total_size: sum of ``size_of(key, value)`` over them (without ``max_size``, every entry
            counts 1, so this equals ``size``).
    """

    hits: int
    misses: int
    evictions: int
    expirations: int
    size: int
    total_size: int


def _count_value(counter: itertools.count[int]) -> int:
    """The next value an ``itertools.count()`` would return, i.e. how many times it counted.

    LRUCache counts hits and misses with ``next(counter)``, one C call that needs no lock.
    """
    text = repr(counter)  # "count(42)"; itertools.count has no public read accessor
    return int(text[text.index("(") + 1 : -1])


class _Views:
    """The read-only views of :class:`LRUCache` (see the module docstring)."""

    __slots__ = ()
    # Declared by LRUCache (in its slots, or in the compiled base class):
    _max: int | None
    _max_size: int | None
    _ttl: float | None
    _update_age_on_get: bool
    _table: Any
    _lock: Any
    _clock: Any
    _next_expiry: float
    _hits: Any
    _misses: Any
    _evictions: int
    _expirations: int
    _sizes: dict[Any, int] | None
    _total_size: int

    @property
    def max(self) -> int | None:
        """The most entries held, or None."""
        return self._max

    @property
    def max_size(self) -> int | None:
        """The most total size held, or None."""
        return self._max_size

    @property
    def ttl(self) -> float | None:
        """The default time to live in seconds, or None."""
        return self._ttl

    @property
    def update_age_on_get(self) -> bool:
        """Whether a ``get`` hit restarts the entry's ttl."""
        return self._update_age_on_get

    @_locked_read
    def peek(self, key: Any, default: Any = None) -> Any:
        """Return the live value for ``key`` (or ``default``) without marking it used.

        Not counted in the statistics. An expired entry is removed and ``default`` returned.
        """
        data, _, _, timed = self._table
        value = data.get(key, _MISSING)
        if value is _MISSING:
            return default
        if timed:
            value, expires = value
            if expires is not _NEVER and expires <= self._clock():
                self._remove_if_expired(key)  # type: ignore[attr-defined]  # expiry.py's
                return default
        return value

    @_locked_read
    def has(self, key: Any) -> bool:
        """Whether a live entry for ``key`` is held; does not mark it used nor count a hit."""
        data, _, _, timed = self._table
        value = data.get(key, _MISSING)
        if value is _MISSING:
            return False
        if timed:
            expires = value[1]
            if expires is not _NEVER and expires <= self._clock():
                self._remove_if_expired(key)  # type: ignore[attr-defined]  # expiry.py's
                return False
        return True

    __contains__ = has

    def __len__(self) -> int:
        """The number of live entries (expired ones are removed first)."""
        data, _, _, timed = self._table
        if timed and self._next_expiry <= self._clock():
            self.purge_stale()  # type: ignore[attr-defined]  # LRUCache's
        return len(data)

    def keys(self) -> list[Any]:
        """The keys of the live entries, most recently used first (a snapshot list)."""
        return [key for key, _ in self.items()]

    def items(self) -> list[tuple[Any, Any]]:
        """The live ``(key, value)`` pairs, most recently used first (a snapshot list)."""
        with _Change(self) as removed:
            data, _, _, timed = self._table
            self._purge_due(removed)  # type: ignore[attr-defined]  # expiry.py's
            pairs = _items_of(data)
        pairs.reverse()
        if timed:
            return [(key, value) for key, (value, _) in pairs]
        return pairs

    def stats(self) -> CacheStats:
        """A consistent snapshot of the counters, after removing expired entries."""
        self.purge_stale()  # type: ignore[attr-defined]  # LRUCache's
        with self._lock:
            size = len(self._table[0])
            return CacheStats(
                hits=_count_value(self._hits),
                misses=_count_value(self._misses),
                evictions=self._evictions,
                expirations=self._expirations,
                size=size,
                total_size=self._total_size if self._sizes is not None else size,
            )

    def __repr__(self) -> str:
        return (
            f"LRUCache(max={self._max}, max_size={self._max_size}, ttl={self._ttl}, "
            f"len={len(self._table[0])})"
        )
