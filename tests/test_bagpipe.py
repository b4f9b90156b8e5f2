"""Tests for leaklab.bagpipe: an asyncio call queue bounded by time (timeout mode) or by room
(refuse mode), with the original Bagpipe's documented behaviour and its bugs fixed."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import random
import tracemalloc

import pytest

from leaklab.bagpipe import Bagpipe, BagpipeStats, BagpipeTimeoutError, TooMuchAsyncCallError


def run(coro):
    return asyncio.run(coro)


class Probe:
    """Async work that records how many calls run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.started: list[object] = []

    async def work(self, tag: object = None, seconds: float = 0.0, fail: bool = False) -> object:
        self.running += 1
        self.most = max(self.most, self.running)
        self.started.append(tag)
        try:
            await asyncio.sleep(seconds)
            if fail:
                raise ValueError(f"failed: {tag}")
            return tag
        finally:
            self.running -= 1


def balanced(pipe: Bagpipe) -> bool:
    s = pipe.stats()
    return s.submitted == s.completed + s.failed + s.timed_out + s.refused + pipe.active + pipe.queue_length


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("kwargs, error, name", [
    ({"limit": 0}, ValueError, "limit"),
    ({"limit": -1}, ValueError, "limit"),
    ({"limit": 1.5}, TypeError, "limit"),
    ({"limit": True}, TypeError, "limit"),
    ({"limit": "3"}, TypeError, "limit"),
    ({"limit": 2, "ratio": 0}, ValueError, "ratio"),
    ({"limit": 2, "ratio": -1.0}, ValueError, "ratio"),
    ({"limit": 2, "ratio": math.nan}, ValueError, "ratio"),
    ({"limit": 2, "ratio": math.inf}, ValueError, "ratio"),
    ({"limit": 2, "ratio": True}, TypeError, "ratio"),
    ({"limit": 2, "ratio": "1"}, TypeError, "ratio"),
    ({"limit": 2, "timeout": 0}, ValueError, "timeout"),
    ({"limit": 2, "timeout": -1}, ValueError, "timeout"),
    ({"limit": 2, "timeout": math.inf}, ValueError, "timeout"),
    ({"limit": 2, "timeout": False}, TypeError, "timeout"),
    ({"limit": 2, "timeout": "1"}, TypeError, "timeout"),
    ({"limit": 2, "on_full": 3}, TypeError, "on_full"),
    ({"limit": 2, "refuse": 1}, TypeError, "refuse"),
])
def test_bad_arguments_fail_at_construction_naming_the_argument(kwargs, error, name):
    with pytest.raises(error, match=name):
        Bagpipe(**kwargs)


def test_an_int_like_limit_is_accepted():
    class Three:
        def __index__(self):
            return 3

    assert Bagpipe(Three()).limit == 3


def test_a_non_callable_fn_is_refused_at_once_and_counts_nothing():
    async def main():
        pipe = Bagpipe(1)
        with pytest.raises(TypeError, match="fn"):
            await pipe.push(42)
        return pipe.stats()

    assert run(main()) == BagpipeStats(0, 0, 0, 0, 0)


def test_a_callable_that_returns_no_awaitable_fails_when_called_and_frees_its_slot():
    async def main():
        pipe = Bagpipe(1)
        with pytest.raises(TypeError, match="awaitable"):
            await pipe.push(lambda: 5)
        assert pipe.active == 0
        assert await pipe.push(asyncio.sleep, 0, "next") == "next"  # the slot was freed
        return pipe.stats()

    assert run(main()) == BagpipeStats(submitted=2, completed=1, failed=1, timed_out=0, refused=0)


# --------------------------------------------------------------------------- the limit, FIFO


