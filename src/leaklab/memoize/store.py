"""Where memoize keeps its results, and how the built-in store stays within its bound (chapter 02).

Two stores, both subclasses of :class:`~leaklab.memoize.inflight.Memo` (which handles the misses):

- :class:`BoundedMemo`, the built-in store: at most ``maxsize`` results, CLOCK eviction, an
  optional ``ttl``;
- :class:`ExternalMemo`, a ``cache=`` object with ``get(key, default)`` and ``set(key, value)``
  (chapter 01's ``LimitableMap`` or ``LRUCache``, a remote cache's client), which bounds and
  expires the results itself.

How the built-in store works, and why a hit is fast
---------------------------------------------------
Each result lives in a small list ``[value, hits, mark, expires, key, slot, next]`` in one plain
``dict``, keyed by the entry's *slot* (``keys.py``). A hit is one dict subscript, an optional
deadline check and ``entry[1] += 1``, without any lock: that increment is both the hit counter
(``cache_info`` sums it) and the recency signal. Everything else (misses, insertion, eviction,
expiry, ``cache_clear``) happens under one lock. Eviction is CLOCK, also called "second chance",
the classic approximation of least-recently-used: entries wait in insertion order in a
``deque``; when room is needed, the oldest entry is evicted unless it was hit since the hand last
passed, in which case it is marked and moved to the back. Expired entries go first. Each step is
O(1) amortized, and no hit ever has to reorder anything. Unequal keys with equal hashes share a
slot, chained through ``next`` (only the first of a chain is found without the lock).

Reading without the lock
------------------------
The hit path is safe without the lock on both kinds of CPython build: it only reads the dict and
an entry, and writes one item of the entry; with the GIL each of these is one C-level operation,
and on a free-threaded build ``dict`` and ``list`` lock themselves internally, so a reader never
sees a half-made change. A hit that races with an eviction returns the value it read, which was
valid. What is *not* exact under concurrent hits is the hit count: ``entry[1] += 1`` is a read
then a write, so two threads hitting the same entry at the same moment may count one hit.
``misses`` is always exact, and so are both counts in single-threaded use.
"""

from __future__ import annotations

from collections import deque, namedtuple
from collections.abc import Callable, Hashable
from typing import Any

from leaklab.memoize.inflight import NOTHING, Memo

CacheInfo = namedtuple(
    "CacheInfo", ["hits", "misses", "maxsize", "currsize"], module="leaklab.memoize"
)
CacheInfo.__doc__ = """What ``wrapper.cache_info()`` returns, like ``functools.lru_cache``'s.

``hits``: calls answered from the cache. ``misses``: calls that were not (each caller that waited
for a concurrent call of the same key counts one). ``maxsize``: the built-in store's bound, or the
``cache=`` object's ``maxsize``/``max``/``limit`` if it has one, else None. ``currsize``: entries
held now (expired ones are dropped first), or None if a ``cache=`` object has no ``len()``.
"""

# Layout of an entry of the built-in store; its slot is _GONE once it has left the store.
_VALUE, _HITS, _MARK, _EXPIRES, _KEY, _SLOT, _NEXT = range(7)
_GONE: Any = object()
_len = len  # bound once (see keys.py)


