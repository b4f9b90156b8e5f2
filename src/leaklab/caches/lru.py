"""LRUCache, the bounded cache of chapter 01: the least-recently-used algorithm.

The chapter fixes its leaking service with this class. What holds after every operation:

- The entries live in one ``OrderedDict``, least recently used first: a hit moves its key to the
  end (``move_to_end``), an eviction pops the front (``popitem(last=False)``).
- ``len(cache) <= max`` and the total of ``size_of(key, value)`` is ``<= max_size``: to make room,
  expired entries go first, then the least recently used live ones.
- An entry is its bare value until a ttl is first used; from then on every entry is one
  ``(value, expires)`` tuple, so a reader gets a value and its deadline in one read. Expired
  entries are never returned nor counted as hits (``expiry.py`` keeps the deadlines).
- Every change is made under the cache's one lock; reads take none under the GIL (``locking.py``).
- Every entry that leaves (evicted, expired, replaced, deleted, cleared) is handed to ``dispose``
  exactly once, after the lock is released; so are the values, whose finalizers therefore never
  run under the lock (``arguments.py``).

``views.py`` adds the reads that leave recency and counters alone (``peek``, ``in``, ``len``,
``keys``, ``items``, ``stats``). The speed-ups live beside this module, which reads without them:
``fast.py`` holds faster subclasses for the two commonest configurations, and where the compiled
core was built (``compiled.py``, ``_core.c``) it is LRUCache's base class and its C ``get`` stands
in for the one here.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar, overload

from .arguments import (
    DisposeReason,
    _Change,
    _checked,
    _dispose_after_error,
    _entry_ttl,
    _Removed,
    _run_dispose,
    _size_of_entry,
)
from .compiled import _CORE_BASES, _slots_beside_core
from .entries import _MISSING, _NEVER, _items_of, _TableState
from .expiry import _Expiry
from .locking import _locked_read, _make_lock
from .views import _Views

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")


class LRUCache(*_CORE_BASES, _Expiry, _Views, Generic[K, V]):
    """A least-recently-used cache with an entry and/or size bound, expiry, and statistics.

    At least one bound is required: ``max`` (entries) or ``max_size`` (total of
    ``size_of(key, value)``). A new entry that would break a bound makes room: expired entries go
    first, then the least recently used. ``get`` marks an entry most recently used; ``peek``,
    ``has`` and ``in`` do not. Expired entries are never returned nor counted as hits; they are
    removed (reason ``"expire"``) when an operation meets them (there is no background thread),
    or all at once by :meth:`purge_stale`.

    Args:
        max: the most entries held, an int from 1 to ``sys.maxsize`` (no container holds more),
            or None for no count bound.
        max_size: the most total size held, an int >= 1 (no upper limit), or None for no size
            bound.
        size_of: ``size_of(key, value) -> int >= 1``, the size of an entry; called once, when it
            is set, outside the lock. Only with ``max_size``; the default is
            ``sys.getsizeof(value)``, the value's shallow size. It takes the key and the value:
            ``size_of=len`` is refused (write ``lambda key, value: len(value)``), and an error it
            raises carries a note naming ``size_of`` and the key.
        ttl: the default time to live of an entry in seconds (finite int or float > 0), or None
            for entries that never expire unless ``set`` gives them a ttl.
        update_age_on_get: if True, a ``get`` hit restarts the entry's ttl.
        dispose: ``dispose(key, value, reason)``, called once for every entry that leaves, after
            it has left and outside the lock; reason is ``"evict"``, ``"expire"``, ``"set"``
            (replaced by a different value), ``"delete"`` (``delete``, ``pop``) or ``"clear"``.
            An operation that fails still disposes of what left before its error, which then
            propagates; if dispose raises, the cache is consistent, the other calls of the same
            operation still run, and the first error reaches the caller (notes name the others).
        clock: a ``time.monotonic``-like function returning seconds; inject a fake to control
            time in tests.

    Raises:
        TypeError, ValueError: a bad argument, named in the message: no bound at all, ``size_of``
            without ``max_size``, a bool where an int is meant... (``arguments.py`` lists them).
            An int-like such as ``numpy.int64`` is accepted wherever an int is taken.

    It cannot be copied or pickled: it holds a lock, a clock, callbacks and deadlines on this
    process's clock, and a copy would dispose of the same values twice. It is safe to use from
    many threads at once (``locking.py`` tells how); ``clock`` and the keys' ``__hash__`` and
    ``__eq__`` run under the lock and must not call back into the cache. ``LRUCache(...)`` may
    return a private subclass specialised for its configuration (``fast.py``); it behaves the same.
    """

    # Every attribute of a cache; the compiled base class, where it is built, holds some of them.
    __slots__ = _slots_beside_core((
        "_clock", "_deadline_keys", "_deadline_times", "_dispose", "_evictions", "_expirations",
        "_heap", "_hits", "_lock", "_max", "_max_size", "_misses", "_next_expiry", "_seq",
        "_size_of", "_sizes", "_table", "_total_size", "_ttl", "_ttls", "_update_age_on_get",
    ))  # fmt: skip

    def __new__(
        cls,
        max: int | None = None,
        *,
        max_size: int | None = None,
        size_of: Callable[[K, V], int] | None = None,
        ttl: float | None = None,
        update_age_on_get: bool = False,
        dispose: Callable[[K, V, DisposeReason], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> LRUCache[K, V]:
        """A faster subclass of ``fast.py`` where one fits (subclasses are left alone)."""
        if cls is LRUCache:
            cls = _specialised(max_size, ttl, update_age_on_get, dispose)
        return super().__new__(cls)

    def __init__(
        self,
        max: int | None = None,
        *,
        max_size: int | None = None,
        size_of: Callable[[K, V], int] | None = None,
        ttl: float | None = None,
        update_age_on_get: bool = False,
        dispose: Callable[[K, V, DisposeReason], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        max, max_size, size_of, ttl = _checked(  # or a TypeError/ValueError naming the argument
            max, max_size, size_of, ttl, update_age_on_get, dispose, clock
        )
        self._max = max
        self._max_size = max_size
        self._size_of = size_of
        self._ttl = ttl
        self._update_age_on_get = update_age_on_get
        self._dispose = dispose
        self._clock = clock
        self._lock = _make_lock()
        self._hits = itertools.count()  # incremented without the lock: atomic C calls
        data: OrderedDict[Any, Any] = OrderedDict()
        self._table: _TableState = (data, data.move_to_end, self._hits, ttl is not None)
        self._sizes: dict[Any, int] | None = {} if max_size is not None else None
        self._total_size = 0
        # Deadlines (expiry.py): of the entries with the default ttl, in expiry order; of those
        # with their own ttl (key -> ttl), on a heap; and a lower bound on them all.
        self._deadline_keys: deque[Any] = deque()
        self._deadline_times: deque[float] = deque()
        self._ttls: dict[Any, float] = {}
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        self._next_expiry: float = _NEVER  # <= every live deadline
        self._misses = itertools.count()
        self._evictions = 0  # changed only under the lock
        self._expirations = 0

    # -- reads (lock-free on a GIL build) --------------------------------------------------------

    @_locked_read
    def get(self, key: K, default: Any = None) -> Any:
        """Return the live value for ``key`` and mark it most recently used, else ``default``.

        Counts a hit or a miss. An expired entry is removed (reason ``"expire"``) and is a miss.
        With ``update_age_on_get``, a hit restarts the entry's ttl.
        """
        data, move, hits, timed = self._table
        try:
            value = data[key]  # faster than data.get(key, _MISSING) on a hit, slower on a miss
        except KeyError:
            next(self._misses)
            return default
        if timed:
            if self._update_age_on_get:
                return self._get_refreshing(key, default)
            value, expires = value
            if expires is not _NEVER and expires <= self._clock():
                next(self._misses)
                self._remove_if_expired(key)
                return default
        try:  # noqa: SIM105 - contextlib.suppress would cost a context manager per hit
            move(key)
        except KeyError:  # evicted by another thread since we read it: still a hit
            pass
        next(hits)
        return value

    # -- writes ----------------------------------------------------------------------------------

    def set(self, key: K, value: V, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` as the most recently used entry.

        Room is made first: expired entries go, then least recently used live ones (reason
        ``"evict"``). A replaced value is disposed with reason ``"set"`` unless it is the same
        object.

        Args:
            ttl: this entry's time to live in seconds, overriding the cache's default.

        Raises:
            TypeError, ValueError: a bad ``ttl``, or ``size_of`` returned a bad size.
            ValueError: the entry alone is larger than ``max_size``; the cache is unchanged.
            Whatever the key's ``__hash__`` or ``__eq__``, ``size_of`` or the clock raise: the
            entries that left before it (expired, evicted) are disposed of all the same.
        """
        ttl = self._ttl if ttl is None else _entry_ttl(ttl, self._ttl)
        size = 1
        if self._size_of is not None:  # outside the lock: may be slow, may call back
            size = _size_of_entry(self._size_of, key, value, self._max_size)
        # As ``with _Change(self) as removed:`` does, but faster: what leaves stays referenced in
        # ``removed`` until the lock is released, so that no finalizer nor dispose runs under it.
        removed: _Removed = []
        lock = self._lock
        lock.acquire()
        try:
            self._store(key, value, ttl, size, removed)
        except BaseException as error:
            lock.release()
            _dispose_after_error(self._dispose, removed, error)
            raise
        lock.release()
        if removed and self._dispose is not None:
            _run_dispose(self._dispose, removed)

    def _store(
        self, key: Any, value: Any, ttl: float | None, size: int, removed: _Removed
    ) -> None:
        """Insert or replace under the lock; each ``(key, value, reason)`` that leaves goes into
        ``removed`` at once, for the caller to dispose of even if a later step raises (the key's
        ``__hash__`` runs at every dict operation). The steps on the key come before the
        bookkeeping that depends on them: after an error the new entry is in, or the old one is.
        """
        data, _, _, timed = self._table
        if ttl is not None and not timed:
            data = self._make_timed()
            timed = True
        now = 0.0
        if timed:
            now = self._clock()
            if self._next_expiry <= now:
                self._purge(now, removed)  # expired entries go first
        sizes = self._sizes
        old = data.get(key, _MISSING)
        old_size = 0
        if old is not _MISSING:
            if sizes is not None:
                old_size = sizes[key]
            data.move_to_end(key)  # so that making room never evicts the key being replaced
        self._make_room(old is _MISSING, size - old_size, removed)  # nothing left is expired
        # Store: a new key goes last; a replaced one was moved last above.
        expires = _NEVER if ttl is None else now + ttl
        entry = (value, expires) if timed else value
        if sizes is None:
            data[key] = entry
        else:
            sizes[key] = size
            self._total_size += size - old_size
            try:
                data[key] = entry
            except BaseException:  # the key's hash failed now: its size is not held after all
                self._total_size -= size - old_size
                if old is _MISSING:
                    sizes.pop(key, None)
                else:
                    sizes[key] = old_size
                raise
        if old is not _MISSING:  # the old entry has left
            old_value = old
            reason: DisposeReason = "set"
            if timed:
                old_value, old_expires = old
                if old_expires <= now:
                    reason = "expire"
                    self._expirations += 1
            if reason == "expire" or old_value is not value:
                removed.append((key, old_value, reason))
            if self._ttls and (ttl is None or ttl is self._ttl):
                self._ttls.pop(key, None)  # it had its own ttl; the new entry has not
        if timed and ttl is not None:
            self._track(key, ttl, expires)

    def _make_room(self, adding: bool, growth: int, removed: _Removed) -> None:
        """Evict least recently used entries until one more entry (if ``adding``) and ``growth``
        more size fit the bounds."""
        data, _, _, timed = self._table
        max_count, max_size, sizes = self._max, self._max_size, self._sizes
        while (adding and max_count is not None and len(data) >= max_count) or (
            max_size is not None and self._total_size + growth > max_size
        ):
            lru_key, lru = data.popitem(False)  # the front: the least recently used
            self._evictions += 1
            removed.append((lru_key, lru[0] if timed else lru, "evict"))
            if sizes is not None:
                self._total_size -= sizes.pop(lru_key)
            if timed:
                self._untrack_evicted(lru_key, lru[1])

    def _make_timed(self) -> OrderedDict[Any, Any]:
        """Switch to ``(value, expires)`` entries, once; readers see the new table atomically."""
        data = OrderedDict([(key, (value, _NEVER)) for key, value in _items_of(self._table[0])])
        self._table = (data, data.move_to_end, self._hits, True)
        return data

    def delete(self, key: K) -> bool:
        """Remove ``key``; return True if a live entry was removed (dispose reason ``"delete"``).

        An expired entry is removed with reason ``"expire"`` and False is returned.
        """
        return self._take(key)[0]

    @overload
    def pop(self, key: K) -> V: ...
    @overload
    def pop(self, key: K, default: T) -> V | T: ...

    def pop(self, key: K, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its live value (dispose reason ``"delete"``).

        If there is no live entry, return ``default``, or raise KeyError if none is given.
        """
        found, value = self._take(key)
        if found:
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    def _take(self, key: Any) -> tuple[bool, Any]:
        removed: _Removed = []  # as in set: _Change would cost a delete a third more
        try:
            with self._lock:
                data, _, _, timed = self._table
                now = self._clock() if timed else 0.0  # before anything leaves: it may raise
                entry = data.pop(key, _MISSING)
                if entry is _MISSING:
                    return False, None
                found = True
                value = entry
                if timed:
                    value, expires = entry
                    if expires <= now:
                        found = False
                        self._expirations += 1
                removed.append((key, value, "delete" if found else "expire"))
                if self._sizes is not None:
                    self._total_size -= self._sizes.pop(key)
                if timed:
                    self._untrack(key)
        except BaseException as error:
            _dispose_after_error(self._dispose, removed, error)
            raise
        if self._dispose is not None:
            _run_dispose(self._dispose, removed)
        return found, (value if found else None)

    def clear(self) -> None:
        """Remove every entry: live ones with dispose reason ``"clear"``, expired ones with
        ``"expire"``. The statistics' counters are kept."""
        with _Change(self) as removed:
            data, _, _, timed = self._table
            now = self._clock() if timed else 0.0  # before anything leaves: it may raise
            entries = _items_of(data)
            data.clear()
            self._forget_deadlines()
            if self._sizes is not None:
                self._sizes.clear()
            self._total_size = 0
            if timed:
                for key, (value, expires) in entries:
                    if expires <= now:
                        self._expirations += 1
                        removed.append((key, value, "expire"))
                    else:
                        removed.append((key, value, "clear"))
            else:
                removed.extend((key, value, "clear") for key, value in entries)

    def purge_stale(self) -> int:
        """Remove every expired entry now (dispose reason ``"expire"``); return how many."""
        with _Change(self) as removed:
            self._purge_due(removed)
        return len(removed)

    def __reduce_ex__(self, protocol: object) -> Any:
        """Refuse ``copy.copy``, ``copy.deepcopy`` and pickle, alike on every build."""
        raise TypeError(
            f"LRUCache cannot be copied or pickled ({type(self).__name__}): it holds a lock, a "
            "clock, callbacks and deadlines on this process's clock, and a copy would dispose "
            "of the same values twice; make a new LRUCache with the same arguments and set "
            "what you need from cache.items() (most recently used first)"
        )


# The faster subclasses that __new__ picks subclass LRUCache, so they are imported once it exists.
from .fast import _specialised  # noqa: E402
