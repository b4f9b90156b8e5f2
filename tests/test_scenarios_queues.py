"""Tests for chapter 04's scenarios: leaklab.scenarios.queue_service (the logging service) and
leaklab.scenarios.queue_traps (the standard library's queues, and what a waiting call costs)."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import sqlite3
import statistics
import tempfile
import threading
import time

import pytest

from leaklab.measure import track
from leaklab.scenarios import queue_service, queue_traps


def our_threads() -> list[str]:
    """Threads the scenarios start (pools, writers, listeners, monitors) that still run."""
    return [t.name for t in threading.enumerate() if "(_monitor)" in t.name or t.name.startswith(
        ("ThreadPoolExecutor", "BoundedExecutor", "QueueMonitor", "log-writer"))]


def leftover_files() -> list[str]:
    return glob.glob(os.path.join(tempfile.gettempdir(), "leaklab-queue-*"))


@pytest.fixture(autouse=True)
def _nothing_left_behind():
    files = leftover_files()
    yield
    assert our_threads() == []
    assert leftover_files() == files


def balanced(result: dict) -> bool:
    return sum(result["outcomes"].values()) == result["submitted"]


# --------------------------------------------------------------------------- the sinks


def test_a_record_carries_its_body_and_every_fail_every_th_has_no_user():
    records = [queue_service.make_record(i) for i in range(2 * queue_service.FAIL_EVERY)]
    assert all(len(r["body"]) == queue_service.BODY_BYTES for r in records)
    assert [i for i, r in enumerate(records) if r["user"] is None] == [
        queue_service.FAIL_EVERY - 1, 2 * queue_service.FAIL_EVERY - 1]


def test_sqlite_log_commits_every_record_and_refuses_one_without_a_user(tmp_path):
    path = str(tmp_path / "log.db")
    log = queue_service.SqliteLog(path)
    reader = sqlite3.connect(path)
    try:
        log.write(queue_service.make_record(0))
        assert reader.execute("SELECT count(*) FROM requests").fetchone()[0] == 1  # committed at once
        with pytest.raises(sqlite3.IntegrityError):
            log.write(queue_service.make_record(queue_service.FAIL_EVERY - 1))
        log.write(queue_service.make_record(1))
        assert log.rows() == 2
    finally:
        reader.close()
        log.close()


def test_file_log_appends_json_lines_and_stalls_once(tmp_path):
    path = tmp_path / "log.jsonl"
    log = queue_service.FileLog(str(path), stall=(0.0, 0.2))
    took = []
    for i in range(4):
        started = time.perf_counter()
        log.write(queue_service.make_record(i))
        took.append(time.perf_counter() - started)
    log.close()
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == [0, 1, 2, 3]
    assert took[1] >= 0.2 and max(took[0], took[2], took[3]) < 0.1  # one stall, on the second write
    assert log.rows() == 4


def test_write_rate_compares_the_sinks():
    assert queue_service.write_rate("file", 200) > queue_service.write_rate("sqlite", 5) > 0


# --------------------------------------------------------------------------- the service


def test_a_file_keeps_up_and_every_request_is_written():
    result = queue_service.serve("file", rate=1_000, seconds=0.5, drain=2.0)
    assert result["outcomes"]["completed"] == result["rows"] == result["submitted"] >= 400
    assert balanced(result) and result["alerts"] == 0 and result["threads_left"] == 0
    assert result["max_backlog"] < queue_service.HIGH


def test_the_database_falls_behind_and_what_still_waits_is_abandoned():
    result = queue_service.serve("sqlite", rate=3_000, seconds=1.0)
    outcomes = result["outcomes"]
    assert outcomes["abandoned"] > 0.25 * result["submitted"]  # the disk's speed varies: a wide margin
    assert result["max_backlog"] > 0.25 * result["submitted"]
    assert balanced(result) and result["pipe_stats"] is None and result["threads_left"] == 0
    assert [event for _, event, _ in result["events"]] == ["alert"]
    assert outcomes["completed"] <= result["rows"]  # a write running at shutdown still finishes


def test_a_stalled_file_piles_up_raises_one_alert_and_recovers():
    result = queue_service.serve("file", rate=2_000, seconds=1.5, stall=(0.3, 0.8), drain=2.0)
    assert [event for _, event, _ in result["events"]] == ["alert", "recover"]
    assert result["max_backlog"] > 0.5 * 2_000 * 0.8
    assert result["outcomes"]["completed"] == result["submitted"] and balanced(result)


@pytest.mark.parametrize("mode, bounded_by", [("timeout", "timed out"), ("refuse", "refused")])
def test_bagpipe_bounds_the_backlog_and_its_counts_match_the_services(mode, bounded_by):
    result = queue_service.serve("sqlite", mode, rate=2_000, seconds=1.0, drain=1.0)
    outcomes, stats = result["outcomes"], result["pipe_stats"]
    assert outcomes["abandoned"] == 0 and balanced(result)
    assert stats == {"submitted": result["submitted"], "completed": outcomes["completed"],
                     "failed": outcomes["failed"], "timed_out": outcomes["timed out"],
                     "refused": outcomes["refused"]}
    assert outcomes[bounded_by] > 0.25 * result["submitted"]
    if mode == "timeout":  # about what arrives within one timeout (a late loop may add a brief spike)
        assert statistics.median(n for _, n in result["backlog"]) < 2 * 2_000 * 0.1
    else:  # one running, eight waiting, and a few whose write has just ended
        assert result["max_backlog"] < 2 * (1 + 8)
    assert result["alerts"] == 0
    if mode == "refuse":
        assert result["rows"] == outcomes["completed"]  # everything accepted was written


def test_serve_reports_its_progress_so_a_trace_has_requests_on_x():
    trace = track(queue_service.serve, "file", rate=1_000, seconds=0.5, drain=1.0, interval=0.02)
    done = trace.frame["done"]
    assert done.is_monotonic_increasing and done.iloc[-1] == trace.result["submitted"]


@pytest.mark.parametrize("kwargs, error", [
    ({"sink": "redis"}, ValueError),
    ({"mode": "drop"}, ValueError),
    ({"rate": 0}, ValueError),
    ({"rate": "5"}, TypeError),
    ({"rate": float("inf")}, ValueError),
    ({"seconds": -1}, ValueError),
    ({"timeout": True}, TypeError),
    ({"room": 0}, ValueError),
    ({"room": 1.5}, TypeError),
    ({"drain": -1}, ValueError),
    ({"stall": (1.0,)}, TypeError),
    ({"stall": (1.0, 0)}, ValueError),
])
def test_serve_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        queue_service.serve(**kwargs)


def test_write_rate_rejects_bad_arguments():
    with pytest.raises(ValueError):
        queue_service.write_rate("redis")
    with pytest.raises(ValueError):
        queue_service.write_rate("file", 0)


# --------------------------------------------------------------------------- the standard library

SMALL = (100, 300)


def test_thread_pool_keeps_every_work_item_and_the_bounded_one_refuses():
    grew = queue_traps.executor_pile_up(False, SMALL)
    capped = queue_traps.executor_pile_up(True, SMALL)
    assert (grew["waiting"], grew["refused"]) == (300, 0)
    assert (capped["waiting"], capped["refused"]) == (queue_traps.ROOM, 300 - queue_traps.ROOM)
    assert grew["held"][300] > 2.5 * grew["held"][100] > 2.5 * 100 * queue_traps.PAYLOAD_BYTES
    assert capped["held"][300] < 1.1 * capped["held"][100]


def test_queue_handler_keeps_every_record_and_the_bounded_one_drops():
    grew = queue_traps.logging_pile_up(False, SMALL)
    capped = queue_traps.logging_pile_up(True, SMALL)
    assert (grew["waiting"], grew["dropped"], grew["handled"]) == (300, 0, 301)
    assert (capped["waiting"], capped["dropped"], capped["handled"]) == (
        queue_traps.ROOM, 300 - queue_traps.ROOM, queue_traps.ROOM + 1)
    assert grew["held"][300] > 2.5 * grew["held"][100]
    assert capped["held"][300] < 1.1 * capped["held"][100]


def test_tasks_wait_for_ever_behind_a_semaphore_but_not_under_a_timeout():
    async def main():
        results = {v: await queue_traps.task_pile_up(v, rate=1_000, checkpoints=(50, 300))
                   for v in queue_traps.TASK_VARIANTS}
        return results, len(asyncio.all_tasks())

    results, tasks_left = asyncio.run(main())
    assert tasks_left == 1  # main itself: every request task was finished
    for variant in ("create_task", "Semaphore(100)"):
        assert results[variant]["waiting"] == {50: 50, 300: 300} and results[variant]["timed_out"] == 0
    timed = results["asyncio.timeout(0.05)"]
    assert timed["waiting"][300] < 0.6 * 300 and timed["timed_out"] > 0.3 * 300


@pytest.mark.parametrize("kind", queue_traps.WAITING_KINDS)
def test_every_way_to_wait_costs_hundreds_of_bytes_per_call(kind):
    per_call = asyncio.run(queue_traps.waiting_call_bytes(kind, 500))
    assert 300 < per_call < 10_000


def test_a_bagpipe_call_costs_less_than_a_task_on_a_semaphore_and_the_thread_path_most():
    async def main():
        return {kind: await queue_traps.waiting_call_bytes(kind, 1_000) for kind in queue_traps.WAITING_KINDS}

    costs = asyncio.run(main())
    assert costs["Bagpipe.push waiting (its task included)"] < costs["asyncio.Task waiting on a Semaphore"]
    assert costs["run_in_executor from a task"] == max(costs.values())


@pytest.mark.parametrize("call, error", [
    (lambda: queue_traps.executor_pile_up(1), TypeError),
    (lambda: queue_traps.executor_pile_up(False, (300, 100)), ValueError),
    (lambda: queue_traps.executor_pile_up(False, [100]), TypeError),
    (lambda: queue_traps.logging_pile_up(False, (0, 10)), ValueError),
    (lambda: asyncio.run(queue_traps.task_pile_up("gather")), ValueError),
    (lambda: asyncio.run(queue_traps.task_pile_up("create_task", rate=0)), ValueError),
    (lambda: asyncio.run(queue_traps.waiting_call_bytes("a thread")), ValueError),
    (lambda: asyncio.run(queue_traps.waiting_call_bytes("ThreadPoolExecutor work item", 0)), ValueError),
])
def test_traps_reject_bad_arguments(call, error):
    with pytest.raises(error):
        call()
