"""``memoize``, chapter 02's fix: the decorator, its options, and the algorithm of a call.

Chapter 02 (``notebooks/02_memoize.ipynb``) shows a memoize that keeps every result forever, and
the same leak in ``functools.cache`` and in ``lru_cache`` on a method. ``memoize`` is the fix, and
this module holds its idea; the other modules of ``leaklab.memoize`` hold the details and the
speed-ups, and none of them is needed to follow it.

What every memoized call keeps true
-----------------------------------
1. **Bounded.** The built-in store never holds more than ``maxsize`` results (an int >= 1: there
   is no unbounded mode), and never returns one older than ``ttl``; a ``cache=`` store bounds
   itself, and ``maxsize``/``ttl`` cannot be given with it.
2. **A hit changes nothing but its count.** It returns the stored result and counts one hit (the
   built-in store's recency signal too). (The generated wrappers read the store without taking
   the lock: ``store.py`` says why that is safe.)
3. **A miss calls, stores, bounds.** It counts one miss, calls the function (outside the lock)
   and stores what it returned (under the lock); storing into a full store evicts first, so (1)
   holds after every call. An exception is never stored, and on an ``async def`` the awaited
   result is stored, never the coroutine.
4. **One call per key at a time.** Threads or tasks that miss a key while it is being computed
   wait for that call, unless waiting would deadlock: then they call the function.
5. **Equal calls share an entry**, and a call hashes its key once.
6. **No cache refers to an instance**: a memoized method keeps one cache per instance, held
   through a weak reference.

:func:`reference_call` below is (2) and (3) in plain Python. Where the rest lives:

- ``keys.py``: how a call becomes a key, and the key's slot in the store (5);
- ``store.py``: the bounded store, its CLOCK eviction and its expiry (1), or a ``cache=`` store;
- ``inflight.py``: misses that overlap, across threads or asyncio tasks (4);
- ``methods.py``: per-instance caches for methods (6);
- ``wrappers.py``: the generated wrappers, :func:`reference_call` made fast; the tests check the
  two against each other call by call.

>>> @memoize(maxsize=2)
... def square(x):
...     return x * x
>>> square(3), square(3), square.cache_info()
(9, 9, CacheInfo(hits=1, misses=1, maxsize=2, currsize=1))
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, overload

from leaklab._checks import check_callable, check_int, check_seconds
from leaklab.memoize.inflight import NOTHING, Memo
from leaklab.memoize.keys import slot_function
from leaklab.memoize.methods import MemoizedMethod, defined_in_class_body
from leaklab.memoize.store import BoundedMemo, ExternalMemo
from leaklab.memoize.wrappers import memoize_function

F = TypeVar("F", bound=Callable[..., Any])


class _DefaultMaxsize(int):
    """The type of ``memoize``'s default ``maxsize``: a plain 128 that can be told apart from an
    explicit ``maxsize=128``, so that ``cache=`` with any explicit ``maxsize`` can be refused."""

    __slots__ = ()


_DEFAULT_MAXSIZE: int = _DefaultMaxsize(128)


# --------------------------------------------------------------------------------------------
# The algorithm


def reference_call(memo: Memo, key: Hashable, slot: Hashable, args: tuple, kwargs: dict) -> Any:
    """One memoized call, in plain Python; the generated wrappers do the same, faster."""
    with memo.lock:
        value = memo.lookup(slot, key)  # look the key up (a hit counts itself)
        if value is not NOTHING:
            return value  # a hit: the stored result
        memo.misses += 1
    value = memo.call(args, kwargs)  # a miss: call the function (if it raises, nothing is stored)
    with memo.lock:
        dropped = memo.store(slot, key, value)  # store the result; a full store evicts first
    del dropped  # what was evicted is freed here, outside the lock
    return value


def reference_wrapper(
    memo: Memo, key_of: Callable[[tuple[Any, ...], dict[str, Any]], Hashable]
) -> Callable[..., Any]:
    """A memoized function that runs :func:`reference_call` on ``memo`` (a store of store.py),
    keyed by ``key_of(args, kwargs)``: the plain model that the tests hold the generated wrappers
    to. It lacks what only overlapping calls need (one call per key: ``Memo.miss``), and its
    errors are the raw ones (an unhashable key: ``hash()``'s TypeError)."""
    slot_of = slot_function(lone=True)  # a key's slot holds its one hash (keys.py)

    def memoized(*args: Any, **kwargs: Any) -> Any:
        key = key_of(args, kwargs)
        return reference_call(memo, key, slot_of(key), args, kwargs)

    memoized.cache_info = memo.info  # type: ignore[attr-defined]
    memoized.cache_clear = memo.clear  # type: ignore[attr-defined]
    return memoized


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
        typed: if True, arguments of different types are cached apart: ``f(3)`` and ``f(3.0)``
            are two entries, as with ``lru_cache(typed=True)``. By default equal arguments share
            one (``3 == 3.0``): ``f(3.0)`` returns what ``f(3)`` stored (``keys.py`` has the
            details, and the exceptions).
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
          "Two codes" in ``wrappers.py``).
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
    """Memoize ``fn``: a method gets a cache per instance (methods.py), anything else one."""
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
    options = Options(settings, async_=inspect.iscoroutinefunction(fn))
    if not plain and defined_in_class_body(fn):
        return MemoizedMethod(fn, options)
    return memoize_function(fn, options)


# --------------------------------------------------------------------------------------------
# Options and their validation: bad configuration fails when memoize() is called, naming the
# argument and the value.


class Options:
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

    def new_memo(self, fn: Callable[..., Any], lock: Any = None) -> Memo:
        """The store of one cache of ``fn`` (store.py): around the ``cache=`` object, or new."""
        if lock is None:
            lock = threading.RLock()
        if self.cache is not None:
            return ExternalMemo(fn, lock, self.cache)
        return BoundedMemo(fn, lock, self.maxsize, self.ttl, self.clock)


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
