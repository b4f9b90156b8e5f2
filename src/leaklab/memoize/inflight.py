"""One call per key at a time: what a miss does while other threads or tasks miss the same key.

Part of chapter 02's ``memoize`` (``decorator.py`` holds the algorithm; this module the part of a
miss that only matters when calls overlap). :class:`Memo` is what every memoized callable (or every
instance of a memoized method) keeps: the function, the lock, the ``misses`` count and the calls in
flight; its subclasses in ``store.py`` add the store itself.

- **Threads.** The first thread to miss a key registers a :class:`_Call` and calls the function;
  threads that miss the same key meanwhile wait for that call and return its result, or raise its
  exception (each waiter its own copy, with its own traceback). Nothing is cached when it raises.
- **No deadlock.** A thread whose wait would close a cycle (it computes this very key further up
  its own stack, or thread A's ``f(1)`` needs ``f(2)`` while thread B's ``f(2)`` needs ``f(1)``,
  through any memoized functions) calls the function instead, as the plain function would:
  :func:`_wait` follows the wait-for graph before it waits.
- **asyncio.** On an ``async def`` the first caller starts the call as a task and every caller
  awaits it through ``asyncio.shield``, so cancelling one caller never cancels the call the others
  wait for; the awaited result is cached, never the coroutine. Tasks that would await each other's
  keys in a cycle, or a caller on another thread's event loop, call the function directly.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import types
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from leaklab.memoize.keys import UNKNOWN

if TYPE_CHECKING:
    from leaklab.memoize.wrappers import Adaptive

NOTHING: Any = object()  # "no cached value"; never stored
_CYCLE: Any = object()  # "waiting for that call would deadlock"

# The builtins that memoized calls use, bound once (see keys.py).
_type = type
_get_ident = threading.get_ident


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


class Memo:
    """Misses, in-flight deduplication and statistics, around a store (subclasses: store.py).

    ``fn`` is the memoized function; a miss calls ``fn(*args, **kwds)``, where for a method
    ``args`` starts with the instance. A call comes with its key and the key's slot, found by the
    wrapper (or ``UNKNOWN``, from a wrapper's plain code: then by the miss), so that nothing here
    hashes a key again (hashing a slot runs no Python code). A subclass provides, all
    called under ``lock``: ``lookup(slot, key)`` (the value, counting a hit, or ``NOTHING``) and
    ``store(slot, key, value)`` (returning whatever left the store, to be released once the lock
    is); and ``reader``, ``info()`` and ``clear()``.
    """

    __slots__ = ("adaptive", "fn", "inflight", "lock", "misses")

    def __init__(self, fn: Callable[..., Any], lock: Any) -> None:
        self.fn = fn
        self.lock = lock  # re-entrant: a key's __eq__ or a finalizer may call back in
        self.adaptive: Adaptive | None = None  # set by Recipe.make for a built-in store
        # slot -> _Call (threads) or (key, asyncio.Task); made on the first miss, empty between.
        self.inflight: dict[Hashable, Any] | None = None
        self.misses = 0

    def lookup(self, slot: Hashable, key: Hashable) -> Any:
        raise NotImplementedError

    def store(self, slot: Hashable, key: Hashable, value: Any) -> Any:
        raise NotImplementedError

    def _recheck(self, slot: Hashable, key: Hashable) -> tuple[Any, dict[Hashable, Any] | None]:
        """The start of a miss, under the lock: the value and None if the key was stored since
        the lock-free lookup (a hit after all), else the miss is counted and this returns
        ``NOTHING`` and the table of the calls in flight (made if there was none)."""
        adaptive = self.adaptive
        if adaptive is not None:
            adaptive.adapt(slot is key)
        value = self.lookup(slot, key)
        if value is not NOTHING:
            return value, None
        self.misses += 1
        inflight = self.inflight
        if inflight is None:
            inflight = self.inflight = {}
        return NOTHING, inflight

    def _done(self, inflight: dict[Hashable, Any], slot: Hashable) -> None:
        """Take ``slot``'s call out of ``inflight`` (under the lock); drop the dict once empty."""
        del inflight[slot]
        if not inflight and self.inflight is inflight:
            self.inflight = None  # an emptied dict keeps its table: per-instance caches add up

    def call(self, args: tuple[Any, ...], kwds: dict[str, Any] | None) -> Any:
        """Call the function (refusing a coroutine from a function that is not async def)."""
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
        value = self.call(args, kwds)
        with self.lock:
            dropped = self.store(slot, key, value)
        del dropped  # released outside the lock: finalizers may call back in
        return value

    def miss(
        self, slot: Hashable, key: Hashable, args: tuple[Any, ...], kwds: dict[str, Any] | None
    ) -> Any:
        """Answer a call whose key the lock-free lookup did not find (sync functions)."""
        if slot is UNKNOWN:
            slot = self.adaptive.slot_of(key)  # type: ignore[union-attr]
        with self.lock:
            value, inflight = self._recheck(slot, key)
            if inflight is None:
                return value
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
                return self.call(args, kwds)
            return value
        try:
            value = self.call(args, kwds)
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
        if slot is UNKNOWN:
            slot = self.adaptive.slot_of(key)  # type: ignore[union-attr]
        with self.lock:
            value, inflight = self._recheck(slot, key)
            if inflight is None:
                return value
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
