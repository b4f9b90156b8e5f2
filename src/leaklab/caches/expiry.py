"""The expiry policy of LRUCache (chapter 01): deadlines, and removing what has run out.

Once a ttl is in play, every entry of the cache is a ``(value, expires)`` tuple (``lru.py``).
Finding the expired ones without looking at them all is the work of this module:

- entries with the cache's default ttl expire in the order they were set (or refreshed): two
  parallel deques, ``_deadline_keys`` and ``_deadline_times`` (the entry's own float object),
  16 bytes an entry;
- entries with their own ttl: ``_ttls`` (key -> ttl) and a heap ``_heap`` of
  ``(deadline, seq, key)``;
- ``_next_expiry`` is at most every live deadline, so "is anything expired?" is one float
  comparison.

A queued item goes stale when its entry leaves or gets a new deadline: nothing is taken out of the
middle of a queue. Stale items are dropped when they reach the front, or by compaction, which keeps
each queue to about twice the live entries it tracks plus 64 (so at most that many removed keys
linger). There is no background thread: expired entries go when an operation meets them, when
room is needed, or on :meth:`LRUCache.purge_stale`.

:class:`_Expiry` is a base class of :class:`LRUCache` that holds no state of its own: its methods
work on the cache's attributes, with the cache's lock held unless a docstring says otherwise.
"""

from __future__ import annotations

import heapq
from typing import Any

from .arguments import _Change, _dispose_after_error, _Removed, _run_dispose
from .entries import _NEVER