def test_at_most_limit_calls_run_and_the_rest_wait_in_fifo_order():
    async def main():
        probe, pipe = Probe(), Bagpipe(3)
        results = await asyncio.gather(*(pipe.push(probe.work, i, 0.01) for i in range(20)))
        return probe, pipe, results

    probe, pipe, results = run(main())
    assert results == list(range(20))
    assert probe.most == 3
    assert probe.started == list(range(20))  # served in the order pushed
    assert pipe.stats() == BagpipeStats(20, 20, 0, 0, 0) and pipe.active == pipe.queue_length == 0


def test_active_and_queue_length_tell_the_state():
    async def main():
        pipe, gate = Bagpipe(2), asyncio.Event()
        tasks = [asyncio.create_task(pipe.push(gate.wait)) for _ in range(5)]
        await asyncio.sleep(0)
        seen = (pipe.active, pipe.queue_length, balanced(pipe))
        gate.set()
        await asyncio.gather(*tasks)
        return seen, (pipe.active, pipe.queue_length)

    assert run(main()) == ((2, 3, True), (0, 0))


def test_an_exception_reaches_the_caller_and_frees_the_slot():
    async def main():
        probe, pipe = Probe(), Bagpipe(1)
        outcomes = await asyncio.gather(*(pipe.push(probe.work, i, 0, i % 2 == 1) for i in range(6)),
                                        return_exceptions=True)
        return pipe, outcomes

    pipe, outcomes = run(main())
    assert [type(o).__name__ for o in outcomes] == ["int", "ValueError"] * 3
    assert str(outcomes[1]) == "failed: 1"
    assert pipe.stats() == BagpipeStats(6, 3, 3, 0, 0) and pipe.active == 0


def test_a_synchronous_raise_frees_the_slot():
    """The original never freed the slot of a call that threw before returning its promise."""
    def broken():
        raise KeyError("sync")

    async def main():
        pipe = Bagpipe(1)
        for _ in range(3):
            with pytest.raises(KeyError):
                await pipe.push(broken)
        return pipe.active, pipe.stats().failed

    assert run(main()) == (0, 3)


def test_keyword_arguments_reach_the_call():
    async def add(a, b=0, *, c=0):
        return a + b + c

    async def main():
        return await Bagpipe(1).push(add, 1, b=2, c=3)

    assert run(main()) == 6


# --------------------------------------------------------------------------- refuse mode


@pytest.mark.parametrize("limit, ratio, room", [(5, 1.0, 5), (4, 0.5, 2), (3, 2.0, 6), (10, 0.25, 2)])
def test_refuse_mode_refuses_the_call_after_limit_plus_room(limit, ratio, room):
    async def main():
        pipe, gate = Bagpipe(limit, refuse=True, ratio=ratio), asyncio.Event()
        tasks = [asyncio.create_task(pipe.push(gate.wait)) for _ in range(limit + room)]
        await asyncio.sleep(0)
        assert (pipe.active, pipe.queue_length) == (limit, room)
        with pytest.raises(TooMuchAsyncCallError):
            await pipe.push(gate.wait)
        refused_at_once = pipe.queue_length == room
        gate.set()
        await asyncio.gather(*tasks)
        return pipe.stats(), refused_at_once

    stats, at_once = run(main())
    assert at_once
    assert stats == BagpipeStats(limit + room + 1, limit + room, 0, 0, 1)


def test_refuse_mode_accepts_again_once_the_line_shrinks():
    async def main():
        pipe = Bagpipe(1, refuse=True, ratio=1.0)
        first = asyncio.create_task(pipe.push(asyncio.sleep, 0.02))
        second = asyncio.create_task(pipe.push(asyncio.sleep, 0.02))
        await asyncio.sleep(0)
        with pytest.raises(TooMuchAsyncCallError):
            await pipe.push(asyncio.sleep, 0)
        await asyncio.gather(first, second)
        await pipe.push(asyncio.sleep, 0)
        return pipe.stats()

    assert run(main()) == BagpipeStats(4, 3, 0, 0, 1)


