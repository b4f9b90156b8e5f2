"""Bounded queues for threads and logging, and an alert on queue length (chapter 04).

The standard library's producer/consumer tools queue without a bound by default, so a consumer
that falls behind turns into memory that only grows:

- ``concurrent.futures.ThreadPoolExecutor`` keeps every submitted work item (function, arguments,
  future) in an unbounded queue (CPython issue 73781). :class:`BoundedExecutor` caps the work that
  is waiting to start, and blocks, waits with a timeout or refuses when the cap is reached.
- ``logging.handlers.QueueHandler`` is usually given an unbounded ``queue.Queue()``.
  :class:`BoundedQueueHandler` owns a bounded one and drops (and counts) what does not fit.
- A queue that grows is a symptom worth an alert before it is an outage. :class:`QueueMonitor`
  samples any length (``len(q)``, ``q.qsize()``, ``pipe.queue_length``) in a thread, calls
  ``on_alert`` when it crosses a high line and ``on_recover`` when it is back under a low one
  (hysteresis, so it does not flap), and keeps a bounded history to plot.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from leaklab._checks import check_callable, check_int, check_seconds

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BoundedExecutor", "BoundedQueueHandler", "QueueFullError", "QueueListener", "QueueMonitor"]

log = logging.getLogger(__name__)

POLICIES = ("block", "reject", "timeout")


class QueueFullError(Exception):
    """The executor's queue of work waiting to start is full (policy "reject" or "timeout")."""


# --------------------------------------------------------------------------- executor


class _Slot:
    """One unit of room in a BoundedExecutor's queue, given back exactly once: when the work
    starts, or when its future ends without running (cancelled)."""

    __slots__ = ("_executor", "_held")

    def __init__(self, executor: BoundedExecutor) -> None:
        self._executor = executor
        self._held = True

    def give_back(self, _future: Future[Any] | None = None) -> None:
        if not self._held:  # the usual case for the done callback: given back when it started
            return
        executor = self._executor
        with executor._lock:
            if not self._held:
                return
            self._held = False
            executor._pending -= 1
            if executor._waiting:
                executor._room.notify()