class _Expiry:
    """The deadline bookkeeping of :class:`LRUCache` (see the module docstring)."""

    __slots__ = ()
    # Declared by LRUCache (in its slots, or in the compiled base class):
    _table: Any
    _lock: Any
    _clock: Any
    _ttl: Any
    _ttls: dict[Any, float]
    _heap: list[tuple[float, int, Any]]
    _seq: Any
    _deadline_keys: Any
    _deadline_times: Any
    _next_expiry: float
    _sizes: dict[Any, int] | None
    _total_size: int
    _expirations: int
    _hits: Any
    _misses: Any
    _dispose: Any

    # -- removing what has expired ---------------------------------------------------------------

    def _purge_due(self, removed: _Removed) -> None:
        """``_purge`` if a ttl is in play and anything may have expired."""
        if self._table[3]:
            now = self._clock()
            if self._next_expiry <= now:
                self._purge(now, removed)

    def _purge(self, now: float, removed: _Removed) -> None:
        """Remove every entry whose deadline is <= ``now``; reset the lower bound."""
        data = self._table[0]
        keys = self._deadline_keys
        times = self._deadline_times
        while times and times[0] <= now:
            times.popleft()
            key = keys.popleft()
            entry = data.get(key)  # a (value, expires) tuple, or None
            if entry is not None and entry[1] <= now:  # else stale: the entry lives on
                del data[key]
                self._forget_expired(key, entry[0], removed)
        heap = self._heap
        while heap and heap[0][0] <= now:
            key = heapq.heappop(heap)[2]
            entry = data.get(key)
            if entry is not None and entry[1] <= now:
                del data[key]
                self._forget_expired(key, entry[0], removed)
        next_expiry = times[0] if times else _NEVER
        if heap and heap[0][0] < next_expiry:
            next_expiry = heap[0][0]
        self._next_expiry = next_expiry

    def _remove_if_expired(self, key: Any) -> None:
        """Remove ``key`` if its entry has expired (takes the lock; a reader's slow path)."""
        with _Change(self) as removed:
            data = self._table[0]
            entry = data.get(key)
            if entry is not None and entry[1] <= self._clock():
                del data[key]
                self._forget_expired(key, entry[0], removed)

    def _forget_expired(self, key: Any, value: Any, removed: _Removed) -> None:
        """Account for an expired entry already taken out of the table (it is in ``removed``
        first, so that it is disposed of even if the bookkeeping after raises)."""
        removed.append((key, value, "expire"))
        self._expirations += 1
        if self._sizes is not None:
            self._total_size -= self._sizes.pop(key)
        self._untrack(key)

    def _untrack(self, key: Any) -> None:
        """Forget that ``key`` has its own ttl; its queued deadlines go stale (dropped later)."""
        if self._ttls:
            self._ttls.pop(key, None)

    def _untrack_evicted(self, key: Any, expires: float) -> None:
        """``_untrack`` for the least recently used entry, just evicted.

        When it is also the oldest deadline (as in a stream of new keys), drop that at once
        rather than leaving a stale item at the front.
        """
        times = self._deadline_times
        if times and times[0] is expires and self._deadline_keys[0] is key:
            times.popleft()
            self._deadline_keys.popleft()
        if self._ttls:
            self._ttls.pop(key, None)

    def _forget_deadlines(self) -> None:
        """Drop every queued deadline (the cache is being cleared)."""
        self._deadline_keys.clear()
        self._deadline_times.clear()
        self._ttls.clear()
        self._heap.clear()
        self._next_expiry = _NEVER

    # -- queueing deadlines ----------------------------------------------------------------------

    def _track(self, key: Any, ttl: float, expires: float) -> None:
        """Queue the deadline of the entry just stored under ``key`` with ``ttl``."""
        if expires < self._next_expiry:
            self._next_expiry = expires
        if ttl is self._ttl:
            self._push_default_deadline(key, expires)
        else:
            self._ttls[key] = ttl
            self._push_deadline(expires, key)

    def _push_default_deadline(self, key: Any, expires: float) -> None:
        keys = self._deadline_keys
        keys.append(key)
        self._deadline_times.append(expires)
        if len(keys) > 2 * len(self._table[0]) + 64:
            self._compact_deadlines()

    def _compact_deadlines(self) -> None:
        """Drop the stale items of the deadline queue: O(n), once every n or so pushes."""
        keys = self._deadline_keys
        times = self._deadline_times
        data = self._table[0]
        seen = set()
        live: list[tuple[Any, float]] = []
        for item in reversed(list(zip(keys, times, strict=True))):  # newest first
            if item[0] in seen:  # an older deadline of a key queued again since: stale
                continue
            seen.add(item[0])
            entry = data.get(item[0])
            if entry is not None and entry[1] is item[1]:
                live.append(item)
        live.reverse()
        keys.clear()
        keys.extend(key for key, _ in live)
        times.clear()
        times.extend(expires for _, expires in live)

    def _push_deadline(self, expires: float, key: Any) -> None:
        """Queue the deadline of an entry with its own ttl on the heap."""
        heap = self._heap
        heapq.heappush(heap, (expires, next(self._seq), key))
        if len(heap) > 2 * len(self._ttls) + 64:  # mostly stale: compact, O(n) per n pushes
            data = self._table[0]
            ttls = self._ttls
            seen = set()
            live = []
            for item in sorted(heap, key=lambda item: item[1], reverse=True):  # newest first
                if item[2] in seen:
                    continue
                seen.add(item[2])
                entry = data.get(item[2])
                if item[2] in ttls and entry is not None and entry[1] is item[0]:
                    live.append(item)
            heap[:] = live
            heapq.heapify(heap)

    # -- update_age_on_get -----------------------------------------------------------------------

    def _get_refreshing(self, key: Any, default: Any) -> Any:
        """``get`` with ``update_age_on_get``: it writes a new deadline, so it takes the lock.

        A read path: it handles the lock and disposal itself, which ``_Change`` would slow down.
        """
        removed: _Removed = []
        try:
            with self._lock:
                data = self._table[0]
                entry = data.get(key)
                if entry is None:
                    next(self._misses)
                    return default
                value, expires = entry
                if expires is not _NEVER:
                    now = self._clock()
                    if expires <= now:
                        next(self._misses)
                        del data[key]
                        self._forget_expired(key, value, removed)
                        value = default
                    else:
                        own_ttl = self._ttls.get(key)
                        if own_ttl is None:
                            expires = now + self._ttl
                            data[key] = (value, expires)
                            self._push_default_deadline(key, expires)
                        else:
                            expires = now + own_ttl
                            data[key] = (value, expires)
                            self._push_deadline(expires, key)
                if not removed:
                    data.move_to_end(key)
                    next(self._hits)
        except BaseException as error:
            _dispose_after_error(self._dispose, removed, error)
            raise
        if removed and self._dispose is not None:
            _run_dispose(self._dispose, removed)
        return value
