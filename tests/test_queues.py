"""Tests for leaklab.queues: BoundedExecutor, BoundedQueueHandler and QueueMonitor (chapter 04)."""

from __future__ import annotations

import logging
import logging.handlers
import math
import threading
import time
from concurrent.futures import CancelledError, ThreadPoolExecutor

import pytest

from leaklab.queues import BoundedExecutor, BoundedQueueHandler, QueueFullError, QueueMonitor


def _no_thread_named(prefix: str) -> bool:
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if not any(t.name.startswith(prefix) and t.is_alive() for t in threading.enumerate()):
            return True
        time.sleep(0.01)
    return False


# --------------------------------------------------------------------------- BoundedExecutor


@pytest.mark.parametrize("kwargs, error, name", [
    ({"max_workers": 0, "max_queue": 1}, ValueError, "max_workers"),
    ({"max_workers": 1.0, "max_queue": 1}, TypeError, "max_workers"),
    ({"max_workers": 1, "max_queue": 0}, ValueError, "max_queue"),
    ({"max_workers": 1, "max_queue": True}, TypeError, "max_queue"),
    ({"max_workers": 1, "max_queue": 1, "policy": "drop"}, ValueError, "policy"),
    ({"max_workers": 1, "max_queue": 1, "policy": 1}, TypeError, "policy"),
    ({"max_workers": 1, "max_queue": 1, "policy": "timeout"}, ValueError, "timeout"),
    ({"max_workers": 1, "max_queue": 1, "policy": "timeout", "timeout": 0}, ValueError, "timeout"),
    ({"max_workers": 1, "max_queue": 1, "policy": "timeout", "timeout": math.nan}, ValueError, "timeout"),
    ({"max_workers": 1, "max_queue": 1, "policy": "block", "timeout": 1}, ValueError, "timeout"),
])
def test_executor_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=name):
        BoundedExecutor(**kwargs)


def test_executor_runs_work_and_returns_results():
    with BoundedExecutor(2, max_queue=3) as pool:
        assert pool.submit(pow, 2, 10).result() == 1024
        assert list(pool.map(abs, range(-5, 0))) == [5, 4, 3, 2, 1]
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result()
    assert _no_thread_named("BoundedExecutor")


def test_executor_refuses_a_non_callable():
    with BoundedExecutor(1, max_queue=1) as pool, pytest.raises(TypeError, match="fn"):
        pool.submit(3)


def test_reject_policy_refuses_once_max_queue_items_wait_while_the_standard_pool_piles_up():
    gate = threading.Event()
    with BoundedExecutor(1, max_queue=3, policy="reject") as pool:
        pool.submit(gate.wait)            # running
        time.sleep(0.05)
        waiting = [pool.submit(time.sleep, 0) for _ in range(3)]
        assert pool.pending == 3
        with pytest.raises(QueueFullError):
            pool.submit(time.sleep, 0)
        assert pool.pending == 3
        gate.set()
        for f in waiting:
            f.result()
        assert pool.pending == 0
        pool.submit(time.sleep, 0).result()  # room again
    # The standard executor takes everything: its work queue has no bound (CPython issue 73781).
    gate.clear()
    with ThreadPoolExecutor(1) as std:
        std.submit(gate.wait)
        for _ in range(1_000):
            std.submit(time.sleep, 0)
        assert std._work_queue.qsize() >= 999
        gate.set()


def test_block_policy_waits_for_room_and_never_holds_more_than_max_queue():
    pending_seen = []
    with BoundedExecutor(2, max_queue=4) as pool:
        for _ in range(60):
            pool.submit(time.sleep, 0.002)
            pending_seen.append(pool.pending)
    assert max(pending_seen) <= 4 and max(pending_seen) >= 3  # it did fill, and it did not pass 4
    assert pool.pending == 0


def test_timeout_policy_waits_then_refuses():
    gate = threading.Event()
    pool = BoundedExecutor(1, max_queue=1, policy="timeout", timeout=0.05)
    try:
        pool.submit(gate.wait)
        time.sleep(0.02)
        pool.submit(time.sleep, 0)
        started = time.monotonic()
        with pytest.raises(QueueFullError):
            pool.submit(time.sleep, 0)
        assert time.monotonic() - started >= 0.04
    finally:
        gate.set()
        pool.shutdown()


