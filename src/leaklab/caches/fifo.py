"""LimitableMap: the FIFO map of chapter 01, "Memory is a costly cache".

The chapter's first fix: once ``limit`` keys are held, the key inserted first is evicted. Small
and obvious, but it evicts hot keys as readily as cold ones, which the chapter measures as a poor
hit ratio on a skewed key stream (the LRU cache of ``lru.py`` does better).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from leaklab._checks import check_int

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LimitableMap(MutableMapping[K, V], Generic[K, V]):
    """A dict that holds at most ``limit`` keys, evicting the key inserted first (FIFO).

    The Python port of the chapter's LimitableMap. Setting a new key once ``limit`` keys are
    held evicts the oldest key; updating an existing key keeps its place, as the original does.
    Iteration is oldest first. It is a full :class:`~collections.abc.MutableMapping`. It is not
    thread-safe: share it between threads only behind a lock (or use :class:`LRUCache`).
    ``copy.copy``, ``copy.deepcopy`` and pickle make a map of its own (with the same limit,
    entries in the same order, and eviction count).

    >>> m = LimitableMap(limit=2)
    >>> m["a"] = 1; m["b"] = 2; m["a"] = 10; m["c"] = 3
    >>> list(m), m.evictions
    (['b', 'c'], 1)

    Args:
        limit: the most keys held, an int >= 1. Unlike the original, 0 is not turned into 10 and a
            negative limit does not mean "never evict": both raise ValueError.

    Raises:
        TypeError: ``limit`` is a bool or not an int.
        ValueError: ``limit`` is below 1.
    """

    __slots__ = ("_data", "_evictions", "_limit")

    def __init__(self, limit: int = 10) -> None:
        self._limit = check_int("limit", limit)
        self._data: OrderedDict[K, V] = OrderedDict()
        self._evictions = 0

    @property
    def limit(self) -> int:
        """The most keys this map holds."""
        return self._limit

    @property
    def evictions(self) -> int:
        """How many keys have been evicted to make room so far."""
        return self._evictions

    def set(self, key: K, value: V) -> None:
        """Store ``value`` under ``key``, evicting the oldest key if ``limit`` keys are held."""
        data = self._data
        if key not in data and len(data) >= self._limit:
            data.popitem(False)
            self._evictions += 1
        data[key] = value

    __setitem__ = set

    def get(self, key: K, default: Any = None) -> Any:
        """Return the value for ``key``, or ``default`` if it is not held."""
        return self._data.get(key, default)

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __delitem__(self, key: K) -> None:
        del self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        """Iterate over the keys, oldest first."""
        return iter(self._data)

    def clear(self) -> None:
        """Remove every key (not counted as evictions)."""
        self._data.clear()

    def __repr__(self) -> str:
        return f"LimitableMap(limit={self._limit}, len={len(self._data)})"

    # copy.copy, copy.deepcopy and pickle go through these: the state is a fresh list of the
    # entries, so that a copy never shares the storage (the default state of a class with
    # __slots__ would hand the same OrderedDict to the copy).
    def __getstate__(self) -> tuple[Any, ...]:
        extra = getattr(self, "__dict__", None)  # a subclass's own attributes, if it has any
        return (self._limit, list(self._data.items()), self._evictions, extra)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        limit, items, evictions, extra = state
        self._limit = check_int("limit", limit)
        self._data = OrderedDict(items)
        self._evictions = check_int("evictions", evictions, 0)
        if extra:
            vars(self).update(extra)
