"""The queue trap in the standard library, and what each waiting call costs (chapter 04).

Each function lets a consumer get stuck (a worker thread, a log handler or a backend that does
not answer), keeps producing, and measures with tracemalloc what the waiting work holds after
each of :data:`CHECKPOINTS` calls; then it unblocks the consumer and stops every thread and task
it started. The unbounded standard tool is compared with a bounded one:

- :func:`executor_pile_up`: ``ThreadPoolExecutor``'s work queue (unbounded, CPython issue 73781)
  against :class:`~leaklab.queues.BoundedExecutor` with ``policy="reject"``;
- :func:`logging_pile_up`: ``QueueHandler`` over an unbounded ``queue.Queue()`` against
  :class:`~leaklab.queues.BoundedQueueHandler`, both drained by the standard ``QueueListener``;
- :func:`task_pile_up` (a coroutine): one ``asyncio`` task per request, as servers do, with no
  bound, behind an ``asyncio.Semaphore`` (which bounds the calls running, not those waiting), and
  with ``asyncio.timeout`` around the awaited call (which bounds how long each one waits);
- :func:`waiting_call_bytes` (a coroutine): the bytes one waiting call costs, before its
  arguments, for several ways to wait, a :class:`~leaklab.bagpipe.Bagpipe` call among them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import logging.handlers
import queue
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from leaklab._checks import check_int
from leaklab.bagpipe import Bagpipe
from leaklab.queues import BoundedExecutor, BoundedQueueHandler, QueueFullError

__all__ = ["CHECKPOINTS", "PAYLOAD_BYTES", "ROOM", "TASK_VARIANTS", "WAITING_KINDS", "TaskServer",
           "executor_pile_up", "logging_pile_up", "task_pile_up", "waiting_call_bytes"]

#: Calls after which the memory held is measured.
CHECKPOINTS = (500, 2_500)
#: What each call carries (its arguments, a log message, a request body).
PAYLOAD_BYTES = 1_024
#: The bound of every bounded variant: this many calls may wait.
ROOM = 100
TASK_VARIANTS = ("create_task", "Semaphore(100)", "asyncio.timeout(0.05)")
WAITING_KINDS = ("asyncio.Task waiting on an Event", "asyncio.Task waiting on a Semaphore",
                 "Bagpipe.push waiting (its task included)", "ThreadPoolExecutor work item",
                 "run_in_executor from a task")


@contextmanager
def _traced() -> Iterator[Callable[[], int]]:
    """Trace allocations for the block; yields a function that returns the bytes held now, net of
    what was held when the block began."""
    gc.collect()
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    try:
        yield lambda: tracemalloc.get_traced_memory()[0] - start
    finally:
        if started_here:
            tracemalloc.stop()


def _check_checkpoints(checkpoints: tuple[int, ...]) -> int:
    if not isinstance(checkpoints, tuple):
        raise TypeError(f"checkpoints must be a tuple of counts, got {checkpoints!r}")
    for n in checkpoints:
        check_int("checkpoints", n)
    if not checkpoints or list(checkpoints) != sorted(set(checkpoints)):
        raise ValueError(f"checkpoints must be increasing counts >= 1, got {checkpoints!r}")
    return checkpoints[-1]


def _check_bounded(bounded: object) -> None:
    if not isinstance(bounded, bool):
        raise TypeError(f"bounded must be True or False, got {bounded!r}")


# --------------------------------------------------------------------------- thread pool


def _stuck(started: threading.Event, gate: threading.Event) -> None:
    started.set()
    gate.wait()


def executor_pile_up(bounded: bool, checkpoints: tuple[int, ...] = CHECKPOINTS) -> dict[str, Any]:
    """Submit work carrying ``PAYLOAD_BYTES`` each to a one-thread pool whose thread is stuck.

    Returns ``held`` (bytes held after each checkpoint), ``waiting`` (work items waiting at the
    end) and ``refused`` (submits that raised :class:`QueueFullError`).
    """
    _check_bounded(bounded)
    calls = _check_checkpoints(checkpoints)
    pool = (BoundedExecutor(1, max_queue=ROOM, policy="reject") if bounded
            else ThreadPoolExecutor(max_workers=1))
    started, gate = threading.Event(), threading.Event()
    futures, held, refused = [], {}, 0
    try:
        pool.submit(_stuck, started, gate)
        started.wait()  # the only worker is busy from now on
        with _traced() as traced:
            for n in range(1, calls + 1):
                try:
                    futures.append(pool.submit(len, bytes(PAYLOAD_BYTES)))
                except QueueFullError:
                    refused += 1
                if n in checkpoints:
                    held[n] = traced()
        waiting = sum(not f.running() and not f.done() for f in futures)
    finally:
        gate.set()
        pool.shutdown(wait=True, cancel_futures=True)
    return {"held": held, "waiting": waiting, "refused": refused}


# --------------------------------------------------------------------------- logging


class _StuckHandler(logging.Handler):
    """A log handler whose destination stops answering until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.gate = threading.Event(), threading.Event()
        self.handled = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.entered.set()
        self.gate.wait()
        self.handled += 1


