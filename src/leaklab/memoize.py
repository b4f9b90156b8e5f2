"""A bounded, method-safe, async-aware ``memoize``: the fix of chapter 02.

Chapter 02 (``notebooks/02_memoize.ipynb``), "memoize trades memory for time, forever", ports a
library ``memoize`` that keeps every result in a dict keyed by the arguments and never clears it,
then shows the same trap in the standard library: ``functools.cache`` grows without bound, and
``functools.lru_cache`` on a method keeps every ``self`` alive (ruff rule B019). This module is
the chapter's fix, ``memoize``:

- **Always bounded.** ``maxsize`` is an int >= 1 (unbounded memoization is ``functools.cache``'s
  job, and the chapter's leak); ``ttl`` drops results that have gone stale. Or the results go into
  any store with ``get(key, default)`` and ``set(key, value)`` (``cache=``), such as chapter 01's
  ``LimitableMap`` or ``LRUCache``, as the source chapter suggests ("memoize plus a limited cache").
- **Safe on methods.** Each instance gets its own cache, held in a table on the class attribute
  that refers to the instance only through a *weak* reference, so an instance is collected as if
  it were never memoized (where ``lru_cache`` keeps every ``self`` in its keys). ``obj.method``
  is a bound method, which holds ``obj`` like any other: for the call, and no longer.
- **One call per key at a time.** Threads (or asyncio tasks) that miss the same key while it is
  being computed wait for that one call instead of each running the function, unless waiting
  would close a cycle (a deadlock): then they call it, as the plain function would. Exceptions
  are never cached. On an ``async def`` the awaited result is cached, never the coroutine.

>>> @memoize(maxsize=2)
... def square(x):
...     return x * x
>>> square(3), square(3), square.cache_info()
(9, 9, CacheInfo(hits=1, misses=1, maxsize=2, currsize=1))

How the built-in store works, and why a hit is fast
---------------------------------------------------
Each result lives in a small list ``[value, hits, mark, expires, key, slot, next]`` in one plain
``dict``, keyed by the entry's *slot*. A hit is one dict subscript, an optional deadline check and
``entry[1] += 1``, without any lock: that increment is both the hit counter (``cache_info`` sums
it) and the recency signal. Everything else (misses, insertion, eviction, expiry,
``cache_clear``) happens under one lock. Eviction is CLOCK, also called "second chance", the
classic approximation of least-recently-used: entries wait in insertion order in a ``deque``;
when room is needed, the oldest entry is evicted unless it was hit since the hand last passed, in
which case it is marked and moved to the back. Expired entries go first. Each step is O(1)
amortized, and no hit ever has to reorder anything.

Hashing once
------------
Like ``functools.lru_cache``, a call hashes its key once, and an eviction not at all: a key's
``__hash__`` may be slow, and a dict calls it on every lookup, insertion and deletion. Hence the
*slots*. A *plain* key, whose hashing runs no Python code (a lone argument of a builtin scalar
type: int, float, complex, bool, str, bytes, None; or a tuple of arguments that all are), is its
own slot: the dict rehashes it at no visible cost. Any other key is found by its hash, computed
once by the call and reused by the miss and the eviction: a tuple of arguments has its hash as
slot, a lone argument the pair ``(marker, hash)``, which no argument can equal; a hit then
compares the entry's key with the call's. Unequal keys with equal hashes share a slot, chained
through ``next`` (only the first of a chain is found without the lock). So ``f(Fraction(3))``
and ``f(3)`` are two entries, as with ``functools.lru_cache``, though equal.

Telling a plain key costs a type check per argument (a sixth of a hit, for one); so each wrapper
has two codes, and adapts, as the interpreter's own specializing does: it runs its *checked* code
(which finds each key's slot) until its first miss; if that key was plain, it switches to its
*plain* code (the dict subscript alone, no check) until a key that is not plain comes, which then
switches it back to the checked code for good (that call hashes its key twice, once). A wrapper
that is only ever given ints and str runs as fast as if there were no slots; one given objects
hashes each exactly once per call.

The hit path is safe without the lock on both kinds of CPython build: it only reads the dict and
an entry, and writes one item of the entry; with the GIL each of these is one C-level operation,
and on a free-threaded build ``dict`` and ``list`` lock themselves internally, so a reader never
sees a half-made change. A hit that races with an eviction returns the value it read, which was
valid. What is *not* exact under concurrent hits is the hit count: ``entry[1] += 1`` is a read
then a write, so two threads hitting the same entry at the same moment may count one hit.
``misses`` is always exact, and so are both counts in single-threaded use.

To reach half the speed of the C ``functools.lru_cache`` from Python, the wrapper is generated
with the memoized function's own parameters (``def fib(n)`` rather than ``def fib(*args,
**kwargs)``): packing ``*args`` and ``**kwargs`` alone costs more than the rest of a hit. Its key
is the argument itself for one parameter and the tuple of the arguments otherwise, so ``f(1)``,
``f(x=1)`` and ``f(1, y=2)`` share one entry when 2 is ``y``'s default. Only a default that is a
plain constant (None, a bool, a number, a str or bytes, or a tuple of these) is keyed by its
value, though: any other default (a list, a dict, an object) is left out of the key when the
caller leaves it out, so it is never hashed (it may be unhashable, or slow to hash), and, as with
``functools.lru_cache``, ``g(1)`` and ``g(1, cols=<that default>)`` are then two entries.
Functions with ``*args`` or ``**kwargs``, and every ``key=``, use a generic wrapper and a key
built like ``functools.lru_cache``'s.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import itertools
import keyword
import threading
import time
import types
import weakref
from collections import deque, namedtuple
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, cast, overload

from leaklab._checks import check_callable, check_int, check_seconds

__all__ = ["CacheInfo", "memoize"]

F = TypeVar("F", bound=Callable[..., Any])

CacheInfo = namedtuple("CacheInfo", ["hits", "misses", "maxsize", "currsize"])
CacheInfo.__doc__ = """What ``wrapper.cache_info()`` returns, like ``functools.lru_cache``'s.