def test_without_refuse_the_line_is_unbounded():
    async def main():
        pipe, gate = Bagpipe(1), asyncio.Event()
        tasks = [asyncio.create_task(pipe.push(gate.wait)) for _ in range(50)]
        await asyncio.sleep(0)
        n = pipe.queue_length
        gate.set()
        await asyncio.gather(*tasks)
        return n

    assert run(main()) == 49


# --------------------------------------------------------------------------- timeout mode


def test_a_waiting_call_times_out_from_when_it_was_pushed_and_leaves_the_queue():
    async def main():
        pipe = Bagpipe(1, timeout=0.05)
        probe = Probe()
        slow = asyncio.create_task(pipe.push(probe.work, "slow", 0.04))
        waiting = asyncio.create_task(pipe.push(probe.work, "waits", 0.04))
        results = await asyncio.gather(slow, waiting, return_exceptions=True)
        return pipe, probe, results

    pipe, probe, results = run(main())
    # The second call would have run 0.04 s after waiting 0.04 s: 0.08 s since it was pushed.
    assert results[0] == "slow" and isinstance(results[1], BagpipeTimeoutError)
    assert pipe.stats() == BagpipeStats(2, 1, 0, 1, 0)
    assert pipe.queue_length == 0 and pipe.active == 0


def test_a_timed_out_waiter_never_runs():
    async def main():
        pipe, probe = Bagpipe(1, timeout=0.03), Probe()
        tasks = [asyncio.create_task(pipe.push(probe.work, i, 0.05)) for i in range(4)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.1)
        return probe, results

    probe, results = run(main())
    assert probe.started == [0]
    assert all(isinstance(r, BagpipeTimeoutError) for r in results)


def test_a_running_call_is_cancelled_and_its_slot_freed_only_when_it_stopped():
    async def main():
        pipe, probe = Bagpipe(1, timeout=0.03), Probe()
        cleaned = []

        async def slow_cleanup():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cleaned.append(pipe.active)  # still holds its slot while it cleans up
                await asyncio.sleep(0.02)
                raise

        first = asyncio.create_task(pipe.push(slow_cleanup))
        await asyncio.sleep(0)
        second = asyncio.create_task(pipe.push(probe.work, "after", 0))
        results = await asyncio.gather(first, second, return_exceptions=True)
        return pipe, cleaned, results

    pipe, cleaned, results = run(main())
    assert cleaned == [1]
    assert isinstance(results[0], BagpipeTimeoutError)
    assert pipe.stats().timed_out >= 1 and pipe.active == 0


def test_a_call_that_swallows_the_cancellation_still_times_out_and_never_overlaps():
    async def main():
        pipe, probe = Bagpipe(1, timeout=0.03), Probe()

        async def stubborn():
            probe.running += 1
            probe.most = max(probe.most, probe.running)
            try:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    await asyncio.sleep(0.05)  # keeps working after being told to stop
                return "late"
            finally:
                probe.running -= 1

        first = asyncio.create_task(pipe.push(stubborn))
        second = asyncio.create_task(pipe.push(probe.work, "next", 0))
        results = await asyncio.gather(first, second, return_exceptions=True)
        return pipe, probe, results

    pipe, probe, results = run(main())
    assert isinstance(results[0], BagpipeTimeoutError)  # not "late"
    assert probe.most == 1  # the original let the next call start while the first still ran
    assert pipe.stats().timed_out == 2  # the second waited longer than 0.03 s
    assert pipe.active == 0 and balanced(pipe)


def test_the_calls_own_timeout_error_is_a_failure_not_a_pipe_timeout():
    async def own_timeout():
        raise TimeoutError("the database said so")

    async def main():
        pipe = Bagpipe(1, timeout=5)
        with pytest.raises(TimeoutError) as caught:
            await pipe.push(own_timeout)
        return pipe.stats(), caught.value

    stats, error = run(main())
    assert not isinstance(error, BagpipeTimeoutError)
    assert stats == BagpipeStats(1, 0, 1, 0, 0)


def test_bagpipe_timeout_error_is_a_timeout_error():
    assert issubclass(BagpipeTimeoutError, TimeoutError)


