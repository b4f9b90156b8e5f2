"""``Bagpipe``: an asyncio call queue whose backlog cannot grow without bound (chapter 04).

When calls arrive faster than they finish, a plain ``asyncio.gather`` or ``create_task`` per
request keeps every waiting call, with its arguments and everything they reference, until it is
served: the queue piles up and so does memory. Bagpipe, after the npm module of the same name that
the chapter describes, runs at most ``limit`` calls at once, queues the rest in FIFO order, and
bounds the time or the room a waiting call may take:

- **timeout mode** (``timeout=seconds``): a call's clock starts when it is pushed; when it runs
  out, the caller gets :class:`BagpipeTimeoutError`, whether the call was still waiting (it leaves
  the queue) or running (it is cancelled, and its slot is freed once it has really stopped, so no
  more than ``limit`` calls ever run);
- **refuse mode** (``refuse=True``): when ``round(limit * ratio)`` calls are already waiting, a new
  push fails at once with :class:`TooMuchAsyncCallError` and keeps nothing.

A cancelled call stops where it awaits. A call that hands its work to a thread
(``loop.run_in_executor``, ``asyncio.to_thread``) frees its slot when its await is cancelled, but
the thread finishes the work anyway: the pipe bounds what waits, not what a thread pool has started.

``on_full(queue_length)`` is the hook for an alert: it is called once each time the waiting line
reaches ``round(limit * ratio)`` (at least 1), and again only after the line has dropped below it.
``stats()`` accounts for every call: ``submitted == completed + failed + timed_out + refused +
active + queue_length`` at any moment. A call cancelled by its own caller counts as ``failed``.

Differences from the original (npm bagpipe 0.3.5), which the chapter's description follows: its
timeout clock started only when a call began to run, a timed-out call kept running while its slot
was given away (so more than ``limit`` ran at once), its ``full`` event fired on every push past
one waiting call, and a call that threw synchronously never freed its slot.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import types
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from leaklab._checks import check_callable, check_int, check_seconds

__all__ = ["Bagpipe", "BagpipeStats", "BagpipeTimeoutError", "TooMuchAsyncCallError"]

T = TypeVar("T")
_COROUTINE = types.CoroutineType
log = logging.getLogger(__name__)


class TooMuchAsyncCallError(Exception):
    """Refuse mode: the waiting line is full, so the call was not queued."""


class BagpipeTimeoutError(TimeoutError):
    """Timeout mode: the call did not finish within ``timeout`` seconds of being pushed."""


def _not_awaitable(fn: Callable[..., Any], got: object) -> TypeError:
    return TypeError(f"fn must return an awaitable (an async function's call); "
                     f"{getattr(fn, '__qualname__', fn)!r} returned {type(got).__name__}")


@dataclass(frozen=True)
class BagpipeStats:
    """What happened to every call pushed so far (running and waiting ones are on the pipe)."""

    submitted: int
    completed: int
    failed: int
    timed_out: int
    refused: int


def _check_ratio(ratio: object) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise TypeError(f"ratio must be a finite number > 0, got {ratio!r} of type {type(ratio).__name__}")
    if not (math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"ratio must be a finite number > 0, got {ratio!r}")
    return float(ratio)


class Bagpipe:
    """Run at most ``limit`` awaitable calls at once; queue the rest, bounded by time or room.

    >>> async def main():
    ...     pipe = Bagpipe(2, timeout=1.0)
    ...     async def work(x):
    ...         await asyncio.sleep(0)
    ...         return x * 2
    ...     return await asyncio.gather(*(pipe.push(work, i) for i in range(5))), pipe.stats()
    >>> asyncio.run(main())
    ([0, 2, 4, 6, 8], BagpipeStats(submitted=5, completed=5, failed=0, timed_out=0, refused=0))
    """

    def __init__(
        self,
        limit: int,
        *,
        refuse: bool = False,
        ratio: float = 1.0,
        timeout: float | None = None,
        on_full: Callable[[int], Any] | None = None,
    ) -> None:
        self._limit = check_int("limit", limit)
        if not isinstance(refuse, bool):
            raise TypeError(f"refuse must be True or False, got {refuse!r}")
        self._refuse = refuse
        self._ratio = _check_ratio(ratio)
        self._timeout = None if timeout is None else check_seconds("timeout", timeout)
        if on_full is not None:
            check_callable("on_full", on_full)
        self._on_full = on_full
        #: Waiting calls may number at most this in refuse mode; on_full fires when they reach it.
        self._room = round(self._limit * self._ratio)
        self._full_line = max(1, self._room)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._active = 0
        self._full = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._submitted = self._completed = self._failed = self._timed_out = self._refused = 0

    # ------------------------------------------------------------------ what a caller can read

    @property
    def limit(self) -> int:
        """Most calls that run at once."""
        return self._limit

    @property
    def active(self) -> int:
        """Calls running now."""
        return self._active

    @property
    def queue_length(self) -> int:
        """Calls waiting now."""
        return len(self._waiters)

    def stats(self) -> BagpipeStats:
        """Counts of every call pushed so far (see the module docstring for the invariant)."""
        return BagpipeStats(self._submitted, self._completed, self._failed, self._timed_out, self._refused)

    def __repr__(self) -> str:
        mode = "refuse" if self._refuse else "queue"
        return (f"Bagpipe(limit={self._limit}, {mode}, timeout={self._timeout}, "
                f"active={self._active}, queue_length={len(self._waiters)})")

    # ------------------------------------------------------------------ the queue

    async def push(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Run ``await fn(*args, **kwargs)`` when a slot is free and return its result.

        Raises what the call raises, :class:`TooMuchAsyncCallError` (refuse mode, line full) or
        :class:`BagpipeTimeoutError` (timeout mode, out of time).
        """
        if not callable(fn):
            check_callable("fn", fn)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._bind(loop)
        if self._timeout is not None:
            return await self._push_with_timeout(loop, fn, args, kwargs)
        # Without a timeout the whole path is inline: this is the hot path of a busy service.
        self._submitted += 1
        if self._active < self._limit and not self._waiters:
            self._active += 1
        else:
            waiter = self._join_line(loop)
            try:
                await waiter
            except BaseException:
                self._leave_line(waiter)
                self._failed += 1  # cancelled by its caller while waiting
                raise
        try:
            awaitable = fn(*args, **kwargs)
            if type(awaitable) is not _COROUTINE and not inspect.isawaitable(awaitable):
                raise _not_awaitable(fn, awaitable)
            value = await awaitable
        except BaseException:
            self._failed += 1
            self._release()
            raise
        self._completed += 1
        self._release()
        return value

    async def _push_with_timeout(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Awaitable[T]],
                                 args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """Timeout mode: one clock from the push to the end of the call, waiting included."""
        assert self._timeout is not None
        self._submitted += 1
        expiry = asyncio.timeout(self._timeout)  # started now: waiting counts against it
        if self._active < self._limit and not self._waiters:
            self._active += 1
            waiter = None
        else:
            waiter = self._join_line(loop)  # or refused, and counted as such
        running = waiter is None
        try:
            async with expiry:
                if waiter is not None:
                    try:
                        await waiter
                    except BaseException:
                        self._leave_line(waiter)
                        raise
                    running = True
                awaitable = fn(*args, **kwargs)
                if type(awaitable) is not _COROUTINE and not inspect.isawaitable(awaitable):
                    raise _not_awaitable(fn, awaitable)
                value = await awaitable
        except TimeoutError:
            if running:
                self._release()
            if not expiry.expired():
                self._failed += 1  # the call's own TimeoutError: a failure like any other
                raise
            self._timed_out += 1
            where = "the call did not finish" if running else "no slot came free"
            raise BagpipeTimeoutError(f"{where} within {self._timeout} s of its push") from None
        except BaseException:
            if running:
                self._release()
            self._failed += 1
            raise
        self._release()
        if expiry.expired():  # it swallowed the cancellation and returned late
            self._timed_out += 1
            raise BagpipeTimeoutError(f"the call did not finish within {self._timeout} s of its push")
        self._completed += 1
        return value

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not None:
            raise RuntimeError("this Bagpipe is used from another event loop; make one per loop")
        self._loop = loop

    def _join_line(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """Queue a call (or refuse it); the returned future is resolved when a slot is handed over."""
        if self._refuse and len(self._waiters) >= self._room:
            self._refused += 1
            raise TooMuchAsyncCallError(
                f"{len(self._waiters)} calls already wait for {self._limit} running ones")
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if len(self._waiters) >= self._full_line and not self._full:
            self._full = True
            self._notify_full()
        return waiter

    def _leave_line(self, waiter: asyncio.Future[None]) -> None:
        """A waiter gave up (timeout or cancellation); pass on a slot it was handed meanwhile."""
        if waiter.done() and not waiter.cancelled():
            self._release()
        else:
            self._waiters.remove(waiter)
            self._line_shrank()

    def _release(self) -> None:
        """A call stopped: hand its slot to the oldest waiter still waiting, or free it."""
        for waiter in self._waiters:
            # A waiter that is done was cancelled (its timeout or its caller): its own task
            # removes it and counts it, so the stats add up at every moment.
            if not waiter.done():
                waiter.set_result(None)
                self._waiters.remove(waiter)
                self._line_shrank()
                return
        self._active -= 1
        self._line_shrank()

    def _line_shrank(self) -> None:
        if self._full and len(self._waiters) < self._full_line:
            self._full = False

    def _notify_full(self) -> None:
        if self._on_full is None:
            return
        try:
            self._on_full(len(self._waiters))
        except Exception:  # an alert hook must not break the queue it watches
            log.exception("Bagpipe on_full callback raised")