``hits``: calls answered from the cache. ``misses``: calls that were not (each caller that waited
for a concurrent call of the same key counts one). ``maxsize``: the built-in store's bound, or the
``cache=`` object's ``maxsize``/``max``/``limit`` if it has one, else None. ``currsize``: entries
held now (expired ones are dropped first), or None if a ``cache=`` object has no ``len()``.
"""


class _DefaultMaxsize(int):
    """The type of ``memoize``'s default ``maxsize``: a plain 128 that can be told apart from an
    explicit ``maxsize=128``, so that ``cache=`` with any explicit ``maxsize`` can be refused."""

    __slots__ = ()


_DEFAULT_MAXSIZE: int = _DefaultMaxsize(128)
_NOTHING: Any = object()  # "no cached value"; never stored
_CYCLE: Any = object()  # "waiting for that call would deadlock"
_UNKNOWN: Any = object()  # "the miss finds the key's slot" (from the plain code of a wrapper)
_HASHED: Any = object()  # in the slot of a lone argument found by its hash: (_HASHED, hash)
_KWD_MARK = (object(),)  # separates positional from keyword arguments in a generic key
_FAST_TYPES = frozenset({int, str})  # a lone argument of these types is its own generic key
# The builtin scalars, whose hash and equality run no Python code: a key of one of these types,
# or a tuple of them, is its own slot in the built-in store (see "Hashing once" in the module's
# docstring), and a default of one of these types (or a tuple or frozenset of them) is keyed by
# its value.
_SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes})
# Layout of an entry of the built-in store; its slot is _GONE once it has left the store.
_VALUE, _HITS, _MARK, _EXPIRES, _KEY, _SLOT, _NEXT = range(7)
_GONE: Any = object()

# The builtins that memoized calls use, bound once: a memoized builtin installed in place of
# the builtin itself (``builtins.len = memoize(len)``) must not be called back by memoize.
_hash, _id, _len, _next, _tuple, _type = hash, id, len, next, tuple, type
_get_ident = threading.get_ident
_MethodType = types.MethodType


class _DefaultMarker:
    """What a key holds in place of a default the caller left out (when that default is not a
    plain constant); one object, which pickles by reference."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<default>"

    def __reduce__(self) -> str:
        return "_DEFAULT"


_DEFAULT = _DefaultMarker()


# --------------------------------------------------------------------------------------------
# Validation: bad configuration fails when memoize() is called, naming the argument and value.


def _check_maxsize(value: Any) -> int:
    if value is not None:
        try:
            return check_int("maxsize", value)
        except ValueError:
            pass
    raise ValueError(
        f"maxsize must be an int >= 1, got {value!r}: memoize always keeps a bound, because "
        "unbounded memoization is the leak of chapter 02; if you really want every result "
        "kept forever, that is what functools.cache is for"
    )


def _check_cache(cache: object) -> None:
    missing = [name for name in ("get", "set") if not callable(getattr(cache, name, None))]
    if missing:
        hint = (
            " (a dict or other mapping has no set(); and an unbounded dict is the very leak "
            "memoize avoids: use a LimitableMap or an LRUCache from leaklab.caches)"
            if "set" in missing and callable(getattr(cache, "__setitem__", None))
            else ""
        )
        raise TypeError(
            "cache must be an object with get(key, default) and set(key, value) methods, got "
            f"{cache!r} of type {type(cache).__name__}, which lacks {' and '.join(missing)}()"
            f"{hint}"
        )


# --------------------------------------------------------------------------------------------
# Keys


def _make_key(args: tuple[Any, ...], kwds: dict[str, Any], typed: bool) -> Hashable:
    """The cache key of a call to a generic ``(*args, **kwargs)`` wrapper.

    The same recipe as ``functools.lru_cache``: the positional arguments, then a marker and the
    keyword items in call order, then (``typed``) the types of all of them; a lone ``int`` or
    ``str`` argument is its own key.
    """
    key: tuple[Any, ...] = args
    if kwds:
        key += _KWD_MARK
        for item in kwds.items():
            key += item
    if typed:
        key += _tuple([_type(v) for v in args])
        if kwds:
            key += _tuple([_type(v) for v in kwds.values()])
    elif _len(key) == 1 and _type(key[0]) in _FAST_TYPES:
        return key[0]  # type: ignore[no-any-return]  # an int or a str
    return key


def _is_constant(value: object) -> bool:
    """Whether a default is keyed by its value (see the module's docstring)."""
    if type(value) in _SCALARS:
        return True
    if type(value) not in (tuple, frozenset):
        return False
    return all(_is_constant(item) for item in value)  # type: ignore[attr-defined]


def _unhashable_error(qualname: str, custom_key: bool) -> Callable[[TypeError], TypeError]:
    """Make the function that turns the TypeError of a failed lookup into a clear one."""
    if custom_key:
        what = f"the key= function of {qualname}() returned a key that cannot be looked up"
        fix = "make key= return something hashable, such as a tuple of str and int"
    else:
        what = f"the arguments of {qualname}() cannot be used as a cache key"
        fix = (
            "memoize needs hashable arguments; pass key= to build a hashable key from them "
            "(for example, a tuple instead of a list)"
        )

    def unhashable(exc: TypeError) -> TypeError:
        return TypeError(f"{what} ({exc}): {fix}")

    return unhashable


def _store_error_check(unhashable: Callable[[TypeError], TypeError]) -> Callable[..., None]:
    """Make the function that tells, after a TypeError from a lookup (a ``cache=`` store's
    ``get``, or the subscript of a wrapper's plain code), whether the key is at fault (then it
    raises the clear error) or not (then it returns, and the error of the store, or of a key's
    ``__eq__``, propagates unchanged)."""

    def check(key: Hashable) -> None:
        try:
            _hash(key)
        except TypeError as exc:
            raise unhashable(exc) from exc

    return check


# --------------------------------------------------------------------------------------------
# The state behind one memoized callable (or behind one instance's memoized method)


class _Call:
    """One computation in flight, on which the threads that miss the same key wait."""

    __slots__ = ("_done", "error", "key", "thread", "traceback", "value")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.thread = _get_ident()
        self.error: BaseException | None = None
        self.traceback: types.TracebackType | None = None
        self.value: Any = None
        self._done = threading.Lock()
        self._done.acquire()

    def set_result(self, value: Any) -> None:
        self.value = value
        self._done.release()

    def set_exception(self, error: BaseException) -> None:
        self.error = error
        self.traceback = error.__traceback__  # from the miss down to the raise, kept as it is now
        self._done.release()

    def result(self) -> Any:
        """The call's value, or its exception (a copy per waiter); ``_CYCLE`` at once if waiting
        would deadlock."""
        if not _wait(self):
            return _CYCLE
        error = self.error
        if error is not None:
            try:
                raise _copy_error(error, self.traceback)
            finally:
                error = self = None  # type: ignore[assignment]  # no frame <-> traceback cycle
        return self.value


# The call each thread is waiting for: the wait-for graph, which never gets a cycle (a thread
# whose wait would close one calls the function instead; see _wait).
_waiting: dict[int, _Call] = {}
_waiting_lock = threading.Lock()