# --------------------------------------------------------------------------- caller cancellation


def test_a_cancelled_caller_leaves_the_queue_and_nothing_is_left_behind():
    async def main():
        pipe, gate, probe = Bagpipe(1), asyncio.Event(), Probe()
        running = asyncio.create_task(pipe.push(gate.wait))
        waiting = asyncio.create_task(pipe.push(probe.work, "never"))
        await asyncio.sleep(0)
        assert pipe.queue_length == 1
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        length = pipe.queue_length
        gate.set()
        await running
        return pipe, probe, length

    pipe, probe, length = run(main())
    assert length == 0 and probe.started == []
    assert pipe.stats() == BagpipeStats(2, 1, 1, 0, 0) and pipe.active == 0


def test_a_cancelled_running_caller_frees_its_slot():
    async def main():
        pipe = Bagpipe(1)
        running = asyncio.create_task(pipe.push(asyncio.sleep, 10))
        await asyncio.sleep(0)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        return pipe.active, await pipe.push(asyncio.sleep, 0, "free")

    assert run(main()) == (0, "free")


def test_a_slot_handed_to_a_caller_cancelled_at_that_moment_is_passed_on():
    async def main():
        pipe, gate = Bagpipe(1), asyncio.Event()
        first = asyncio.create_task(pipe.push(gate.wait))
        second = asyncio.create_task(pipe.push(asyncio.sleep, 0, "second"))
        third = asyncio.create_task(pipe.push(asyncio.sleep, 0, "third"))
        await asyncio.sleep(0)
        gate.set()
        await first           # hands the slot to `second` (its future is resolved) ...
        second.cancel()       # ... which is cancelled before it resumes
        results = await asyncio.gather(second, third, return_exceptions=True)
        return pipe, results

    pipe, results = run(main())
    assert isinstance(results[0], asyncio.CancelledError) and results[1] == "third"
    assert pipe.active == 0 and pipe.queue_length == 0 and balanced(pipe)


# --------------------------------------------------------------------------- on_full


def test_on_full_fires_once_per_episode():
    seen = []

    async def main():
        pipe = Bagpipe(2, ratio=1.5, on_full=seen.append)  # line at round(3.0) = 3
        gate = asyncio.Event()
        tasks = [asyncio.create_task(pipe.push(gate.wait)) for _ in range(2 + 6)]
        await asyncio.sleep(0)
        first_episode = list(seen)
        gate.set()
        await asyncio.gather(*tasks)        # drains below the line: the episode ends
        gate.clear()
        tasks = [asyncio.create_task(pipe.push(gate.wait)) for _ in range(2 + 3)]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)
        return first_episode

    first = run(main())
    assert first == [3]         # once, when 3 were waiting, not at 4, 5, 6
    assert seen == [3, 3]       # and once more in the second episode


def test_on_full_that_raises_is_logged_and_the_pipe_goes_on(caplog):
    def alarm(n):
        raise RuntimeError("pager down")

    async def main():
        pipe = Bagpipe(1, on_full=alarm)
        return await asyncio.gather(*(pipe.push(asyncio.sleep, 0, i) for i in range(4))), pipe.stats()

    with caplog.at_level(logging.ERROR, logger="leaklab.bagpipe"):
        results, stats = run(main())
    assert results == [0, 1, 2, 3] and stats.completed == 4
    assert "on_full" in caplog.text and "pager down" in caplog.text


# --------------------------------------------------------------------------- loops


def test_one_pipe_belongs_to_one_loop():
    pipe = Bagpipe(1)
    run(pipe.push(asyncio.sleep, 0))
    with pytest.raises(RuntimeError, match="loop"):
        run(pipe.push(asyncio.sleep, 0))


# --------------------------------------------------------------------------- overload