class BoundedMemo(Memo):
    """The built-in store: at most ``maxsize`` entries, CLOCK eviction, optional ``ttl``.

    ``data`` maps a key's slot to its entry, which links (``next``) to the next entry in the same
    slot (keys with equal hashes); ``size`` counts the entries.
    """

    __slots__ = ("_order", "_retired_hits", "clock", "data", "maxsize", "size", "ttl")

    def __init__(
        self,
        fn: Callable[..., Any],
        lock: Any,
        maxsize: int,
        ttl: float | None,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(fn, lock)
        self.maxsize = maxsize
        self.ttl = ttl
        self.clock = clock
        self.data: dict[Hashable, list[Any]] = {}
        self.size = 0
        # Entries in insertion order, the CLOCK hand at the left, made when first needed (a
        # cache that never fills never needs it). It may hold entries that have left the store
        # (their slot is _GONE): they are skipped when met, and dropped by _compact().
        self._order: deque[list[Any]] | None = None
        self._retired_hits = 0  # hits of entries no longer held

    @property
    def reader(self) -> dict[Hashable, list[Any]]:
        """What the generated hit path reads: the dict itself (see wrappers.py)."""
        return self.data

    def _find(self, slot: Hashable, key: Hashable) -> list[Any] | None:
        entry = self.data.get(slot)
        while entry is not None and not (entry[_KEY] is key or entry[_KEY] == key):
            entry = entry[_NEXT]
        return entry

    def _entries(self) -> list[list[Any]]:
        """Every entry held, chains included (under the lock)."""
        entries = []
        for entry in self.data.values():
            while entry is not None:
                entries.append(entry)
                entry = entry[_NEXT]
        return entries

    def lookup(self, slot: Hashable, key: Hashable) -> Any:
        entry = self._find(slot, key)
        if entry is None or (self.ttl is not None and entry[_EXPIRES] <= self.clock()):
            return NOTHING
        entry[_HITS] += 1
        return entry[_VALUE]

    def store(self, slot: Hashable, key: Hashable, value: Any) -> list[list[Any]]:
        data = self.data
        dropped: list[list[Any]] = []
        now = None
        if self.ttl is not None:
            now = self.clock()
            self._expire(now, dropped)
        old = self._find(slot, key)
        if old is not None:  # an expired entry being refreshed; its place in _order goes stale
            self._remove(old)
            dropped.append(old)
        else:
            while self.size >= self.maxsize:
                self._evict_one(now, dropped)
        expires = None if now is None else now + self.ttl  # type: ignore[operator]
        entry = [value, 0, 0, expires, key, slot, data.get(slot)]  # first of its slot
        data[slot] = entry
        self.size += 1
        order = self._order
        if order is not None:
            order.append(entry)
            if _len(order) > 2 * self.size + 16:
                self._compact()
        return dropped

    def _remove(self, entry: list[Any]) -> None:
        """Take a held entry out of ``data`` (by its slot: its key is not hashed again)."""
        data = self.data
        slot = entry[_SLOT]
        first = data[slot]
        if first is entry:
            if entry[_NEXT] is None:
                del data[slot]
            else:
                data[slot] = entry[_NEXT]
        else:
            while first[_NEXT] is not entry:
                first = first[_NEXT]
            first[_NEXT] = entry[_NEXT]
        entry[_SLOT], entry[_NEXT] = _GONE, None  # no longer held
        self.size -= 1
        self._retired_hits += entry[_HITS]

    def _ordered(self) -> deque[list[Any]]:
        order = self._order
        if order is None:  # a dict keeps insertion order: the hand starts at its first entry
            order = self._order = deque(self._entries())
        return order

    def _expire(self, now: float, dropped: list[list[Any]]) -> None:
        """Drop expired and stale entries from the hand's end, up to the first live one."""
        order = self._ordered()
        while order:
            entry = order[0]
            if entry[_SLOT] is not _GONE:
                if entry[_EXPIRES] > now:
                    return
                self._remove(entry)
                dropped.append(entry)
            order.popleft()

    def _evict_one(self, now: float | None, dropped: list[list[Any]]) -> None:
        """CLOCK: evict the oldest entry not hit since the hand last passed (expired: at once)."""
        order = self._ordered()
        while True:
            entry = order.popleft()
            if entry[_SLOT] is _GONE:  # stale
                continue
            hits = entry[_HITS]
            if hits != entry[_MARK] and (now is None or entry[_EXPIRES] > now):
                entry[_MARK] = hits  # a second chance
                order.append(entry)
                continue
            self._remove(entry)
            dropped.append(entry)
            return

    def _compact(self) -> None:
        if self._order is not None:
            self._order = deque(e for e in self._order if e[_SLOT] is not _GONE)

    def _drop_expired(self) -> list[list[Any]]:
        now = self.clock()
        expired = [e for e in self._entries() if e[_EXPIRES] <= now]
        for entry in expired:
            self._remove(entry)
        if expired:
            self._compact()
        return expired

    def info(self) -> CacheInfo:
        with self.lock:
            dropped = self._drop_expired() if self.ttl is not None else None
            hits = self._retired_hits + sum([e[_HITS] for e in self._entries()])
            info = CacheInfo(hits, self.misses, self.maxsize, self.size)
        del dropped
        return info

    def clear(self) -> None:
        with self.lock:
            old = self._entries()  # released after the lock: finalizers may call back in
            self.data.clear()  # in place: the generated hit path holds self.data
            self.size = 0
            self._order = None
            self._retired_hits = 0
            self.misses = 0
        del old


class ExternalMemo(Memo):
    """A ``cache=`` object as the store. Its ``set`` is called under this memo's lock, so a
    store that tolerates reads concurrent with one writer (like ``LimitableMap``) may be shared
    by threads; its ``get`` runs lock-free on the hit path. The store gets the keys themselves
    (ints, str, tuples of the arguments), and hashes them as it needs."""

    __slots__ = ("cache", "hits")

    def __init__(self, fn: Callable[..., Any], lock: Any, cache: Any) -> None:
        super().__init__(fn, lock)
        self.cache = cache
        self.hits = [0]  # a list, so that the generated hit path can count without `self`

    @property
    def reader(self) -> Callable[[Hashable, Any], Any]:
        """What the generated hit path calls: the cache's ``get`` (see wrappers.py)."""
        return self.cache.get  # type: ignore[no-any-return]

    def lookup(self, slot: Hashable, key: Hashable) -> Any:
        value = self.cache.get(key, NOTHING)
        if value is not NOTHING:
            self.hits[0] += 1
        return value

    def store(self, slot: Hashable, key: Hashable, value: Any) -> None:
        self.cache.set(key, value)

    def info(self) -> CacheInfo:
        maxsize, size = store_bounds(self.cache)
        return CacheInfo(self.hits[0], self.misses, maxsize, size)

    def clear(self) -> None:
        with self.lock:
            clear_store(self.cache)
            self.reset()

    def reset(self) -> None:
        """Zero the counters (the store is shared by the instances of a method)."""
        with self.lock:
            self.hits[0] = 0
            self.misses = 0


def store_bounds(cache: Any) -> tuple[int | None, int | None]:
    """A cache= object's bound (its ``maxsize``, ``max`` or ``limit``) and ``len()``, if any."""
    maxsize = None
    for name in ("maxsize", "max", "limit"):
        bound = getattr(cache, name, None)
        if isinstance(bound, int) and not isinstance(bound, bool):
            maxsize = bound
            break
    try:
        size: int | None = len(cache)
    except TypeError:
        size = None
    return maxsize, size


def clear_store(cache: Any) -> None:
    clear = getattr(cache, "clear", None)
    if not callable(clear):
        raise TypeError(
            f"cache_clear() needs a clear() method on the cache= object, and "
            f"{type(cache).__name__} has none: clear that object yourself"
        )
    clear()
