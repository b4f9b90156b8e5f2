"""Bounded caches: the fixes of chapter 01, "Memory is a costly cache".

Chapter 01 (``notebooks/01_caches.ipynb``) shows a service that caches in a module-level ``dict``
and grows without bound, and then fixes it with the two structures in this module:

- :class:`LimitableMap`, the chapter's FIFO map: once ``limit`` keys are held, the key inserted
  first is evicted. Small and obvious, but it evicts hot keys as readily as cold ones, which the
  chapter measures as a poor hit ratio on a skewed key stream.
- :class:`LRUCache`, a real cache with a complete expiry policy: a bound on the number of entries
  and/or on their total size, least-recently-used eviction, a time-to-live per cache or per
  entry, a ``dispose`` callback and hit/miss statistics. It is safe to share between threads.

How :class:`LRUCache` is built, and why it is fast
--------------------------------------------------
The entries live in one :class:`collections.OrderedDict` in recency order, so a hit is one C-level
``move_to_end`` and an eviction one C-level ``popitem``. Entries of a cache that has never seen a
ttl are stored as bare values; once a ttl is in play each entry is an exact ``(value, expires)``
tuple, so that a reader sees the value and its deadline in one atomic read (and tuples of untracked
objects cost the cyclic collector nothing, which is the chapter's point). Expiry is tracked on the
side: entries with the cache's default ttl in a queue in deadline order (16 bytes an entry),
entries with their own ttl in a heap; a lower bound on the earliest deadline makes "is anything
expired?" one float comparison. ``LRUCache(...)`` picks a specialised private class for the two
common configurations (a count bound only; a default ttl), whose hot paths skip the checks the
general class needs. ``bench/bench_caches.py`` measures all this against cachetools, cachebox,
``functools.lru_cache`` and a plain dict.

The hottest paths are also compiled, when a C compiler was there at install time: the optional
extension ``leaklab._cachecore`` (``src/leaklab/_cachecore.c``, about 650 lines of C) is the base
class of :class:`LRUCache` and provides ``get`` for a plain hit or miss, and the common cases of
``set`` for the two specialised configurations (a count bound only; a default ttl without
``dispose``). A Python frame around a few C calls costs about as much as the calls themselves,
and these calls are what an exact LRU cache cannot do without. Every other case is handed to the
Python code here (``_get_slow``, ``_set_slow``), which is also the whole implementation where the
extension is missing. :data:`COMPILED` tells which is in use; the environment variable
``LEAKLAB_PURE_PYTHON=1`` turns the extension off, and the tests run every behaviour both ways.

Thread safety: every operation that changes the cache's contents (``set``, evictions, expiry,
``delete``, ``pop``, ``clear`` and ``get`` with ``update_age_on_get``) holds one
:class:`threading.Lock`. On a CPython build with the GIL, the hit path of ``get``, ``peek`` and
``has`` takes no lock: it is a few single C-level ``OrderedDict`` operations and
``itertools.count`` increments, each of which runs whole under the GIL (the compiled ``get`` does
the same steps, and holds references to what it read while a key's ``__eq__`` may run). An entry is
one object (a value, or a ``(value, expires)`` tuple) replaced in one step, so a reader sees it
before or after a change, never half made; a ``get`` that races with an eviction returns the value
it read, as if it had come just before. Only a read that meets an expired entry takes the lock, to
remove it. On a free-threaded build (``sys._is_gil_enabled()`` false), every read takes the lock.
``dispose`` and ``size_of`` run outside the lock, and values that leave are released after it, so
callbacks and finalizers may use the cache.

Example:

>>> cache = LRUCache(2)
>>> cache.set("a", 1); cache.set("b", 2)
>>> cache.get("a")
1
>>> cache.set("c", 3)  # evicts "b", the least recently used
>>> cache.keys()
['c', 'a']
>>> cache.stats().evictions
1
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import operator
import os
import reprlib
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, overload

from leaklab._checks import check_callable, check_int, check_seconds

__all__ = ["CacheStats", "DisposeReason", "LRUCache", "LimitableMap"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")

DisposeReason = Literal["evict", "expire", "set", "delete", "clear"]
"""Why an entry left an :class:`LRUCache`, as passed to its ``dispose`` callback."""

_MISSING: Any = object()  # "no such entry"; never stored


def _gil_enabled() -> bool:
    check = getattr(sys, "_is_gil_enabled", None)  # 3.13+
    return True if check is None else bool(check())


# On a free-threaded build the lock-free reads are not safe: every read takes the lock, which then
# must be re-entrant because a read that finds an expired entry takes it again to remove it.
_READS_TAKE_LOCK = not _gil_enabled()
_make_lock: Callable[[], Any] = threading.RLock if _READS_TAKE_LOCK else threading.Lock


def _load_core() -> Any:
    """The compiled read path (``leaklab._cachecore``), or None to run everything in Python.

    None when the extension was not built (no C compiler at install time), on a free-threaded
    build (its reads are lock-free, which is only safe under the GIL), or when the environment
    variable ``LEAKLAB_PURE_PYTHON`` is set to a non-empty value (the tests run both paths).
    """
    if _READS_TAKE_LOCK or os.environ.get("LEAKLAB_PURE_PYTHON"):
        return None
    try:
        from leaklab import _cachecore
    except ImportError:
        return None
    return _cachecore


_core = _load_core()
COMPILED: bool = _core is not None
"""Whether :class:`LRUCache` reads through the compiled ``get`` of ``leaklab._cachecore``."""

# The deadline of an entry that does not expire, compared by identity (the compiled read uses
# the same object).
_NEVER: float = _core.NEVER if _core is not None else math.inf
_CORE_BASES: tuple[type, ...] = (_core.CacheCore,) if _core is not None else ()
# The attributes the compiled code uses live in its base class; without it, they are slots here.
_CORE_SLOTS = (
    ()
    if _core is not None
    else (
        "_clock",
        "_deadline_keys",
        "_deadline_times",
        "_dispose",
        "_evictions",
        "_lock",
        "_max",
        "_misses",
        "_next_expiry",
        "_sizes",
        "_table",
        "_ttl",
        "_ttls",
        "_update_age_on_get",
    )
)


def _locked_read(method: Callable[..., T]) -> Callable[..., T]:
    """Return ``method`` as is on a GIL build; on a free-threaded build, run it under the lock."""
    if not _READS_TAKE_LOCK:
        return method

    def locked(self: LRUCache[Any, Any], *args: Any, **kwargs: Any) -> T:
        with self._lock:
            return method(self, *args, **kwargs)

    return functools.update_wrapper(locked, method)  # name, doc and signature (via __wrapped__)


# --------------------------------------------------------------------------------------------
# LimitableMap


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


# --------------------------------------------------------------------------------------------
# LRUCache


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


_Removed = list[tuple[Any, Any, DisposeReason]]  # entries that left, for dispose

# (entries in recency order, least recent first; their move_to_end, bound once because that is
# faster to call than a method looked up each time; the hit counter, as a local is faster than
# an attribute; whether the entries are (value, expires) tuples).
_TableState = tuple["OrderedDict[Any, Any]", Callable[[Any], None], "itertools.count[int]", bool]


def _table_state(
    data: OrderedDict[Any, Any], hits: itertools.count[int], *, timed: bool
) -> _TableState:
    return (data, data.move_to_end, hits, timed)


def _items_of(data: OrderedDict[Any, Any]) -> list[tuple[Any, Any]]:
    """``list(data.items())``, with the lock held but lock-free readers possibly running.

    The copy is one C-level loop, which readers cannot interleave with unless Python code runs
    inside it (a key's ``__eq__`` on a hash collision, a finalizer run by the collector); then
    the iterator sees their reordering and raises RuntimeError, and we copy again.
    """
    while True:
        try:
            return list(data.items())
        except RuntimeError:
            continue


def _count_value(counter: itertools.count[int]) -> int:
    """The next value an ``itertools.count()`` would return, i.e. how many times it counted."""
    text = repr(counter)  # "count(42)"; itertools.count has no public read accessor
    return int(text[text.index("(") + 1 : -1])


class LRUCache(*_CORE_BASES, Generic[K, V]):
    """A least-recently-used cache with an entry and/or size bound, expiry, and statistics.

    At least one bound is required: ``max`` (entries) or ``max_size`` (total of
    ``size_of(key, value)``). When a new entry would break a bound, expired entries are removed
    first, then the least recently used live entries. ``get`` marks an entry most recently used;
    ``peek``, ``has`` and ``in`` do not. Expired entries are never returned, never count as hits,
    and are removed (reason ``"expire"``) whenever an operation meets them or room is needed;
    there is no background thread. :meth:`purge_stale` removes them all at once.

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
        dispose: ``dispose(key, value, reason)``, called after an entry has left the cache and
            outside the lock, with reason one of ``"evict"``, ``"expire"``, ``"set"`` (replaced by
            a different value), ``"delete"`` (``delete`` or ``pop``), ``"clear"``. Every entry
            that leaves is disposed of exactly once, even when the operation then fails (a
            ``set`` whose key turns out unhashable after expired entries were purged): the
            operation's own error propagates, after the dispose calls. If dispose raises, the
            cache is already consistent and the remaining dispose calls of the same operation
            still run; then the first exception propagates to the caller of that operation (with
            a note for every further one).
        clock: a ``time.monotonic``-like function returning seconds; inject a fake to control
            time in tests.

    Raises:
        TypeError: a count or size is a bool or not an int; ``ttl`` is a bool, a string or not a
            number; ``update_age_on_get`` is not a bool; a callback is not callable;
            ``size_of`` cannot be called with two arguments.
        ValueError: no bound given (``ttl`` alone bounds nothing); ``size_of`` without
            ``max_size``; a count or size below 1; ``max`` above ``sys.maxsize``; ``ttl`` not
            finite and > 0.

    Wherever an int is taken (``max``, ``max_size``, a size, a ttl), an int-like such as
    ``numpy.int64`` is accepted (``operator.index`` is the rule); a bool or a float is not an int.

    An LRUCache cannot be copied (``copy.copy``, ``copy.deepcopy``) or pickled: it holds a lock,
    a clock, callbacks and deadlines on this process's clock, and a copy would dispose of the same
    values twice. Make a new one and set what you need (``cache.items()``).

    It is safe to use from many threads at once (see the module docstring for how). ``clock``
    and the keys' ``__hash__``/``__eq__`` run under the lock and must not call back into the
    cache.

    ``LRUCache(...)`` returns an instance of a private subclass specialised for its
    configuration when one applies (``isinstance(cache, LRUCache)`` holds); the behaviour is
    the same.
    """

    __slots__ = (
        "_expirations",
        "_heap",
        "_hits",
        "_max_size",
        "_seq",
        "_size_of",
        "_total_size",
        *_CORE_SLOTS,
    )

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
        """Pick the implementation from the configuration (``__init__`` then checks it).

        A cache with a default ttl and without ``update_age_on_get`` is a
        :class:`_TimedLRUCache`, whose reads skip the checks; one with only a count bound is a
        :class:`_CountedLRUCache`, whose ``set`` has a short path. Subclasses are left alone.
        """
        if cls is LRUCache:
            if ttl is not None:
                if update_age_on_get is False:
                    cls = _TimedLRUCache
            elif max_size is None and dispose is None:
                cls = _CountedLRUCache
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

        self._max = max
        self._max_size = max_size
        self._size_of = size_of
        self._ttl = ttl
        self._update_age_on_get = update_age_on_get
        self._dispose = dispose
        self._clock = clock

        self._lock = _make_lock()
        self._hits = itertools.count()  # incremented without the lock: atomic C calls
        # The table: replaced as a whole, once, when a ttl first appears, so that a lock-free
        # reader always sees the entries together with how to read them.
        self._table: _TableState = _table_state(OrderedDict(), self._hits, timed=ttl is not None)
        self._sizes: dict[Any, int] | None = {} if max_size is not None else None
        self._total_size = 0
        # Deadlines of entries with the default ttl, oldest first (their expiry order).
        # Entries with the default ttl, in the order they were set (or refreshed), which is their
        # expiry order: two parallel deques of keys and deadlines (the entry's own float
        # object), 16 bytes an entry. An item goes stale when its entry leaves or gets a new
        # deadline; stale items are dropped when they reach the front, or by compaction, which
        # keeps them to about len(cache) + 64 (so at most that many removed keys linger).
        self._deadline_keys: deque[Any] = deque()
        self._deadline_times: deque[float] = deque()
        # Entries with their own ttl: key -> ttl, and a heap of (deadline, seq, key) with stale
        # items (from refreshes and removals) skipped when popped and dropped by compaction.
        self._ttls: dict[Any, float] = {}
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        self._next_expiry: float = _NEVER  # <= every live deadline

        self._misses = itertools.count()
        self._evictions = 0  # changed only under the lock
        self._expirations = 0

    # -- configuration ---------------------------------------------------------------------

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

    # The compiled ``CacheCore.get`` handles a plain hit or miss itself and hands every other
    # case (an expired entry, ``update_age_on_get``, keyword arguments) to this method.
    _get_slow = get
    if _core is not None:
        del get  # reads go to the compiled get of the base class

    @_locked_read
    def peek(self, key: K, default: Any = None) -> Any:
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
                self._remove_if_expired(key)
                return default
        return value

    @_locked_read
    def has(self, key: K) -> bool:
        """Whether a live entry for ``key`` is held; does not mark it used nor count a hit."""
        data, _, _, timed = self._table
        value = data.get(key, _MISSING)
        if value is _MISSING:
            return False
        if timed:
            expires = value[1]
            if expires is not _NEVER and expires <= self._clock():
                self._remove_if_expired(key)
                return False
        return True

    __contains__ = has

    def __len__(self) -> int:
        """The number of live entries (expired ones are removed first)."""
        data, _, _, timed = self._table
        if timed and self._next_expiry <= self._clock():
            self.purge_stale()
        return len(data)

    # -- writes ------------------------------------------------------------------------------

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
        # Values that leave stay referenced (``removed``) until the lock is released, so that
        # neither their finalizers nor ``dispose`` ever run under it.
        if ttl is None:
            ttl = self._ttl
        else:
            ttl = check_seconds("ttl", ttl, int_like=True)
            if ttl == self._ttl:
                ttl = self._ttl  # the default's own object: tracked in deadline order
        size = 1
        size_of = self._size_of
        if size_of is not None:  # outside the lock: may be slow, may call back
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
            if size < 1 or size > self._max_size:  # type: ignore[operator]  # size_of: max_size
                self._refuse_size(key, size)
        removed: _Removed = []
        lock = self._lock
        lock.acquire()
        try:
            self._store(key, value, ttl, size, removed)
        except BaseException as error:
            lock.release()
            self._dispose_after_error(removed, error)
            raise
        lock.release()
        if removed and self._dispose is not None:
            self._run_dispose(removed)

    def _refuse_size(self, key: Any, size: int) -> None:
        if size < 1:
            raise ValueError(
                f"size_of(key, value) must return an int >= 1, got {size!r} for key {_shown(key)}"
            )
        raise ValueError(
            f"entry for key {_shown(key)} has size {size}, larger than max_size="
            f"{self._max_size}; the cache is unchanged"
        )

    def _store(
        self, key: Any, value: Any, ttl: float | None, size: int, removed: _Removed
    ) -> None:
        """Insert or replace under the lock; append each ``(key, value, reason)`` that leaves to
        ``removed`` as it leaves.

        A step may raise after entries have left (the key's ``__hash__`` runs at every dict
        operation, and may fail only now): the caller still disposes of what is in ``removed``.
        The steps on the key come before the bookkeeping that depends on them, so that an error
        leaves the cache consistent: the new entry is in, or the old one (if any) is still there.
        """
        data, _, _, timed = self._table
        if ttl is not None and not timed:
            data = self._make_timed()
            timed = True
        now = 0.0
        if timed:
            now = self._clock()
            if self._next_expiry <= now:
                self._purge(now, removed)
        sizes = self._sizes
        old = data.get(key, _MISSING)
        old_size = 0
        if old is not _MISSING:
            if sizes is not None:
                old_size = sizes[key]
            data.move_to_end(key)  # so that making room never evicts the key being replaced
        # Make room, least recently used first (nothing left is expired).
        if sizes is None:  # a count bound only: at most one entry to evict
            if old is _MISSING and len(data) >= self._max:  # type: ignore[operator]
                lru_key, lru = data.popitem(False)
                self._evictions += 1
                if timed:
                    removed.append((lru_key, lru[0], "evict"))
                    # When it is also the oldest deadline (as in a stream of new keys), drop
                    # that at once rather than leave a stale item at the front.
                    times = self._deadline_times
                    if times and times[0] is lru[1] and self._deadline_keys[0] is lru_key:
                        times.popleft()
                        self._deadline_keys.popleft()
                    if self._ttls:
                        self._ttls.pop(lru_key, None)
                else:
                    removed.append((lru_key, lru, "evict"))
        else:
            max_count = self._max
            max_size = self._max_size
            while (max_count is not None and old is _MISSING and len(data) >= max_count) or (
                self._total_size - old_size + size > max_size  # type: ignore[operator]
            ):
                lru_key, lru = data.popitem(False)
                self._evictions += 1
                if timed:
                    removed.append((lru_key, lru[0], "evict"))
                    self._total_size -= sizes.pop(lru_key)
                    self._untrack_evicted(lru_key, lru[1])
                else:
                    removed.append((lru_key, lru, "evict"))
                    self._total_size -= sizes.pop(lru_key)
        # Store: a new key goes last; a replaced one was moved last above.
        if timed:
            expires = _NEVER if ttl is None else now + ttl
            entry = (value, expires)
        else:
            entry = value
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
            reason: DisposeReason
            if timed:
                old_value, old_expires = old
                if old_expires <= now:
                    reason = "expire"
                    self._expirations += 1
                else:
                    reason = "set"
            else:
                old_value, reason = old, "set"
            if reason == "expire" or old_value is not value:
                removed.append((key, old_value, reason))
            if self._ttls and (ttl is None or ttl is self._ttl):
                self._ttls.pop(key, None)  # it had its own ttl; the new entry has not
        if timed and ttl is not None:
            if expires < self._next_expiry:
                self._next_expiry = expires
            if ttl is self._ttl:
                keys = self._deadline_keys
                keys.append(key)
                self._deadline_times.append(expires)
                if len(keys) > 2 * len(data) + 64:
                    self._compact_deadlines()
            else:
                self._ttls[key] = ttl
                self._push_deadline(expires, key)

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
        removed: _Removed = []
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
            self._dispose_after_error(removed, error)
            raise
        if self._dispose is not None:
            self._run_dispose(removed)
        return found, (value if found else None)

    def clear(self) -> None:
        """Remove every entry: live ones with dispose reason ``"clear"``, expired ones with
        ``"expire"``. The statistics' counters are kept."""
        with self._lock:
            data, _, _, timed = self._table
            now = self._clock() if timed else 0.0  # before anything leaves: it may raise
            entries = _items_of(data)
            data.clear()
            self._deadline_keys.clear()
            self._deadline_times.clear()
            self._ttls.clear()
            self._heap.clear()
            self._next_expiry = _NEVER
            if self._sizes is not None:
                self._sizes.clear()
            self._total_size = 0
            removed: _Removed = []
            if timed:
                for key, (value, expires) in entries:
                    if expires <= now:
                        self._expirations += 1
                        removed.append((key, value, "expire"))
                    else:
                        removed.append((key, value, "clear"))
            else:
                removed.extend((key, value, "clear") for key, value in entries)
        if self._dispose is not None:
            self._run_dispose(removed)

    def purge_stale(self) -> int:
        """Remove every expired entry now (dispose reason ``"expire"``); return how many."""
        removed: _Removed = []
        try:
            with self._lock:
                if self._table[3]:
                    now = self._clock()
                    if self._next_expiry <= now:
                        self._purge(now, removed)
        except BaseException as error:
            self._dispose_after_error(removed, error)
            raise
        if removed and self._dispose is not None:
            self._run_dispose(removed)
        return len(removed)

    # -- snapshots ---------------------------------------------------------------------------

    def keys(self) -> list[K]:
        """The keys of the live entries, most recently used first (a snapshot list)."""
        return [key for key, _ in self._snapshot()]

    def items(self) -> list[tuple[K, V]]:
        """The live ``(key, value)`` pairs, most recently used first (a snapshot list)."""
        return self._snapshot()

    def stats(self) -> CacheStats:
        """A consistent snapshot of the counters, after removing expired entries."""
        self.purge_stale()
        with self._lock:
            data = self._table[0]
            size = len(data)
            return CacheStats(
                hits=_count_value(self._hits),
                misses=_count_value(self._misses),
                evictions=self._evictions,
                expirations=self._expirations,
                size=size,
                total_size=self._total_size if self._sizes is not None else size,
            )

    def _snapshot(self) -> list[tuple[Any, Any]]:
        removed: _Removed = []
        try:
            with self._lock:
                data, _, _, timed = self._table
                if timed:
                    now = self._clock()
                    if self._next_expiry <= now:
                        self._purge(now, removed)
                pairs = _items_of(data)
        except BaseException as error:
            self._dispose_after_error(removed, error)
            raise
        pairs.reverse()
        if removed and self._dispose is not None:
            self._run_dispose(removed)
        if timed:
            return [(key, value) for key, (value, _) in pairs]
        return pairs

    def __repr__(self) -> str:
        return (
            f"LRUCache(max={self._max}, max_size={self._max_size}, ttl={self._ttl}, "
            f"len={len(self._table[0])})"
        )

    # -- internals (called with the lock held unless noted) ----------------------------------

    def _make_timed(self) -> OrderedDict[Any, Any]:
        """Switch to ``(value, expires)`` entries, once; readers see the new table atomically."""
        data = OrderedDict([(key, (value, _NEVER)) for key, value in _items_of(self._table[0])])
        self._table = _table_state(data, self._hits, timed=True)
        return data

    def _get_refreshing(self, key: Any, default: Any) -> Any:
        """``get`` with ``update_age_on_get``: it writes a new deadline, so it takes the lock."""
        removed: _Removed = []
        try:
            with self._lock:
                data = self._table[0]
                entry = data.get(key, _MISSING)
                if entry is _MISSING:
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
                            expires = now + self._ttl  # type: ignore[operator]  # has a ttl
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
            self._dispose_after_error(removed, error)
            raise
        if removed and self._dispose is not None:
            self._run_dispose(removed)
        return value

    def _remove_if_expired(self, key: Any) -> None:
        """Remove ``key`` if its entry has expired (takes the lock; a reader's slow path)."""
        removed: _Removed = []
        try:
            with self._lock:
                data = self._table[0]
                entry = data.get(key, _MISSING)
                if entry is not _MISSING and entry[1] <= self._clock():
                    del data[key]
                    self._forget_expired(key, entry[0], removed)
        except BaseException as error:
            self._dispose_after_error(removed, error)
            raise
        if removed and self._dispose is not None:
            self._run_dispose(removed)

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
            entry = data.get(item[0], _MISSING)
            if entry is not _MISSING and entry[1] is item[1]:
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
                entry = data.get(item[2], _MISSING)
                if item[2] in ttls and entry is not _MISSING and entry[1] is item[0]:
                    live.append(item)
            heap[:] = live
            heapq.heapify(heap)

    def _purge(self, now: float, removed: _Removed) -> None:
        """Remove every entry whose deadline is <= ``now``; reset the lower bound."""
        data = self._table[0]
        keys = self._deadline_keys
        times = self._deadline_times
        while times and times[0] <= now:
            times.popleft()
            key = keys.popleft()
            entry = data.get(key, _MISSING)
            if entry is not _MISSING and entry[1] <= now:  # else stale: the entry lives on
                del data[key]
                self._forget_expired(key, entry[0], removed)
        heap = self._heap
        while heap and heap[0][0] <= now:
            key = heapq.heappop(heap)[2]
            entry = data.get(key, _MISSING)
            if entry is not _MISSING and entry[1] <= now:
                del data[key]
                self._forget_expired(key, entry[0], removed)
        next_expiry = times[0] if times else _NEVER
        if heap and heap[0][0] < next_expiry:
            next_expiry = heap[0][0]
        self._next_expiry = next_expiry

    def _run_dispose(self, removed: _Removed) -> None:
        """Call ``dispose`` for each removed entry, outside the lock; re-raise the first error.

        Every call runs whatever the ones before raised (a KeyboardInterrupt or SystemExit
        included, which then wins over an ordinary error); further errors become notes.
        """
        dispose = self._dispose
        error: BaseException | None = None
        for key, value, reason in removed:
            try:
                dispose(key, value, reason)  # type: ignore[misc]  # set when called
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

    def _dispose_after_error(self, removed: _Removed, error: BaseException) -> None:
        """Dispose of what left the cache before ``error`` stopped an operation.

        The caller re-raises ``error``; an ordinary dispose error becomes a note on it.
        """
        if not removed or self._dispose is None:
            return
        try:
            self._run_dispose(removed)
        except Exception as exc:
            error.add_note(f"the entries that had left were disposed of; dispose raised {exc!r}")

    def __reduce_ex__(self, protocol: object) -> Any:
        """Refuse ``copy.copy``, ``copy.deepcopy`` and pickle, alike on every build."""
        raise TypeError(
            f"LRUCache cannot be copied or pickled ({type(self).__name__}): it holds a lock, a "
            "clock, callbacks and deadlines on this process's clock, and a copy would dispose "
            "of the same values twice; make a new LRUCache with the same arguments and set "
            "what you need from cache.items() (most recently used first)"
        )


def _shown(obj: object) -> str:
    """A short repr for an error message, which never raises."""
    try:
        return reprlib.repr(obj)
    except Exception:
        return f"<{type(obj).__name__} object>"


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


def _default_size_of(key: object, value: object) -> int:
    """The default ``size_of``: the value's shallow size in bytes (``sys.getsizeof``)."""
    return sys.getsizeof(value)


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
            self._dispose_after_error(removed, error)
            raise
        lock.release()
        if self._dispose is not None:
            if evicted is not None:
                removed.append((evicted[0], evicted[1], "evict"))
            if removed:
                self._run_dispose(removed)

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