def test_cancelled_work_gives_its_room_back():
    gate = threading.Event()
    with BoundedExecutor(1, max_queue=2, policy="reject") as pool:
        pool.submit(gate.wait)
        time.sleep(0.02)
        doomed = [pool.submit(time.sleep, 0) for _ in range(2)]
        assert all(f.cancel() for f in doomed)
        assert pool.pending == 0
        again = [pool.submit(time.sleep, 0) for _ in range(2)]
        gate.set()
        for f in again:
            f.result()


def test_shutdown_cancel_futures_and_submit_after_shutdown():
    gate = threading.Event()
    pool = BoundedExecutor(1, max_queue=5)
    pool.submit(gate.wait)
    time.sleep(0.02)
    queued = [pool.submit(time.sleep, 0) for _ in range(5)]
    threading.Timer(0.05, gate.set).start()
    pool.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in queued) and pool.pending == 0
    with pytest.raises(RuntimeError, match="shutdown"):
        pool.submit(time.sleep, 0)
    assert _no_thread_named("BoundedExecutor")


def test_a_blocked_submit_is_released_by_shutdown():
    gate = threading.Event()
    pool = BoundedExecutor(1, max_queue=1)
    pool.submit(gate.wait)
    time.sleep(0.02)
    pool.submit(time.sleep, 0)
    outcome = []

    def blocked():
        try:
            pool.submit(time.sleep, 0)
        except RuntimeError as exc:
            outcome.append(str(exc))

    thread = threading.Thread(target=blocked)
    thread.start()
    time.sleep(0.05)
    pool.shutdown(wait=False, cancel_futures=True)
    thread.join(2)
    gate.set()
    pool.shutdown(wait=True)
    assert not thread.is_alive() and outcome and "shut down" in outcome[0]


def test_many_threads_submitting_never_exceed_max_queue():
    most = []
    with BoundedExecutor(2, max_queue=8) as pool:
        def producer():
            for _ in range(100):
                pool.submit(time.sleep, 0.0005)
                most.append(pool.pending)

        threads = [threading.Thread(target=producer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert max(most) <= 8 and pool.pending == 0


# --------------------------------------------------------------------------- BoundedQueueHandler


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"leaklab.tests.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


@pytest.mark.parametrize("kwargs, error, name", [
    ({"max_queue": 0}, ValueError, "max_queue"),
    ({"max_queue": 2.0}, TypeError, "max_queue"),
    ({"max_queue": 2, "block": "yes"}, TypeError, "block"),
    ({"max_queue": 2, "timeout": 1}, ValueError, "timeout"),
    ({"max_queue": 2, "block": True, "timeout": -1}, ValueError, "timeout"),
])
def test_handler_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=name):
        BoundedQueueHandler(**kwargs)


def test_handler_drops_and_counts_when_full_without_a_traceback(capsys):
    handler = BoundedQueueHandler(10)
    logger = _logger("drop", handler)
    for i in range(25):
        logger.info("record %d", i)
    assert handler.queue.qsize() == 10 and handler.dropped == 15
    assert capsys.readouterr().err == ""
    # The standard pairing: an unbounded queue.Queue() keeps all 25 (and would keep millions).
    import queue

    plain = logging.handlers.QueueHandler(queue.Queue())
    logger = _logger("plain", plain)
    for i in range(25):
        logger.info("record %d", i)
    assert plain.queue.qsize() == 25


def test_handler_with_a_listener_delivers_everything_that_fits():
    handler = BoundedQueueHandler(1_000)
    got = []

    class Collect(logging.Handler):
        def emit(self, record):
            got.append(record.getMessage())

    listener = logging.handlers.QueueListener(handler.queue, Collect())
    listener.start()
    try:
        logger = _logger("listener", handler)
        for i in range(200):
            logger.info("m%d", i)
    finally:
        listener.stop()
    assert got == [f"m{i}" for i in range(200)] and handler.dropped == 0


def test_handler_block_waits_up_to_timeout_then_drops():
    handler = BoundedQueueHandler(1, block=True, timeout=0.05)
    logger = _logger("block", handler)
    logger.info("fits")
    started = time.monotonic()
    logger.info("waits, then is dropped")
    assert time.monotonic() - started >= 0.04
    assert handler.dropped == 1 and handler.queue.qsize() == 1


# --------------------------------------------------------------------------- QueueMonitor


@pytest.mark.parametrize("kwargs, error, name", [
    ({"high": 0}, ValueError, "high"),
    ({"high": 10, "low": 10}, ValueError, "low"),
    ({"high": 10, "low": -1}, ValueError, "low"),
    ({"high": 10, "interval": 0}, ValueError, "interval"),
    ({"high": 10, "on_alert": "print"}, TypeError, "on_alert"),
    ({"high": 10, "on_recover": 1}, TypeError, "on_recover"),
    ({"high": 10.5}, TypeError, "high"),
])
def test_monitor_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=name):
        QueueMonitor(lambda: 0, **kwargs)
    with pytest.raises(TypeError, match="length"):
        QueueMonitor(5, high=10)