def logging_pile_up(bounded: bool, checkpoints: tuple[int, ...] = CHECKPOINTS) -> dict[str, Any]:
    """Log records of ``PAYLOAD_BYTES`` through a queue handler whose listener is stuck.

    Returns ``held`` (bytes after each checkpoint), ``waiting`` (records in the queue at the
    end), ``dropped`` (records the bounded handler dropped) and ``handled`` (records the
    destination got once it answered again).
    """
    _check_bounded(bounded)
    records = _check_checkpoints(checkpoints)
    handler: logging.handlers.QueueHandler = (
        BoundedQueueHandler(ROOM) if bounded else logging.handlers.QueueHandler(queue.Queue()))
    destination = _StuckHandler()
    listener = logging.handlers.QueueListener(handler.queue, destination)
    logger = logging.getLogger(f"{__name__}.{'bounded' if bounded else 'unbounded'}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    listener.start()
    held = {}
    try:
        logger.info("first record")
        destination.entered.wait()  # the listener holds it and is stuck from now on
        body = "x" * PAYLOAD_BYTES
        with _traced() as traced:
            for n in range(1, records + 1):
                logger.info("request %d: %s", n, body)
                if n in checkpoints:
                    held[n] = traced()
        waiting = handler.queue.qsize()
    finally:
        destination.gate.set()
        handler.queue.join()  # the listener catches up; then stopping it finds room for its sentinel
        listener.stop()
        logger.removeHandler(handler)
        handler.close()
    return {"held": held, "waiting": waiting, "dropped": getattr(handler, "dropped", 0),
            "handled": destination.handled}


# --------------------------------------------------------------------------- asyncio tasks


class TaskServer:
    """Handles each request in its own task; the backend it awaits does not answer."""

    def __init__(self, variant: str) -> None:
        self.variant = variant
        self.backend_answers = asyncio.Event()
        self.semaphore = asyncio.Semaphore(ROOM)
        self.timed_out = 0

    async def backend(self, request: bytes) -> int:
        await self.backend_answers.wait()
        return len(request)

    async def handle(self, request: bytes) -> None:
        if self.variant == "create_task":
            await self.backend(request)
        elif self.variant == "Semaphore(100)":
            async with self.semaphore:  # bounds the calls running, not those waiting
                await self.backend(request)
        else:
            try:
                async with asyncio.timeout(0.05):  # every awaited call gets a deadline
                    await self.backend(request)
            except TimeoutError:
                self.timed_out += 1


async def task_pile_up(variant: str, rate: float = 5_000,
                       checkpoints: tuple[int, ...] = CHECKPOINTS) -> dict[str, Any]:
    """Start one task per request, ``rate`` requests a second, each carrying ``PAYLOAD_BYTES``,
    while the backend does not answer.

    Returns ``waiting`` (tasks not finished after each checkpoint), ``most_waiting`` (the most
    at any time) and ``timed_out``. (What one waiting task holds is :func:`waiting_call_bytes`'s
    subject: tracing every allocation here would slow the loop below ``rate``.)
    """
    if variant not in TASK_VARIANTS:
        raise ValueError(f"variant must be one of {TASK_VARIANTS}, got {variant!r}")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < float("inf"):
        raise ValueError(f"rate must be a finite number > 0 of requests a second, got {rate!r}")
    requests = _check_checkpoints(checkpoints)
    server = TaskServer(variant)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    waiting, most = {}, 0
    try:
        start, sent = loop.time(), 0
        while sent < requests:
            due = min(requests, int(rate * (loop.time() - start)))
            for n in range(sent + 1, due + 1):
                task = asyncio.create_task(server.handle(bytes(PAYLOAD_BYTES)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                if n in checkpoints:
                    waiting[n] = sum(not t.done() for t in tasks)
            sent = max(sent, due)
            most = max(most, len(tasks))
            await asyncio.sleep(0.002)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"waiting": waiting, "most_waiting": most, "timed_out": server.timed_out}


# --------------------------------------------------------------------------- cost of waiting


async def _nothing() -> None:
    return None


async def waiting_call_bytes(kind: str, n: int = 5_000) -> float:
    """Bytes held per call, for ``n`` calls waiting the ``kind`` way (one of
    :data:`WAITING_KINDS`) behind a call that does not end; the calls carry no arguments."""
    if kind not in WAITING_KINDS:
        raise ValueError(f"kind must be one of {WAITING_KINDS}, got {kind!r}")
    check_int("n", n)
    never = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    gate = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        if kind == "ThreadPoolExecutor work item" or kind == "run_in_executor from a task":
            started = threading.Event()
            pool.submit(_stuck, started, gate)
            started.wait()
        semaphore = asyncio.Semaphore(1)
        await semaphore.acquire()
        pipe = Bagpipe(1)
        tasks.append(asyncio.create_task(pipe.push(never.wait)))  # the call that does not end
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()

        async def on_semaphore() -> None:
            async with semaphore:
                await _nothing()

        async def via_executor() -> None:
            await loop.run_in_executor(pool, int)

        with _traced() as traced:
            if kind == "ThreadPoolExecutor work item":
                futures = [pool.submit(int) for _ in range(n)]  # noqa: F841 (held while measured)
            elif kind == "run_in_executor from a task":
                tasks += [asyncio.create_task(via_executor()) for _ in range(n)]
            elif kind == "asyncio.Task waiting on an Event":
                tasks += [asyncio.create_task(never.wait()) for _ in range(n)]
            elif kind == "asyncio.Task waiting on a Semaphore":
                tasks += [asyncio.create_task(on_semaphore()) for _ in range(n)]
            else:
                tasks += [asyncio.create_task(pipe.push(_nothing)) for _ in range(n)]
            await asyncio.sleep(0)  # every task runs up to its wait
            per_call = traced() / n
        semaphore.release()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        gate.set()
        pool.shutdown(wait=True, cancel_futures=True)
    return per_call