def _wait(call: _Call) -> bool:
    """Wait until ``call`` is done and return True; or return False at once if waiting would
    deadlock: if ``call`` runs on this very thread (a recursion on its key), or its thread is
    waiting, through other threads' calls, for a call of this one (thread A's ``f(1)`` needs
    ``f(2)`` while thread B's ``f(2)`` needs ``f(1)``; any memoized functions, any length)."""
    if call._done.acquire(blocking=False):  # already done
        call._done.release()
        return True
    me = _get_ident()
    with _waiting_lock:
        thread = call.thread
        while thread != me:
            waited = _waiting.get(thread)
            if waited is None:
                break
            thread = waited.thread
        else:
            return not call._done.locked()  # a cycle, unless that call has just ended
        _waiting[me] = call
    try:
        with call._done:
            pass
    finally:
        with _waiting_lock:
            del _waiting[me]
    return True


def _copy_error(error: BaseException, tb: types.TracebackType | None) -> BaseException:
    """A copy of ``error``, with the traceback ``tb``, for one of the threads that waited for the
    call that raised it: raised by each of them, one shared object would collect all their
    frames in its one ``__traceback__``. The copy is made the way pickling makes one (from the
    type, ``args`` and attributes), with the same cause and context; an exception that cannot
    be rebuilt so (its constructor wants other arguments) is shared, as it is."""
    try:
        copied = copy.copy(error)
    except Exception:  # noqa: BLE001  # any failure to rebuild it: share it instead
        copied = None
    if _type(copied) is not _type(error):
        return error.with_traceback(tb)
    assert copied is not None
    copied.__cause__ = error.__cause__
    copied.__context__ = error.__context__
    copied.__suppress_context__ = error.__suppress_context__
    return copied.with_traceback(tb)


# The memoized call's task that each task is awaiting: as _waiting, for asyncio tasks.
_awaiting: dict[asyncio.Task[Any], asyncio.Task[Any]] = {}


def _closes_a_cycle(task: asyncio.Task[Any], me: asyncio.Task[Any] | None) -> bool:
    """Whether ``me`` awaiting ``task`` would deadlock (``task`` is, or awaits, ``me``)."""
    current: asyncio.Task[Any] | None = task
    while current is not None:
        if current is me:
            return True
        current = _awaiting.get(current)
    return False


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a shared task's exception as retrieved even if every waiter was cancelled."""
    if not task.cancelled():
        task.exception()


class _Adaptive:
    """Which code a built-in store's wrapper runs, as its keys show (see "Hashing once" in the
    module's docstring): its checked code until its first miss; then, if that key was plain, its
    plain code, until a key that is not plain comes; then its checked code for good."""

    __slots__ = ("checked", "plain", "slot_of", "state", "wrapper")

    def __init__(
        self,
        wrapper: types.FunctionType,
        plain: types.CodeType,
        slot_of: Callable[[Hashable], Hashable],
    ) -> None:
        self.wrapper = weakref.ref(wrapper)  # (the wrapper refers to the memo that refers to this)
        self.checked = wrapper.__code__
        self.plain = plain
        self.slot_of = slot_of
        self.state = "undecided"

    def adapt(self, plain: bool) -> None:
        """After a miss, under the memo's lock: ``plain`` if its key was its own slot."""
        state = self.state
        if state == "checked" or (plain and state == "plain"):
            return
        self.state = "plain" if plain and state == "undecided" else "checked"
        wrapper = self.wrapper()
        if wrapper is not None:
            wrapper.__code__ = self.plain if self.state == "plain" else self.checked


