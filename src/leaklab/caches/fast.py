"""Speed-ups of LRUCache (chapter 01): faster subclasses, and the compiled methods put in place.

Nothing here changes what a cache does; ``lru.py`` is the whole algorithm. ``LRUCache(...)``
returns one of these private subclasses where its configuration allows (:func:`_specialised`),
and each only skips checks that the general class must make:

- :class:`_TimedLRUCache`, a default ttl without ``update_age_on_get``: its table holds
  ``(value, expires)`` tuples from the start and is never replaced, so its reads use it directly,
  and its ``set`` of a new key is one short block under the lock.
- :class:`_CountedLRUCache`, a count bound only: its ``set`` takes one lock, evicts at most one
  entry and has nothing to dispose of.

Where the compiled core is in use (``compiled.py``), its ``get`` replaces ``LRUCache.get``
(a plain hit or miss in one C call) and its writes replace these classes' ``set`` (a new key,
nothing expired). Each hands every case it does not handle to the Python method kept as
``_get_slow`` or ``_set_slow``. ``bench/bench_caches.py`` measures both ways, in one run.
"""

from __future__ import annotations

from typing import Any

from .arguments import _dispose_after_error, _Removed, _run_dispose
from .compiled import _core
from .entries import _MISSING
from .locking import _locked_read
from .lru import K, LRUCache, V


def _specialised(
    max_size: int | None, ttl: float | None, update_age_on_get: bool, dispose: Any
) -> type[LRUCache[Any, Any]]:
    """The class ``LRUCache(...)`` makes for this configuration (``__init__`` checks it after)."""
    if ttl is not None:
        if update_age_on_get is False:
            return _TimedLRUCache
    elif max_size is None and dispose is None:
        return _CountedLRUCache
    return LRUCache


class _TimedLRUCache(LRUCache[K, V]):
    """An :class:`LRUCache` made with a default ttl and without ``update_age_on_get``.

    ``LRUCache(...)`` returns one by itself. Its table holds ``(value, expires)`` tuples from the
    start and is never replaced, so the reads use it directly, without the checks that the
    general class needs.
    """

    __slots__ = ("_entries", "_move")  # the table and its move_to_end, fixed for life

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._entries = self._table[0]
        self._move = self._entries.move_to_end

    @_locked_read
    def get(self, key: K, default: Any = None) -> Any:
        try:
            value, expires = self._entries[key]
        except KeyError:
            next(self._misses)
            return default
        if expires <= self._clock():
            next(self._misses)
            self._remove_if_expired(key)
            return default
        try:  # noqa: SIM105 - contextlib.suppress would cost a context manager per hit
            self._move(key)
        except KeyError:  # evicted by another thread since we read it: still a hit
            pass
        next(self._hits)
        return value

    @_locked_read
    def peek(self, key: K, default: Any = None) -> Any:
        entry = self._entries.get(key, _MISSING)
        if entry is _MISSING:
            return default
        if entry[1] <= self._clock():
            self._remove_if_expired(key)
            return default
        return entry[0]

    @_locked_read
    def has(self, key: K) -> bool:
        entry = self._entries.get(key, _MISSING)
        if entry is _MISSING:
            return False
        if entry[1] <= self._clock():
            self._remove_if_expired(key)
            return False
        return True

    __contains__ = has

    def set(self, key: K, value: V, *, ttl: float | None = None) -> None:
        if ttl is not None or self._sizes is not None:
            LRUCache.set(self, key, value, ttl=ttl)
            return
        # Short path: the default ttl and a count bound. The value evicted, if any, stays
        # referenced (``evicted``) until the lock is released.
        evicted: tuple[Any, Any] | None = None
        removed: _Removed = []
        lock = self._lock
        lock.acquire()
        try:
            data = self._entries
            now = self._clock()
            if self._next_expiry <= now:
                self._purge(now, removed)
            if key in data:  # replacing: the general path (it finds nothing left to purge)
                self._store(key, value, self._ttl, 1, removed)
            else:
                if len(data) >= self._max:  # type: ignore[operator]  # no max_size: max is set
                    lru_key, lru = data.popitem(False)
                    evicted = (lru_key, lru[0])
                    self._evictions += 1
                    times = self._deadline_times
                    if times and times[0] is lru[1] and self._deadline_keys[0] is lru_key:
                        times.popleft()  # its deadline was the oldest: drop it now
                        self._deadline_keys.popleft()
                    if self._ttls:
                        self._ttls.pop(lru_key, None)
                expires = now + self._ttl  # type: ignore[operator]  # this class has a ttl
                data[key] = (value, expires)
                if expires < self._next_expiry:
                    self._next_expiry = expires
                keys = self._deadline_keys
                keys.append(key)
                self._deadline_times.append(expires)
                if len(keys) > 2 * len(data) + 64:
                    self._compact_deadlines()
        except BaseException as error:  # an unhashable key, a clock that raised...
            lock.release()
            if evicted is not None:
                removed.append((evicted[0], evicted[1], "evict"))
            _dispose_after_error(self._dispose, removed, error)
            raise
        lock.release()
        if self._dispose is not None:
            if evicted is not None:
                removed.append((evicted[0], evicted[1], "evict"))
            if removed:
                _run_dispose(self._dispose, removed)

    set.__doc__ = LRUCache.set.__doc__
    get.__doc__ = LRUCache.get.__doc__
    peek.__doc__ = LRUCache.peek.__doc__
    has.__doc__ = LRUCache.has.__doc__
    # The compiled set does the commonest case (a new key, nothing expired, no dispose) and hands
    # the rest to this.
    _set_slow = set
    if _core is not None:
        del get  # the compiled get of the base class is faster still
        set = _core.CacheCore._timed_set


class _CountedLRUCache(LRUCache[K, V]):
    """An :class:`LRUCache` made with a count bound only: no default ttl, no size, no dispose.

    ``LRUCache(...)`` returns one by itself. Its ``set`` without a ttl takes a short path: one
    lock, at most one eviction, nothing to dispose.
    """

    __slots__ = ()

    def set(self, key: K, value: V, *, ttl: float | None = None) -> None:
        if ttl is not None:
            LRUCache.set(self, key, value, ttl=ttl)
            return
        # Values that leave stay referenced (``_keep``) until the lock is released, so that their
        # finalizers never run under it.
        lock = self._lock
        lock.acquire()
        try:
            table = self._table
            data = table[0]
            if table[3]:  # a per-entry ttl was set earlier: entries are (value, expires) now
                _keep: Any = []  # no dispose in this class: what left is only kept
                self._store(key, value, None, 1, _keep)
            elif key in data:
                _keep = data[key]
                data[key] = value
                data.move_to_end(key)
            elif len(data) < self._max:  # type: ignore[operator]  # max is set in this class
                data[key] = value
            else:
                _keep = data.popitem(False)  # the least recently used; positional is faster
                self._evictions += 1
                data[key] = value
        finally:
            lock.release()

    set.__doc__ = LRUCache.set.__doc__
    # The compiled set does the same for a table of bare values and hands the rest to this.
    _set_slow = set
    if _core is not None:
        set = _core.CacheCore._counted_set


# The compiled get does a plain hit or miss itself, and hands every other case (an expired entry,
# update_age_on_get, keyword arguments) to the Python get of lru.py, kept as _get_slow.
LRUCache._get_slow = LRUCache.get  # type: ignore[attr-defined]
if _core is not None:
    del LRUCache.get  # reads go to the compiled get of the base class