@pytest.mark.parametrize("mode", ["timeout", "refuse"])
def test_overload_keeps_memory_bounded_stats_balanced_and_concurrency_at_the_limit(mode):
    """Ten times more calls than the pipe can serve, for two seconds, with callers
    cancelled at random: the backlog and the memory it holds stay bounded in both modes, while
    the same traffic with an unbounded pipe piles up."""
    limit, service_s, rate_per_s, seconds = 4, 0.01, 4_000, 2.0  # capacity 400/s, load 4,000/s
    payload = 2_000

    async def serve(probe: Probe, data: bytes) -> int:
        probe.running += 1
        probe.most = max(probe.most, probe.running)
        try:
            await asyncio.sleep(service_s)
            return len(data)
        finally:
            probe.running -= 1

    async def traffic(pipe: Bagpipe, probe: Probe, drain: bool):
        rng = random.Random(7)

        def settle(task: asyncio.Task) -> None:
            tasks.discard(task)
            if not task.cancelled():
                task.exception()  # retrieved: a refusal or a timeout is an expected outcome

        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task] = set()
        lengths = []
        end = loop.time() + seconds
        while loop.time() < end:
            for _ in range(int(rate_per_s * 0.005)):
                task = asyncio.create_task(pipe.push(serve, probe, bytes(payload)))
                tasks.add(task)
                task.add_done_callback(settle)
                if rng.random() < 0.02:
                    loop.call_later(rng.random() * 0.05, task.cancel)
            lengths.append(pipe.queue_length)
            assert probe.running <= limit and balanced(pipe)
            await asyncio.sleep(0.005)
        gc.collect()  # what the backlog holds at the end of the load, not garbage not yet collected
        held = tracemalloc.get_traced_memory()[0]
        if not drain:  # an unbounded backlog would take many seconds to serve: drop it
            for task in tasks:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return max(lengths), held

    def measure(pipe, drain=True):
        probe = Probe()
        tracemalloc.start()
        most, held = run(traffic(pipe, probe, drain))
        tracemalloc.stop()
        return probe, most, held

    bounded = Bagpipe(limit, timeout=0.05) if mode == "timeout" else Bagpipe(limit, refuse=True, ratio=4)
    probe, most, peak = measure(bounded)
    stats = bounded.stats()
    assert probe.most <= limit and bounded.active == 0 and bounded.queue_length == 0
    assert stats.submitted == stats.completed + stats.failed + stats.timed_out + stats.refused
    assert stats.submitted > 5 * stats.completed  # it really was overloaded
    if mode == "timeout":
        assert stats.timed_out > stats.completed and stats.refused == 0
        assert most < 0.05 * rate_per_s * 2  # at most about 2x what arrives in one timeout
    else:
        assert stats.refused > stats.completed and stats.timed_out == 0
        assert most <= 4 * limit

    unbounded = Bagpipe(limit)
    _, most_unbounded, peak_unbounded = measure(unbounded, drain=False)
    assert most_unbounded > 10 * most       # the same traffic piles up without a bound
    assert peak_unbounded > 4 * peak         # and so does the memory its waiting calls hold
    assert peak_unbounded > 0.5 * most_unbounded * payload
    gc.collect()


def test_refuse_and_timeout_together_count_each_call_once():
    async def main():
        pipe = Bagpipe(1, refuse=True, ratio=2, timeout=0.03)
        tasks = [asyncio.create_task(pipe.push(asyncio.sleep, 0.02, i)) for i in range(5)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return pipe, [type(r).__name__ for r in results]

    pipe, kinds = run(main())
    # One runs (0 to 0.02 s); two wait: the first of them runs from 0.02 s and is cancelled at
    # 0.03 s, the other is still waiting then; two are refused.
    assert kinds == ["int", "BagpipeTimeoutError", "BagpipeTimeoutError", "TooMuchAsyncCallError",
                     "TooMuchAsyncCallError"]
    assert pipe.stats() == BagpipeStats(submitted=5, completed=1, failed=0, timed_out=2, refused=2)
    assert balanced(pipe) and pipe.active == 0