class _Memo:
    """Misses, in-flight deduplication and statistics, around a store (see the subclasses).

    ``fn`` is the memoized function; a miss calls ``fn(*args, **kwds)``, where for a method
    ``args`` starts with the instance. A call comes with its key and the key's slot, found by the
    wrapper (or ``_UNKNOWN``, from a wrapper's plain code: then by the miss), so that nothing here
    hashes a key again (hashing a slot runs no Python code). A subclass provides, all
    called under ``lock``: ``lookup(slot, key)`` (the value, counting a hit, or ``_NOTHING``) and
    ``store(slot, key, value)`` (returning whatever left the store, to be released once the lock
    is); and ``reader``, ``info()`` and ``clear()``.
    """

    __slots__ = ("adaptive", "fn", "inflight", "lock", "misses")

    def __init__(self, fn: Callable[..., Any], lock: Any) -> None:
        self.fn = fn
        self.lock = lock  # re-entrant: a key's __eq__ or a finalizer may call back in
        self.adaptive: _Adaptive | None = None  # set by _Recipe.make for a built-in store
        # slot -> _Call (threads) or (key, asyncio.Task); made on the first miss, empty between.
        self.inflight: dict[Hashable, Any] | None = None
        self.misses = 0

    def lookup(self, slot: Hashable, key: Hashable) -> Any:
        raise NotImplementedError

    def store(self, slot: Hashable, key: Hashable, value: Any) -> Any:
        raise NotImplementedError

    def _done(self, inflight: dict[Hashable, Any], slot: Hashable) -> None:
        """Take ``slot``'s call out of ``inflight`` (under the lock); drop the dict once empty."""
        del inflight[slot]
        if not inflight and self.inflight is inflight:
            self.inflight = None  # an emptied dict keeps its table: per-instance caches add up

    def _call(self, args: tuple[Any, ...], kwds: dict[str, Any] | None) -> Any:
        fn = self.fn
        value = fn(*args, **kwds) if kwds else fn(*args)
        if _type(value) is types.CoroutineType:
            value.close()
            raise TypeError(
                f"{getattr(fn, '__qualname__', fn)}() returned a coroutine, which can be "
                "awaited only once and must not be cached: define it with async def (or "
                "mark it with inspect.markcoroutinefunction) so that memoize caches the "
                "awaited result"
            )
        return value

    def _call_and_store(
        self, slot: Hashable, key: Hashable, args: tuple[Any, ...], kwds: dict[str, Any] | None
    ) -> Any:
        value = self._call(args, kwds)
        with self.lock:
            dropped = self.store(slot, key, value)
        del dropped  # released outside the lock: finalizers may call back in
        return value

    def miss(
        self, slot: Hashable, key: Hashable, args: tuple[Any, ...], kwds: dict[str, Any] | None
    ) -> Any:
        """Answer a call whose key the lock-free lookup did not find (sync functions)."""
        adaptive = self.adaptive
        if slot is _UNKNOWN:
            slot = adaptive.slot_of(key)  # type: ignore[union-attr]
        with self.lock:
            if adaptive is not None:
                adaptive.adapt(slot is key)
            value = self.lookup(slot, key)  # stored since the lock-free lookup?
            if value is not _NOTHING:
                return value
            self.misses += 1
            inflight = self.inflight
            if inflight is None:
                inflight = self.inflight = {}
            call = inflight.get(slot)
            if call is None:
                call = inflight[slot] = _Call(key)
                owner = True
            else:
                owner = False
        if not owner:
            if not (call.key is key or call.key == key):
                # Another key in the same slot (an equal hash) is being computed: compute this
                # one apart.
                return self._call_and_store(slot, key, args, kwds)
            value = call.result()
            if value is _CYCLE:
                # Waiting would deadlock (this thread computes this key further up its stack, or
                # a cycle across threads): call the function, as the plain function would.
                return self._call(args, kwds)
            return value
        try:
            value = self._call(args, kwds)
        except BaseException as exc:
            with self.lock:
                self._done(inflight, slot)
            call.set_exception(exc)  # the waiters raise it too; nothing is cached
            call = None  # the traceback keeps this frame alive: don't let it keep `call`
            raise
        try:
            with self.lock:
                try:
                    dropped = self.store(slot, key, value)  # stored before leaving `inflight`
                finally:
                    self._done(inflight, slot)
        finally:
            call.set_result(value)  # even if a cache= object's set() raised
        del dropped  # released outside the lock: finalizers may call back in
        return value

    async def amiss(
        self, slot: Hashable, key: Hashable, args: tuple[Any, ...], kwds: dict[str, Any] | None
    ) -> Any:
        """Answer a call whose key the lock-free lookup did not find (``async def`` functions).

        The first caller starts the call as a task; every caller awaits it through
        ``asyncio.shield``, so cancelling one caller never cancels the call the others wait for.
        """
        loop = asyncio.get_running_loop()
        adaptive = self.adaptive
        if slot is _UNKNOWN:
            slot = adaptive.slot_of(key)  # type: ignore[union-attr]
        with self.lock:
            if adaptive is not None:
                adaptive.adapt(slot is key)
            value = self.lookup(slot, key)
            if value is not _NOTHING:
                return value
            self.misses += 1
            inflight = self.inflight
            if inflight is None:
                inflight = self.inflight = {}
            running = inflight.get(slot)
            if running is None:
                task = loop.create_task(self._run(slot, key, args, kwds))
                task.add_done_callback(_retrieve)
                inflight[slot] = running = (key, task)
        shared_key, task = running
        me = asyncio.current_task()
        if (
            task.get_loop() is not loop
            or not (shared_key is key or shared_key == key)
            or _closes_a_cycle(task, me)
        ):
            # Running on another thread's event loop (a task cannot be awaited across loops),
            # another key in the same slot, or a wait that would deadlock (a recursive call
            # for this very key inside its own call, or tasks awaiting each other's keys): call
            # the function directly.
            running = task = None
            fn = self.fn
            value = await (fn(*args, **kwds) if kwds else fn(*args))
            with self.lock:
                dropped = self.store(slot, key, value)
            del dropped
            return value
        if me is not None:
            _awaiting[me] = task
        try:
            return await asyncio.shield(task)
        finally:
            if me is not None:
                del _awaiting[me]
            running = task = None  # no frame <-> traceback cycle when the call raised

    async def _run(
        self, slot: Hashable, key: Hashable, args: tuple[Any, ...], kwds: dict[str, Any] | None
    ) -> Any:
        task = asyncio.current_task()
        inflight = self.inflight
        assert inflight is not None  # made by amiss() before this task
        fn = self.fn
        try:
            value = await (fn(*args, **kwds) if kwds else fn(*args))
        except BaseException:
            with self.lock:
                running = inflight.get(slot)
                if running is not None and running[1] is task:
                    self._done(inflight, slot)
            running = task = None
            raise
        with self.lock:
            try:
                dropped = self.store(slot, key, value)
            finally:
                running = inflight.get(slot)
                if running is not None and running[1] is task:
                    self._done(inflight, slot)
        del dropped
        return value


class _BoundedMemo(_Memo):
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
        """What the generated hit path reads: the dict itself (see _LOOKUP)."""
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
            return _NOTHING
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


class _ExternalMemo(_Memo):
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
        """What the generated hit path calls: the cache's ``get`` (see _LOOKUP)."""
        return self.cache.get  # type: ignore[no-any-return]

    def lookup(self, slot: Hashable, key: Hashable) -> Any:
        value = self.cache.get(key, _NOTHING)
        if value is not _NOTHING:
            self.hits[0] += 1
        return value

    def store(self, slot: Hashable, key: Hashable, value: Any) -> None:
        self.cache.set(key, value)

    def info(self) -> CacheInfo:
        maxsize, size = _store_bounds(self.cache)
        return CacheInfo(self.hits[0], self.misses, maxsize, size)

    def clear(self) -> None:
        with self.lock:
            _clear_store(self.cache)
            self.reset()

    def reset(self) -> None:
        """Zero the counters (the store is shared by the instances of a method)."""
        with self.lock:
            self.hits[0] = 0
            self.misses = 0


def _store_bounds(cache: Any) -> tuple[int | None, int | None]:
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


def _clear_store(cache: Any) -> None:
    clear = getattr(cache, "clear", None)
    if not callable(clear):
        raise TypeError(
            f"cache_clear() needs a clear() method on the cache= object, and "
            f"{type(cache).__name__} has none: clear that object yourself"
        )
    clear()


# --------------------------------------------------------------------------------------------
# The generated wrapper


class _Options:
    """memoize()'s validated arguments, plus whether the function is an ``async def``."""

    __slots__ = ("async_", "cache", "clock", "key", "maxsize", "ttl", "typed")

    def __init__(self, settings: dict[str, Any], async_: bool) -> None:
        self.maxsize: int = settings["maxsize"]
        self.ttl: float | None = settings["ttl"]
        self.typed: bool = settings["typed"]
        self.key: Callable[..., Hashable] | None = settings["key"]
        self.cache: Any = settings["cache"]
        self.clock: Callable[[], float] = settings["clock"]
        self.async_ = async_

    def parameters(self) -> dict[str, Any]:
        """What ``wrapper.cache_parameters()`` returns."""
        return {
            "maxsize": None if self.cache is not None else self.maxsize,
            "ttl": self.ttl,
            "typed": self.typed,
            "key": self.key,
            "cache": self.cache,
        }

    def new_memo(self, fn: Callable[..., Any], lock: Any = None) -> _Memo:
        if lock is None:
            lock = threading.RLock()
        if self.cache is not None:
            return _ExternalMemo(fn, lock, self.cache)
        return _BoundedMemo(fn, lock, self.maxsize, self.ttl, self.clock)


