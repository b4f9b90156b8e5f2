"""Chapter 04's service: an asyncio request handler that logs every request and waits for it.

Every request builds a log record (about 2 KiB: the request's id, user, path and body) and hands
it to a log writer through Python's usual asynchronous path for blocking work: one
``ThreadPoolExecutor`` thread owns the log, and the handler awaits
``loop.run_in_executor(writer, sink.write, record)``. While it waits, the handler's task, its
frame and the record stay alive. Two sinks (:data:`SINKS`):

- ``"sqlite"``: :class:`SqliteLog`, a real SQLite database on disk that commits every record
  (SQLite's default, durable settings: each commit waits for the disk);
- ``"file"``: :class:`FileLog`, the same records appended to a file, one JSON line each; it can be
  told to stall once (``stall=(at, seconds)``), like a disk that stops answering for a moment.

Three ways to wait for the writer (:data:`MODES`): ``"unbounded"`` (every handler waits as long
as it takes), ``"timeout"`` (through a :class:`~leaklab.bagpipe.Bagpipe` in timeout mode) and
``"refuse"`` (a Bagpipe in refuse mode). A :class:`~leaklab.queues.QueueMonitor` watches the
number of requests waiting for their log write, raises an alert when it reaches
:data:`HIGH` and a recovery when it is back at :data:`LOW`, and its samples are kept.

:func:`serve` runs the service under a steady stream of requests in a fresh event loop (so that
``track_isolated`` can run it in a fresh process) and reports its progress with
:func:`leaklab.measure.progress`. Every file it writes lives in a temporary directory that is
removed before it returns; every thread it starts is stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from leaklab._checks import check_int, check_seconds
from leaklab.bagpipe import Bagpipe, BagpipeTimeoutError, TooMuchAsyncCallError
from leaklab.measure import progress
from leaklab.queues import QueueMonitor

__all__ = ["SINKS", "MODES", "OUTCOMES", "HIGH", "LOW", "BODY_BYTES", "FAIL_EVERY",
           "make_record", "SqliteLog", "FileLog", "LogService", "serve", "write_rate"]

SINKS = ("sqlite", "file")
MODES = ("unbounded", "timeout", "refuse")
#: What can happen to a request's log record; ``"abandoned"`` means still waiting at shutdown.
OUTCOMES = ("completed", "failed", "timed out", "refused", "abandoned")
#: The monitor's lines: alert when this many requests wait for their log write ...
HIGH = 1_000
#: ... and recover when no more than this many do.
LOW = 100
BODY_BYTES = 2_048
#: Every FAIL_EVERY-th request has no user, which the database refuses (NOT NULL).
FAIL_EVERY = 50


def make_record(request_id: int) -> dict[str, Any]:
    """The log record of one request: about ``BODY_BYTES`` of body plus a few fields."""
    user = None if request_id % FAIL_EVERY == FAIL_EVERY - 1 else f"user-{request_id % 97}"
    body = f"{request_id:08d}".ljust(BODY_BYTES, ".")
    return {"id": request_id, "user": user, "path": "/orders", "at": time.time(), "body": body}


class SqliteLog:
    """A log in a real SQLite database on disk, one transaction and one commit per record."""

    def __init__(self, path: str) -> None:
        # One writer thread uses the connection; it is made here, so say that is allowed.
        self.connection = sqlite3.connect(path, check_same_thread=False)
        self.connection.execute(
            "CREATE TABLE requests (id INTEGER, user TEXT NOT NULL, path TEXT, at REAL, body TEXT)")
        self.connection.commit()

    def write(self, record: dict[str, Any]) -> None:
        with self.connection:  # commit (and wait for the disk) before returning
            self.connection.execute("INSERT INTO requests VALUES (:id, :user, :path, :at, :body)", record)

    def rows(self) -> int:
        return self.connection.execute("SELECT count(*) FROM requests").fetchone()[0]

    def close(self) -> None:
        self.connection.close()


class FileLog:
    """The same records appended to a file, one JSON line each, flushed at every record.

    ``stall=(at, seconds)``: the first write after ``at`` seconds (counted from the first
    write) blocks for ``seconds``, like a disk that stops answering for a moment.
    """

    def __init__(self, path: str, stall: tuple[float, float] | None = None) -> None:
        self.file = open(path, "a", encoding="utf-8")
        self.lines = 0
        self._stall = stall
        self._started: float | None = None

    def write(self, record: dict[str, Any]) -> None:
        if self._stall is not None:
            now = time.monotonic()
            if self._started is None:
                self._started = now
            elif now - self._started >= self._stall[0]:
                time.sleep(self._stall[1])
                self._stall = None
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        self.lines += 1

    def rows(self) -> int:
        return self.lines

    def close(self) -> None:
        self.file.close()


class LogService:
    """Handles requests; each one logs its record through one writer thread and waits for it."""

    def __init__(self, sink: SqliteLog | FileLog, pipe: Bagpipe | None = None) -> None:
        self.sink = sink
        self.pipe = pipe
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-writer")
        self.waiting = 0          # requests waiting for their log write (the backlog)
        self.outcomes: Counter[str] = Counter()

    async def log(self, record: dict[str, Any]) -> None:
        """Write one record in the writer thread (the usual way to call blocking code)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.writer, self.sink.write, record)

    async def handle(self, request_id: int) -> None:
        """One request: build its record, log it, wait until it is written."""
        record = make_record(request_id)
        self.waiting += 1
        try:
            if self.pipe is None:
                await self.log(record)
            else:
                await self.pipe.push(self.log, record)
            outcome = "completed"
        except BagpipeTimeoutError:
            outcome = "timed out"
        except TooMuchAsyncCallError:
            outcome = "refused"
        except sqlite3.Error:
            outcome = "failed"
        finally:
            self.waiting -= 1
        self.outcomes[outcome] += 1

    def close(self) -> int:
        """Stop the writer thread (dropping the writes that have not started) and close the sink;
        return the records it holds."""
        self.writer.shutdown(wait=True, cancel_futures=True)
        rows = self.sink.rows()
        self.sink.close()
        return rows