def test_monitor_alerts_once_per_episode_with_hysteresis():
    lengths = iter([0, 50, 100, 120, 99, 101, 60, 51, 50, 20, 100, 0])
    events = []
    monitor = QueueMonitor(lambda: next(lengths), high=100, on_alert=lambda n: events.append(("alert", n)),
                           on_recover=lambda n: events.append(("recover", n)))
    for _ in range(12):
        monitor.check()
    # 120, 99 and 101 do not alert again (still above low=50); 60 and 51 do not recover yet.
    assert events == [("alert", 100), ("recover", 50), ("alert", 100), ("recover", 0)]
    assert monitor.alerts == 2 and monitor.recoveries == 2 and not monitor.alerting
    assert monitor.history()["length"].tolist() == [0, 50, 100, 120, 99, 101, 60, 51, 50, 20, 100, 0]


def test_monitor_thread_samples_records_and_stops_promptly():
    backlog = []
    alerts = []
    with QueueMonitor(lambda: len(backlog), high=5, interval=0.005, on_alert=alerts.append) as monitor:
        assert monitor.running
        for i in range(10):
            backlog.append(i)
            time.sleep(0.01)
        started = time.monotonic()
    assert time.monotonic() - started < 0.5 and not monitor.running
    assert alerts and alerts[0] >= 5 and monitor.alerts == 1
    history = monitor.history()
    assert list(history.columns) == ["seconds", "length"]
    assert history["length"].is_monotonic_increasing and history["seconds"].is_monotonic_increasing
    assert _no_thread_named("QueueMonitor")


def test_monitor_history_is_bounded_however_long_it_runs():
    monitor = QueueMonitor(lambda: 1, high=10, history_size=100)
    for _ in range(1_000):
        monitor.check()
    assert len(monitor.history()) == 100


def test_monitor_survives_errors_in_length_and_callbacks(caplog):
    calls = iter([1, ValueError("broken"), 10, 0])

    def length():
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    def alarm(n):
        raise RuntimeError("pager down")

    monitor = QueueMonitor(length, high=10, on_alert=alarm)
    with caplog.at_level(logging.ERROR, logger="leaklab.queues"):
        results = [monitor.check() for _ in range(4)]
    assert results == [1, None, 10, 0]
    assert monitor.errors == 2 and monitor.alerts == 1 and monitor.recoveries == 1
    assert "broken" in caplog.text and "pager down" in caplog.text


def test_monitor_thread_keeps_going_after_an_error():
    state = {"n": 0}

    def length():
        state["n"] += 1
        if state["n"] == 2:
            raise ValueError("once")
        return state["n"]

    with QueueMonitor(length, high=1_000, interval=0.002) as monitor:
        time.sleep(0.1)
    assert monitor.errors == 1 and state["n"] > 5


def test_monitor_cannot_start_twice_but_can_restart():
    monitor = QueueMonitor(lambda: 0, high=1, interval=0.01)
    monitor.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            monitor.start()
    finally:
        monitor.stop()
    monitor.start()
    monitor.stop()
    assert not monitor.running and _no_thread_named("QueueMonitor")


def test_the_handlers_listener_stops_even_when_the_queue_is_full():
    handler = BoundedQueueHandler(10)
    release = threading.Event()

    class Slow(logging.Handler):
        def emit(self, record):
            release.wait(5)

    listener = handler.listener(Slow())
    listener.start()
    logger = _logger("full-stop", handler)
    for i in range(50):
        logger.info("m%d", i)
    assert handler.queue.full() and handler.dropped > 0
    threading.Timer(0.1, release.set).start()
    listener.stop()  # the standard QueueListener raises queue.Full here
    assert listener._thread is None
    # The standard listener on the same kind of full queue fails to stop:
    import queue as queue_module

    stuck = BoundedQueueHandler(2)
    stuck.queue.put(1)
    stuck.queue.put(2)
    standard = logging.handlers.QueueListener(stuck.queue)
    with pytest.raises(queue_module.Full):
        standard.enqueue_sentinel()


def test_monitor_samples_without_pandas():
    lengths = iter([3, 1])
    monitor = QueueMonitor(lambda: next(lengths), high=10)
    monitor.check()
    monitor.check()
    assert [n for _, n in monitor.samples()] == [3, 1]