# The hit path of one cache. `__cache` (the built-in store's dict, or a cache= object's bound
# `get`), `__miss`, `__hits` (the hit counter of a cache= store) and `__token` (the number of an
# instance's cache, for a store shared by instances) are cells, one set per cache; the other `__`
# names are globals shared by all the caches of one memoized function. The factory makes the
# wrapper twice over the same cells: with its _PLAIN code (the key is its own slot, looked up
# with a subscript, the cheapest lookup the interpreter has) and with its _CHECKED code (the key's
# slot is found first, hashing the key once if it is not plain); it returns the second, and the
# code of the first, for _Adaptive. A cache= store has one code (its get hashes as it likes).
# Only hashing is inside `except TypeError` (or checked by __check_key): any other TypeError (a
# store's, a key's __eq__, a key= function's) propagates as it is.
_WRAPPER_TEMPLATE = """\
def __factory(__cache, __miss, __hits, __token):
    {async_}def {name}({params}):
{prelude}{plain}
    __plain = {name}.__code__
    {async_}def {name}({params}):
{prelude}{checked}
    return {name}, __plain
"""
_PLAIN = {
    "builtin": """\
        try:
            __e = __cache[{key}]
            __e[1] = __e[1] + 1
            return __e[0]
        except __KeyError:
            pass
        except __TypeError:
            __check_key({key})  # raises the clear error if the key is unhashable
            raise  # else a key's own __eq__ failed
        return {await_}__miss(__UNKNOWN, {call})""",
    "builtin_ttl": """\
        try:
            __e = __cache[{key}]
        except __KeyError:
            __e = None
        except __TypeError:
            __check_key({key})
            raise
        if __e is not None and __e[3] > __clock():
            __e[1] = __e[1] + 1
            return __e[0]
        return {await_}__miss(__UNKNOWN, {call})""",
}
_FIND_SLOT = """\
        try:
            __s = __slot_of({key})
        except __TypeError as __exc:
            raise __unhashable(__exc) from __exc
"""
# The same for a lone argument, with _slot_function's two usual cases inline.
_FIND_LONE_SLOT = """\
        __t = __type({key})
        if __t in __SCALARS:
            __s = {key}
        else:
            try:
                __s = __slot_of({key}) if __t is __tuple else (__HASHED, __hash({key}))
            except __TypeError as __exc:
                raise __unhashable(__exc) from __exc
"""
_CHECKED = {
    "builtin": """\
        try:
            __e = __cache[__s]
        except __KeyError:
            pass
        else:
            if __e[4] is {key} or __e[4] == {key}:
                __e[1] = __e[1] + 1
                return __e[0]
        return {await_}__miss(__s, {call})""",
    "builtin_ttl": """\
        try:
            __e = __cache[__s]
        except __KeyError:
            pass
        else:
            if (__e[4] is {key} or __e[4] == {key}) and __e[3] > __clock():
                __e[1] = __e[1] + 1
                return __e[0]
        return {await_}__miss(__s, {call})""",
    "external": """\
        try:
            __e = __cache({key}, __NOTHING)
        except __TypeError:
            __check_key({key})  # raises the clear error if the key is unhashable
            raise  # else the store's own error
        if __e is not __NOTHING:
            __hits[0] += 1
            return __e
"""
    + _FIND_SLOT  # for the miss's table of the calls in flight: the store gets the key itself
    + """\
        return {await_}__miss(__s, {call})""",
}
_PLAIN["external"] = _CHECKED["external"]


def _is_plain(key: Hashable) -> bool:
    """Whether hashing ``key`` runs no Python code: a builtin scalar, or a tuple of them (and, in
    a typed key, of their types)."""
    if _type(key) in _SCALARS:
        return True
    if _type(key) is not tuple:
        return False
    for item in key:  # type: ignore[attr-defined]
        kind = _type(item)
        if kind not in _SCALARS and not (kind is type and item in _SCALARS):
            return False
    return True


def _slot_function(lone: bool) -> Callable[[Hashable], Hashable]:
    """The function that gives a key its slot (see "Hashing once" in the module's docstring):
    ``lone`` for a wrapper whose key may be a lone argument (or a generic key), whose slot then
    holds a marker besides the hash, else (a tuple of arguments) the hash alone."""

    def slot_of(key: Hashable) -> Hashable:
        if _is_plain(key):
            return key
        return (_HASHED, _hash(key)) if lone else _hash(key)

    return slot_of


class _Plan:
    """How to write a wrapper: its parameters, its key (a parameter's name, or ``__k`` built by
    ``prelude``) and whether that may be a ``lone`` argument (see _slot_function), and how a miss
    passes the arguments."""

    __slots__ = ("args", "defaults", "key", "kwds", "lone", "params", "prelude")

    def __init__(
        self,
        params: str,
        key: str,
        args: str,
        kwds: str,
        defaults: tuple[Any, ...],
        prelude: str,
        lone: bool,
    ) -> None:
        self.params, self.key, self.args, self.kwds = params, key, args, kwds
        self.defaults, self.prelude, self.lone = defaults, prelude, lone


def _generic_plan(options: _Options, method: bool) -> _Plan:
    if options.key is not None:
        key = "__key(*__args, **__kwds)"  # outside the try: a TypeError in key= is its own
    else:
        key = f"__make_key(__args, __kwds, {options.typed})"
    if method and options.cache is not None:
        key = f"(__token, {key})"  # one cache= store shared by the instances: keep them apart
    params = "__self, *__args, **__kwds" if method else "*__args, **__kwds"
    args = "(__self, *__args)" if method else "__args"
    return _Plan(params, "__k", args, "__kwds", (), f"        __k = {key}\n", lone=True)