def _pipe(mode: str, timeout: float, room: int) -> Bagpipe | None:
    if mode == "unbounded":
        return None
    if mode == "timeout":
        return Bagpipe(1, timeout=timeout)
    return Bagpipe(1, refuse=True, ratio=room)


async def _traffic(service: LogService, rate: float, seconds: float) -> tuple[int, set[asyncio.Task[None]]]:
    """Start one task per request, ``rate`` a second for ``seconds``; return how many, and the
    tasks not finished yet."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    start = loop.time()
    sent = reported = 0
    while (elapsed := loop.time() - start) < seconds:
        due = int(rate * elapsed)  # catch up after a late tick: the rate is kept on average
        for request_id in range(sent, due):
            task = asyncio.create_task(service.handle(request_id))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sent = due
        if sent - reported >= rate / 20:
            progress(sent)
            reported = sent
        await asyncio.sleep(0.005)
    progress(sent)
    return sent, tasks


async def _run(sink_name: str, mode: str, rate: float, seconds: float, timeout: float, room: int,
               stall: tuple[float, float] | None, drain: float, directory: str) -> dict[str, Any]:
    if sink_name == "sqlite":
        sink: SqliteLog | FileLog = SqliteLog(os.path.join(directory, "requests.db"))
    else:
        sink = FileLog(os.path.join(directory, "requests.jsonl"), stall=stall)
    service = LogService(sink, _pipe(mode, timeout, room))
    samples: list[tuple[float, int]] = []
    events: list[tuple[float, str, int]] = []
    t0 = time.monotonic()

    def backlog() -> int:  # what the monitor samples; its samples are kept for the figure
        n = service.waiting
        samples.append((time.monotonic() - t0, n))
        return n

    monitor = QueueMonitor(backlog, high=HIGH, low=LOW, interval=0.05,
                           on_alert=lambda n: events.append((time.monotonic() - t0, "alert", n)),
                           on_recover=lambda n: events.append((time.monotonic() - t0, "recover", n)))
    try:
        with monitor:
            submitted, tasks = await _traffic(service, rate, seconds)
            load_seconds = time.monotonic() - t0
            if tasks and drain > 0:  # a consumer that keeps up empties its backlog quickly
                await asyncio.wait(tasks, timeout=drain)
            monitor.check()  # one last sample: the state the run ends in
        left = list(tasks)
        for task in left:  # whatever still waits is dropped ("abandoned"): the run is over
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        service.outcomes["abandoned"] = sum(task.cancelled() for task in left)
    finally:
        rows = service.close()
    outcomes = {name: service.outcomes[name] for name in OUTCOMES}
    stats = service.pipe.stats() if service.pipe is not None else None
    return {
        "sink": sink_name, "mode": mode, "rate": rate, "seconds": load_seconds,
        "submitted": submitted, "outcomes": outcomes, "rows": rows,
        "pipe_stats": None if stats is None else dataclasses.asdict(stats),
        "backlog": samples, "events": events, "alerts": monitor.alerts, "recoveries": monitor.recoveries,
        "max_backlog": max((n for _, n in samples), default=0),
    }


def serve(sink: str = "sqlite", mode: str = "unbounded", *, rate: float = 2_000, seconds: float = 3.0,
          timeout: float = 0.1, room: int = 8, stall: tuple[float, float] | None = None,
          drain: float = 0.0) -> dict[str, Any]:
    """Run the service for ``seconds`` under ``rate`` requests a second; return what happened.

    ``mode`` "timeout" pushes each write through ``Bagpipe(1, timeout=timeout)``; "refuse" through
    ``Bagpipe(1, refuse=True, ratio=room)`` (``room`` writes may wait). After the load, up to
    ``drain`` seconds are left for the backlog to empty; whatever still waits is then cancelled
    and counted as ``"abandoned"``. The result has ``submitted``, ``outcomes`` (a count for each of
    :data:`OUTCOMES`), ``rows`` (records in the log), ``backlog`` (the monitor's samples:
    ``(seconds, requests waiting)``), the monitor's ``events``, ``alerts`` and ``recoveries``.
    """
    _check_sink(sink)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    _check_rate(rate)
    check_seconds("seconds", seconds)
    check_seconds("timeout", timeout)
    check_int("room", room)
    if drain != 0:
        check_seconds("drain", drain)
    if stall is not None:
        if not isinstance(stall, tuple) or len(stall) != 2:
            raise TypeError(f"stall must be None or a pair (at, seconds), got {stall!r}")
        check_seconds("stall[1]", stall[1])
        if stall[0] != 0:
            check_seconds("stall[0]", stall[0])
    threads_before = threading.active_count()
    with tempfile.TemporaryDirectory(prefix="leaklab-queue-") as directory:
        result = asyncio.run(_run(sink, mode, rate, seconds, timeout, room, stall, drain, directory))
    result["threads_left"] = threading.active_count() - threads_before
    return result


def _check_rate(rate: object) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise TypeError(f"rate must be a number of requests a second, got {rate!r}")
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a finite number > 0 of requests a second, got {rate!r}")


def _check_sink(sink: str) -> None:
    if sink not in SINKS:
        raise ValueError(f"sink must be one of {SINKS}, got {sink!r}")


def write_rate(sink: str = "sqlite", records: int = 100) -> float:
    """Records a second one sink writes when nothing else runs (the consumer's own speed)."""
    _check_sink(sink)
    check_int("records", records)
    with tempfile.TemporaryDirectory(prefix="leaklab-queue-") as directory:
        log = SqliteLog(os.path.join(directory, "r.db")) if sink == "sqlite" else FileLog(
            os.path.join(directory, "r.jsonl"))
        started = time.perf_counter()
        for request_id in range(records):
            log.write(make_record(request_id * FAIL_EVERY))  # never a failing record
        elapsed = time.perf_counter() - started
        log.close()
    return records / elapsed