def _started(slot: _Slot, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    slot.give_back()
    return fn(*args, **kwargs)


class BoundedExecutor(Executor):
    """A thread pool whose work waiting to start never exceeds ``max_queue`` items.

    ``policy`` says what ``submit`` does when the queue is full: ``"block"`` waits for room,
    ``"reject"`` raises :class:`QueueFullError` at once, ``"timeout"`` waits up to ``timeout``
    seconds and then raises it. Everything else is ``ThreadPoolExecutor``'s behaviour.

    >>> with BoundedExecutor(2, max_queue=4) as pool:
    ...     sorted(pool.map(abs, [-3, 1, -2]))
    [1, 2, 3]
    """

    def __init__(self, max_workers: int, max_queue: int, *, policy: str = "block",
                 timeout: float | None = None) -> None:
        self._max_workers = check_int("max_workers", max_workers)
        self._max_queue = check_int("max_queue", max_queue)
        if not isinstance(policy, str):
            raise TypeError(f"policy must be one of {POLICIES}, got {policy!r}")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if policy == "timeout":
            if timeout is None:
                raise ValueError('policy="timeout" needs timeout= (seconds to wait for room)')
            check_seconds("timeout", timeout)
        elif timeout is not None:
            raise ValueError(f'timeout applies only to policy="timeout", not {policy!r}')
        self._policy = policy
        self._timeout = timeout
        self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="BoundedExecutor")
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._pending = 0
        self._waiting = 0  # submits blocked for room: only then is there anyone to notify
        self._shutdown = False

    @property
    def pending(self) -> int:
        """Work submitted and not started yet (the backlog)."""
        return self._pending

    @property
    def max_queue(self) -> int:
        """The most work that may wait to start."""
        return self._max_queue

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; with the queue full, act on ``policy`` first.

        Raises:
            QueueFullError: the queue is full and ``policy`` is ``"reject"``, or stayed full
                for ``timeout`` seconds under ``"timeout"``.
            RuntimeError: the executor was shut down.
        """
        if not callable(fn):
            check_callable("fn", fn)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a BoundedExecutor after shutdown")
            if self._pending >= self._max_queue:
                self._wait_for_room()
            self._pending += 1
        slot = _Slot(self)
        try:
            future = self._pool.submit(_started, slot, fn, args, kwargs)
        except BaseException:
            slot.give_back()
            raise
        future.add_done_callback(slot.give_back)
        return future

    def _wait_for_room(self) -> None:
        """Called with the lock held and the queue full: apply the policy."""
        if self._policy == "reject":
            raise QueueFullError(f"{self._pending} items wait to start (max_queue={self._max_queue})")
        wait = None if self._policy == "block" else self._timeout
        self._waiting += 1
        try:
            room = self._room.wait_for(lambda: self._shutdown or self._pending < self._max_queue, wait)
        finally:
            self._waiting -= 1
        if self._shutdown:
            raise RuntimeError("the BoundedExecutor was shut down while submit waited for room")
        if not room:
            raise QueueFullError(f"no room in {self._timeout} s (max_queue={self._max_queue})")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            self._room.notify_all()
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


# --------------------------------------------------------------------------- logging


class BoundedQueueHandler(logging.handlers.QueueHandler):
    """A ``QueueHandler`` over its own ``queue.Queue(maxsize=max_queue)`` (``.queue``).

    Pair it with ``handler.listener(*handlers)`` (a ``QueueListener`` whose ``stop()`` also works
    when the queue is full; the standard one raises ``queue.Full`` there). When the
    queue is full the record is dropped and counted in ``dropped`` (``block=False``, the default),
    or the logging call waits up to ``timeout`` seconds for room (``block=True``; ``timeout=None``
    waits as long as it takes) and then drops and counts. A full queue never prints a traceback.
    """

    def __init__(self, max_queue: int, *, block: bool = False, timeout: float | None = None) -> None:
        size = check_int("max_queue", max_queue)
        if not isinstance(block, bool):
            raise TypeError(f"block must be True or False, got {block!r}")
        if timeout is not None:
            if not block:
                raise ValueError("timeout applies only with block=True")
            check_seconds("timeout", timeout)
        super().__init__(queue.Queue(maxsize=size))
        self.block = block
        self.timeout = timeout
        self._dropped = 0
        self._count_lock = threading.Lock()

    @property
    def dropped(self) -> int:
        """Records dropped because the queue was full."""
        return self._dropped

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put(record, block=self.block, timeout=self.timeout)
        except queue.Full:
            with self._count_lock:
                self._dropped += 1

    def listener(self, *handlers: logging.Handler, respect_handler_level: bool = False) -> QueueListener:
        """A ``QueueListener`` on this handler's queue whose ``stop()`` works on a full queue
        (the standard one puts its stop signal with ``put_nowait`` and raises ``queue.Full``)."""
        return QueueListener(self.queue, *handlers, respect_handler_level=respect_handler_level)


class QueueListener(logging.handlers.QueueListener):
    """The standard listener, except that ``stop()`` waits for room for its stop signal instead
    of failing with ``queue.Full`` when the bounded queue is full."""

    def enqueue_sentinel(self) -> None:
        self.queue.put(self._sentinel)


# --------------------------------------------------------------------------- monitor


class QueueMonitor:
    """Watch a queue's length in a daemon thread and alert when it piles up.

    Every ``interval`` seconds it calls ``length()``. When the length reaches ``high`` it calls
    ``on_alert(n)`` and counts an alert; once it is back at ``low`` or below (default
    ``high // 2``) it calls ``on_recover(n)``. Between the two lines nothing changes, so a length
    that hovers around ``high`` does not flap. The last ``history_size`` samples are kept
    (``history()``), however long it runs. An exception from ``length()`` or a callback is logged
    and counted in ``errors``; the thread goes on.

    >>> backlog = []
    >>> with QueueMonitor(lambda: len(backlog), high=100, interval=0.01) as monitor:
    ...     pass
    >>> monitor.alerts, monitor.running
    (0, False)
    """

    def __init__(
        self,
        length: Callable[[], int],
        *,
        high: int,
        low: int | None = None,
        interval: float = 0.1,
        on_alert: Callable[[int], Any] | None = None,
        on_recover: Callable[[int], Any] | None = None,
        history_size: int = 10_000,
    ) -> None:
        check_callable("length", length)
        self._high = check_int("high", high)
        self._low = self._high // 2 if low is None else check_int("low", low, 0)
        if self._low >= self._high:
            raise ValueError(f"low must be below high ({self._high}), got {low!r}")
        self._interval = check_seconds("interval", interval)
        for name, callback in (("on_alert", on_alert), ("on_recover", on_recover)):
            if callback is not None:
                check_callable(name, callback)
        self._length = length
        self._on_alert = on_alert
        self._on_recover = on_recover
        self._history: deque[tuple[float, int]] = deque(maxlen=check_int("history_size", history_size))
        self._alerting = False
        self.alerts = 0
        self.recoveries = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = time.monotonic()

    @property
    def high(self) -> int:
        return self._high

    @property
    def low(self) -> int:
        return self._low

    @property
    def alerting(self) -> bool:
        """True between an alert and the recovery that follows it."""
        return self._alerting

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> QueueMonitor:
        """Start sampling in a daemon thread (once at a time)."""
        if self.running:
            raise RuntimeError("this QueueMonitor is already running")
        self._stop.clear()
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._watch, name="QueueMonitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling and join the thread (returns within about one ``length()`` call)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __enter__(self) -> QueueMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check(self) -> int | None:
        """Take one sample now (the thread calls this every ``interval``); returns the length,
        or None when ``length()`` raised."""
        try:
            n = self._length()
        except Exception:
            self.errors += 1
            log.exception("QueueMonitor: length() raised")
            return None
        self._history.append((time.monotonic() - self._started_at, n))
        if not self._alerting and n >= self._high:
            self._alerting = True
            self.alerts += 1
            self._call(self._on_alert, "on_alert", n)
        elif self._alerting and n <= self._low:
            self._alerting = False
            self.recoveries += 1
            self._call(self._on_recover, "on_recover", n)
        return n

    def _call(self, callback: Callable[[int], Any] | None, name: str, n: int) -> None:
        if callback is None:
            return
        try:
            callback(n)
        except Exception:
            self.errors += 1
            log.exception("QueueMonitor: %s raised", name)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._stop.wait(self._interval)

    def samples(self) -> list[tuple[float, int]]:
        """The kept samples as ``(seconds since start, length)`` pairs (no pandas needed)."""
        return list(self._history)

    def history(self) -> pd.DataFrame:
        """The kept samples: columns ``seconds`` (since start) and ``length``."""
        import pandas as pd

        return pd.DataFrame(self.samples(), columns=["seconds", "length"])