def _plan(fn: Callable[..., Any], options: _Options, method: bool) -> _Plan:
    """A wrapper with ``fn``'s own parameters (for a method, the instance first: the wrapper is
    bound to it like any function) if possible, else the generic ``(*args, **kwargs)`` one.

    The parameters are read from the code object, which is how a call really binds (a
    ``__signature__`` attribute can say otherwise).
    """
    code = getattr(fn, "__code__", None)
    if (
        options.key is not None
        or not isinstance(fn, types.FunctionType)
        or not isinstance(code, types.CodeType)
        or code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS)
        or (method and code.co_argcount == 0)
    ):
        return _generic_plan(options, method)
    n_positional, n_posonly = code.co_argcount, code.co_posonlyargcount
    names = list(code.co_varnames[: n_positional + code.co_kwonlyargcount])
    if any(name.startswith("__") for name in names):
        return _generic_plan(options, method)  # it would shadow a name the template uses
    positional_defaults = fn.__defaults__ or ()
    first_default = n_positional - len(positional_defaults)
    keyword_defaults = fn.__kwdefaults__ or {}
    params: list[str] = []
    defaults: list[Any] = []
    passed: dict[str, str] = {}  # what a miss passes for each parameter
    for index, name in enumerate(names):
        passed[name] = name
        if index == n_positional:
            params.append("*")  # the keyword-only parameters follow
        if index < n_positional:
            has_default = index >= first_default
            default = positional_defaults[index - first_default] if has_default else None
        else:
            has_default = name in keyword_defaults
            default = keyword_defaults.get(name)
        if not has_default:
            params.append(name)
        elif _is_constant(default):
            params.append(f"{name}=__d{len(defaults)}")  # keyed by its value
            defaults.append(default)
        else:  # left out of the key when left out of the call (see the module's docstring)
            params.append(f"{name}=__DEFAULT")
            passed[name] = f"(__d{len(defaults)} if {name} is __DEFAULT else {name})"
            defaults.append(default)
        if index == n_posonly - 1:
            params.append("/")
    used = names[1:] if method else names
    if options.typed:
        key = "(" + ", ".join(used + [f"__type({name})" for name in used]) + ")"
    elif len(used) == 1:
        key = used[0]  # one parameter: the argument is the key (no tuple to build and hash)
    else:
        key = "(" + "".join(f"{name}, " for name in used) + ")"
    if method and options.cache is not None:
        key = f"(__token, {key})"  # one cache= store shared by the instances: keep them apart
    prelude = ""
    if not key.isidentifier():
        prelude, key = f"        __k = {key}\n", "__k"
    args = "(" + "".join(f"{passed[name]}, " for name in names[:n_positional]) + ")"
    keywords = names[n_positional:]
    kwds = "None"
    if keywords:
        kwds = "{" + ", ".join(f"{name!r}: {passed[name]}" for name in keywords) + "}"
    return _Plan(", ".join(params), key, args, kwds, tuple(defaults), prelude, not prelude)


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> types.CodeType:
    return compile(source, "<leaklab.memoize wrapper>", "exec")


class _Recipe:
    """The generated wrapper of one memoized function, ready to be made for each cache."""

    __slots__ = ("_factory", "options", "slot_of")

    def __init__(self, fn: Callable[..., Any], options: _Options, method: bool) -> None:
        self.options = options
        plan = _plan(fn, options, method)
        name = getattr(fn, "__name__", "")
        if not (
            isinstance(name, str)
            and name.isidentifier()
            and not keyword.iskeyword(name)
            and not name.startswith("__")
        ):
            name = "memoized"
        if options.cache is not None:
            kind, find_slot = "external", ""  # (_CHECKED["external"] has its own)
        else:
            kind = "builtin_ttl" if options.ttl is not None else "builtin"
            find_slot = _FIND_LONE_SLOT if plan.lone else _FIND_SLOT
        self.slot_of = _slot_function(plan.lone)
        parts = {
            "key": plan.key,
            "await_": "await " if options.async_ else "",
            "call": f"{plan.key}, {plan.args}, {plan.kwds}",
        }
        source = _WRAPPER_TEMPLATE.format(
            async_="async " if options.async_ else "",
            name=name,
            params=plan.params,
            prelude=plan.prelude,
            plain=_PLAIN[kind].format(**parts),
            checked=(find_slot + _CHECKED[kind]).format(**parts),
        )
        unhashable = _unhashable_error(getattr(fn, "__qualname__", name), options.key is not None)
        namespace: dict[str, Any] = {
            "__clock": options.clock,
            "__unhashable": unhashable,
            "__check_key": _store_error_check(unhashable),
            "__slot_of": self.slot_of,
            "__hash": _hash,
            "__type": _type,
            "__tuple": _tuple,
            "__SCALARS": _SCALARS,
            "__HASHED": _HASHED,
            "__TypeError": TypeError,
            "__KeyError": KeyError,
            "__NOTHING": _NOTHING,
            "__UNKNOWN": _UNKNOWN,
            "__DEFAULT": _DEFAULT,
            "__make_key": _make_key,
            "__key": options.key,
        }
        namespace.update((f"__d{i}", value) for i, value in enumerate(plan.defaults))
        exec(_compile(source), namespace)  # noqa: S102  # only defines __factory
        self._factory = namespace["__factory"]

    def make(self, memo: _Memo, token: int | None = None) -> Callable[..., Any]:
        """The hit path of ``memo``, with ``cache_info``, ``cache_clear``, ``cache_parameters``."""
        options = self.options
        miss = memo.amiss if options.async_ else memo.miss
        reader = memo.reader  # type: ignore[attr-defined]
        wrapper, plain = self._factory(reader, miss, getattr(memo, "hits", None), token)
        if isinstance(memo, _BoundedMemo):
            memo.adaptive = _Adaptive(wrapper, plain, self.slot_of)
        wrapper.cache_info = memo.info  # type: ignore[attr-defined]
        wrapper.cache_clear = memo.clear  # type: ignore[attr-defined]
        wrapper.cache_parameters = options.parameters
        return wrapper  # type: ignore[no-any-return]


def _memoize_function(fn: Callable[..., Any], options: _Options) -> Callable[..., Any]:
    """A plain memoized function: one cache, keyed by all the arguments."""
    wrapper: Any = _Recipe(fn, options, method=False).make(options.new_memo(fn))
    cache_api = (wrapper.cache_info, wrapper.cache_clear, wrapper.cache_parameters)
    functools.update_wrapper(wrapper, fn)  # copies fn.__dict__, which could shadow the API
    wrapper.cache_info, wrapper.cache_clear, wrapper.cache_parameters = cache_api
    return cast("Callable[..., Any]", wrapper)


# --------------------------------------------------------------------------------------------
# Methods


# A number per instance cache, never reused (unlike id()): with cache=, the instances of a
# method share one store, and their keys start with it.
_instance_tokens = itertools.count()


class _InstanceRef(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to an instance that remembers the instance's key in the table."""

    __slots__ = ("address",)
    address: int  # id() of the instance


class _MemoizedMethod:
    """What ``memoize`` returns for a function defined in a class body.

    As a method (it was set on a class, or its first parameter is ``self``), it keeps one cache
    per instance, made on first use, in a table keyed by ``id(instance)`` and guarded by a weak
    reference whose callback removes the entry when the instance dies. The cache never refers to
    the instance, so the instance is collected as usual. Each cache has its own memoized function,
    which takes the instance first, like the method itself; ``instance.method`` returns it bound
    to the instance, a plain bound method (with that cache's ``cache_info``/``cache_clear``),
    which holds the instance as long as it lives: for the call, in ``Parser(text).words()``,
    where nothing else holds the instance. ``Class.method`` returns this object, whose
    ``cache_info()`` sums over the live instances and whose ``cache_clear()`` clears them all.
    The instances' caches share one lock, taken on misses only.

    Otherwise (for instance under ``@staticmethod``), it behaves as a plain memoized function.
    """

    def __init__(self, fn: types.FunctionType, options: _Options) -> None:
        functools.update_wrapper(self, fn)
        self._qualname: str = fn.__qualname__
        self._fn = fn
        self._options = options
        code = fn.__code__
        self._is_method = code.co_argcount > 0 and code.co_varnames[0] == "self"
        self._recipe = _Recipe(fn, options, method=True)
        # id(instance) -> (weak reference, its cache's memoized function, its memo)
        self._instances: dict[int, tuple[_InstanceRef, Callable[..., Any], _Memo]] = {}
        self._lock = threading.RLock()
        self._forget = self._make_forget(self._instances)
        self._function: Callable[..., Any] | None = None  # made when used as a plain function
        if options.async_ and hasattr(inspect, "markcoroutinefunction"):  # 3.12+
            inspect.markcoroutinefunction(self)

    @staticmethod
    def _make_forget(instances: dict[int, Any]) -> Callable[[_InstanceRef], None]:
        def forget(ref: _InstanceRef) -> None:  # the weak references' callback: no `self` in it
            entry = instances.get(ref.address)
            if entry is not None and entry[0] is ref:
                del instances[ref.address]

        return forget

    def __set_name__(self, owner: type, name: str) -> None:
        self._is_method = True

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        entry = self._instances.get(_id(instance))
        if entry is not None and entry[0]() is instance:
            return _MethodType(entry[1], instance)
        if not self._is_method:
            return _MethodType(self, instance)
        return _MethodType(self._bind(instance), instance)

    def __call__(self, *args: Any, **kwds: Any) -> Any:
        if not self._is_method:
            return self._plain()(*args, **kwds)
        if not args:
            raise TypeError(f"{self._qualname}() missing the instance argument")
        instance = args[0]
        entry = self._instances.get(_id(instance))
        if entry is not None and entry[0]() is instance:
            return entry[1](*args, **kwds)
        return self._bind(instance)(*args, **kwds)

    def _plain(self) -> Callable[..., Any]:
        function = self._function
        if function is None:
            with self._lock:
                if self._function is None:
                    self._function = _memoize_function(self._fn, self._options)
                function = self._function
        return function

    def _bind(self, instance: Any) -> Callable[..., Any]:
        """The memoized function of ``instance``'s cache (made on first use)."""
        try:
            ref = _InstanceRef(instance, self._forget)
        except TypeError:
            raise TypeError(
                f"memoize keeps one cache per instance for {self._qualname} and refers to "
                f"the instance only weakly, so that instances are still collected; but "
                f"{type(instance).__qualname__} objects do not support weak references (a class "
                "that defines __slots__ must list '__weakref__' in them; a dataclass with "
                "slots=True needs weakref_slot=True)"
            ) from None
        address = ref.address = _id(instance)
        with self._lock:
            entry = self._instances.get(address)
            if entry is not None and entry[0]() is instance:
                return entry[1]
            memo = self._options.new_memo(self._fn, self._lock)
            function = self._recipe.make(memo, _next(_instance_tokens))
            function.__module__ = self.__module__
            function.__qualname__ = self._qualname
            function.__doc__ = self.__doc__
            function.__wrapped__ = self._fn  # type: ignore[attr-defined]  # for inspect.signature
            self._instances[address] = (ref, function, memo)
        return function

    def _memos(self) -> list[_Memo]:
        return [entry[2] for entry in list(self._instances.values())]

    def cache_info(self) -> CacheInfo:
        """The sum over the live instances' caches (``maxsize`` is per instance); with
        ``cache=``, the bound and size of that one shared store."""
        if not self._is_method:
            return self._plain().cache_info()  # type: ignore[attr-defined, no-any-return]
        hits = misses = size = 0
        for memo in self._memos():
            info = memo.info()  # type: ignore[attr-defined]
            hits += info.hits
            misses += info.misses
            size += info.currsize or 0
        if self._options.cache is not None:
            maxsize, store_size = _store_bounds(self._options.cache)
            return CacheInfo(hits, misses, maxsize, store_size)
        return CacheInfo(hits, misses, self._options.maxsize, size)

    def cache_clear(self) -> None:
        """Clear every live instance's cache (with ``cache=``, that one shared store)."""
        if not self._is_method:
            self._plain().cache_clear()  # type: ignore[attr-defined]
            return
        if self._options.cache is not None:
            _clear_store(self._options.cache)
            for memo in self._memos():
                memo.reset()  # type: ignore[attr-defined]
            return
        for memo in self._memos():
            memo.clear()  # type: ignore[attr-defined]

    def cache_parameters(self) -> dict[str, Any]:
        return self._options.parameters()

    def __repr__(self) -> str:
        kind = "method" if self._is_method else "function"
        return f"<memoized {kind} {self._qualname}>"


def _defined_in_class_body(fn: object) -> bool:
    if not isinstance(fn, types.FunctionType):
        return False
    scope, _, _ = fn.__qualname__.rpartition(".")
    return bool(scope) and not scope.endswith("<locals>")


# --------------------------------------------------------------------------------------------
# The public decorator


@overload
def memoize(
    fn: F,
    /,
    *,
    maxsize: int = ...,
    ttl: float | None = ...,
    typed: bool = ...,
    key: Callable[..., Hashable] | None = ...,
    cache: Any = ...,
    clock: Callable[[], float] = ...,
) -> F: ...
@overload
def memoize(
    fn: None = None,
    *,
    maxsize: int = ...,
    ttl: float | None = ...,
    typed: bool = ...,
    key: Callable[..., Hashable] | None = ...,
    cache: Any = ...,
    clock: Callable[[], float] = ...,
) -> Callable[[F], F]: ...
def memoize(
    fn: Callable[..., Any] | None = None,
    *,
    maxsize: int = _DEFAULT_MAXSIZE,
    ttl: float | None = None,
    typed: bool = False,
    key: Callable[..., Hashable] | None = None,
    cache: Any = None,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """Cache a function's results, always within a bound: ``@memoize`` or ``@memoize(...)``.

    Args:
        fn: the function (or ``async def``) to memoize; given when used as ``@memoize``.
        maxsize: the most results the built-in store holds, an int >= 1. When it is full, a new
            result evicts an old one in CLOCK order (least recently used, approximately).
        ttl: seconds a result stays valid (finite int or float > 0), or None for no expiry. A
            stale result is recomputed on the next call.
        typed: if True, arguments of different types are cached apart (``f(3)``, ``f(3.0)``).
        key: ``key(*args, **kwargs) -> hashable``, the cache key of a call, instead of the
            arguments themselves; for unhashable arguments, or to ignore some. On a method it
            receives the arguments after ``self``.
        cache: instead of the built-in store, any object with ``get(key, default)`` and
            ``set(key, value)``, such as ``LimitableMap(100)`` or ``LRUCache(1000, ttl=60)`` from
            ``leaklab.caches``, or a client of a remote cache. It bounds (and expires) the results
            itself, so ``maxsize`` and ``ttl`` may not be given with it. Its ``set`` is called
            under memoize's lock, its ``get`` without.
        clock: a ``time.monotonic``-like function for ``ttl``; inject a fake one in tests.

    Returns:
        The memoized function, with ``functools.wraps`` metadata and ``__wrapped__``, plus
        ``cache_info()`` (a :data:`CacheInfo` ``(hits, misses, maxsize, currsize)``),
        ``cache_clear()`` and ``cache_parameters()``.

    Behaviour:
        - Unhashable arguments (without ``key=``) raise a TypeError that says so; any other
          TypeError (from a ``cache=`` store, a ``key=`` function, a key's ``__eq__``)
          propagates unchanged. A call hashes its key once, as ``functools.lru_cache`` does,
          and evicting a key does not hash it (with one exception, once per wrapper: see
          "Hashing once" in the module's docstring).
        - A default the caller leaves out is keyed by its value only if it is a plain constant
          (None, a bool, a number, a str or bytes, or a tuple of these): a list, a dict or any
          other object is left out of the key, never hashed, so ``def g(x, cols=["a"])`` works
          and ``g(1)`` and ``g(1, cols=["a"])`` are two different calls to the cache (as with
          ``functools.lru_cache``; the second one is unhashable).
        - Concurrent calls that miss the same key run the function once: the other threads (or
          tasks) wait and get its result, or its exception (each a copy, with its own
          traceback). Exceptions are never cached. A call that would wait for a call that
          itself waits, directly or through other threads (or tasks), for this one (a recursive
          call with the very same key, or thread A's ``f(1)`` needing ``f(2)`` while thread B's
          ``f(2)`` needs ``f(1)``) calls the function instead, like the plain function would:
          no deadlock. Recursion on other keys (``fib``) is memoized as usual. (A call that
          waits for a key whose computation blocks on something else this thread holds, such as
          a lock or a ``join``, still deadlocks, as it would with any lock.)
        - On an ``async def``, the awaited result is cached, never the coroutine; the first
          caller starts one task that every caller awaits through ``asyncio.shield``, so
          cancelling a caller does not cancel the call for the others (the call then finishes
          and its result is cached). Callers on another thread's event loop do not share it.
        - On a method (a function defined in a class body that is set on the class, or whose
          first parameter is ``self``, which covers ``@property`` over ``@memoize``), every
          instance gets its own cache of ``maxsize`` and no cache refers to the instance, so
          instances are collected as usual; a class with ``__slots__`` must list
          ``'__weakref__'`` in them (TypeError otherwise). ``obj.method`` is a bound method,
          which holds ``obj`` as long as it lives, like any bound method (so
          ``Parser(text).words()`` works: the instance lives for the call, and no longer).
          ``obj.method.cache_info()`` is that instance's; ``Class.method.cache_info()`` sums
          the live instances' (``maxsize`` per instance) and ``Class.method.cache_clear()``
          clears them all. The caches live in a
          table on the class attribute, so a result that refers back to its own instance (say
          ``return Child(parent=self)``) keeps that instance alive until the entry is evicted
          or cleared: do not memoize such a method. With ``cache=``, the instances share that
          one store, which then bounds them all together (their keys are kept apart by a number
          per instance, never reused), and any ``cache_clear()`` clears it for all.
        - ``@memoize`` over ``@staticmethod`` or ``@classmethod`` memoizes the function inside
          (for a classmethod, the class is part of the key).
        - Generator functions are refused (a cached generator is exhausted after one use), and
          so is a coroutine returned by a function that is not an ``async def``.

    Raises:
        TypeError: ``maxsize`` is a bool or not an int; ``ttl`` is a bool, a str or not a
            number; ``typed`` is not a bool; ``key`` or ``clock`` is not callable; ``cache``
            lacks ``get`` or ``set``; ``fn`` is not callable or is a generator function.
        ValueError: ``maxsize`` is below 1 or None; ``ttl`` is not finite and > 0; ``maxsize``
            or ``ttl`` given together with ``cache``; ``typed=True`` together with ``key``.

    >>> @memoize(maxsize=100, ttl=60)
    ... def lookup(user_id: int) -> str:
    ...     return f"user {user_id}"
    >>> lookup(7), lookup(user_id=7), lookup.cache_info().hits
    ('user 7', 'user 7', 1)
    """
    maxsize_given = maxsize is not _DEFAULT_MAXSIZE
    size = _check_maxsize(maxsize)
    if ttl is not None:
        ttl = check_seconds("ttl", ttl)
    if not isinstance(typed, bool):
        raise TypeError(f"typed must be a bool, got {typed!r} of type {type(typed).__name__}")
    if key is not None:
        check_callable("key", key)
        if typed:
            raise ValueError(
                "typed=True applies to the default key; with key= build the key "
                "you want (for example, include type(arg) in it)"
            )
    check_callable("clock", clock)
    if cache is not None:
        _check_cache(cache)
        if maxsize_given or ttl is not None:
            given = ", ".join(
                f"{name}={value!r}"
                for name, value, present in (
                    ("maxsize", maxsize, maxsize_given),
                    ("ttl", ttl, ttl is not None),
                )
                if present
            )
            raise ValueError(
                f"{given} cannot be combined with cache=: the cache= object holds the results "
                "and applies its own bound and expiry (for example LRUCache(1000, ttl=60))"
            )
    settings = {
        "maxsize": size,
        "ttl": ttl,
        "typed": typed,
        "key": key,
        "cache": cache,
        "clock": clock,
    }
    if fn is None:
        return functools.partial(_decorate, settings=settings)
    return _decorate(fn, settings=settings)


def _decorate(fn: Any, *, settings: dict[str, Any], plain: bool = False) -> Any:
    if isinstance(fn, (staticmethod, classmethod)) and not plain:
        # Memoize the function inside; as a classmethod, the class is part of the key.
        return type(fn)(_decorate(fn.__func__, settings=settings, plain=True))
    if not callable(fn):
        hint = ""
        if isinstance(fn, int) and not isinstance(fn, bool):
            hint = f"; to set the size, pass it by keyword: @memoize(maxsize={fn!r})"
        raise TypeError(f"memoize expects a function, got {fn!r} of type {type(fn).__name__}{hint}")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"memoize cannot cache the generator function {getattr(fn, '__qualname__', fn)}: a "
            "cached generator is exhausted after its first use; memoize a function that "
            "returns a list or tuple instead"
        )
    options = _Options(settings, async_=inspect.iscoroutinefunction(fn))
    if not plain and _defined_in_class_body(fn):
        return _MemoizedMethod(fn, options)
    return _memoize_function(fn, options)
