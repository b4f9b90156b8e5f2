"""Bagpipe and BoundedExecutor against what people use today, side by side in one run.

Run from the repository root:

    .venv/bin/python bench/bench_queues.py           # 7 rounds, about a minute
    .venv/bin/python bench/bench_queues.py --quick   # 3 shorter rounds

Three measurements, each contender interleaved with its peers in every round so that a noisy
neighbour slows them alike; the tables give medians, the ratios are medians of per-round ratios:

1. **Gating throughput**: 100,000 trivial async calls made by 1,000 concurrent callers through a
   gate of 100 (so most calls wait in line): ``Bagpipe(limit=100)`` against ``asyncio.Semaphore``
   and ``anyio.CapacityLimiter`` (when installed). Target: Bagpipe >= 0.8x the semaphore.
2. **Memory per waiting call** (tracemalloc, 20,000 calls waiting behind one that never ends): a
   call waiting in a Bagpipe (its task included), an ``asyncio.Task`` waiting on a semaphore, and a
   pending ``ThreadPoolExecutor`` work item; a bare task waiting on an event, for reference (what
   any waiting coroutine costs before a queue adds its own share). Target: a Bagpipe call under
   1 KiB, its task included.
3. **Executor throughput**: 50,000 trivial ``submit`` + ``result`` through ``BoundedExecutor`` (4
   workers, room for 1,000 waiting) against ``ThreadPoolExecutor`` (4 workers). Target: >= 0.8x.

``--check`` exits with status 1 if a target is missed. Benchmarks never run as tests.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

from leaklab.bagpipe import Bagpipe
from leaklab.queues import BoundedExecutor

LIMIT = 100
CALLERS = 1_000


async def noop() -> None:
    return None


# --------------------------------------------------------------------------- 1. gating


def gate_bagpipe() -> Callable:
    pipe = Bagpipe(LIMIT)
    return pipe.push


def gate_semaphore() -> Callable:
    semaphore = asyncio.Semaphore(LIMIT)

    async def gated(fn):
        async with semaphore:
            return await fn()

    return gated


def gate_anyio() -> Callable | None:
    try:
        import anyio
    except ImportError:
        return None
    limiter = anyio.CapacityLimiter(LIMIT)

    async def gated(fn):
        async with limiter:
            return await fn()

    return gated


GATES = {"Bagpipe(limit=100)": gate_bagpipe, "asyncio.Semaphore(100)": gate_semaphore,
         "anyio.CapacityLimiter(100)": gate_anyio}


def calls_per_second(make_gate: Callable, calls: int) -> float:
    async def main() -> float:
        gate = make_gate()
        per_caller = calls // CALLERS

        async def caller():
            for _ in range(per_caller):
                await gate(noop)
                await asyncio.sleep(0)  # let others in: most calls then find the gate busy

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(CALLERS)))
        return per_caller * CALLERS / (time.perf_counter() - started)

    return asyncio.run(main())


# --------------------------------------------------------------------------- 2. memory


def bytes_per_waiting_call(kind: str, n: int) -> float:
    """tracemalloc bytes held per call waiting behind one that never ends."""
    gc.collect()

    async def held_async() -> float:
        never = asyncio.Event()
        if kind == "Bagpipe":
            pipe = Bagpipe(1)
            asyncio.get_running_loop().create_task(pipe.push(never.wait))
            await asyncio.sleep(0)
            start = tracemalloc.get_traced_memory()[0]
            tasks = [asyncio.create_task(pipe.push(noop)) for _ in range(n)]
        elif kind == "bare asyncio.Task awaiting a future":
            start = tracemalloc.get_traced_memory()[0]
            tasks = [asyncio.create_task(never.wait()) for _ in range(n)]
        else:
            semaphore = asyncio.Semaphore(1)

            async def gated():
                async with semaphore:
                    await noop()

            await semaphore.acquire()
            start = tracemalloc.get_traced_memory()[0]
            tasks = [asyncio.create_task(gated()) for _ in range(n)]
        await asyncio.sleep(0)  # every task runs up to its wait
        held = tracemalloc.get_traced_memory()[0] - start
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return held / n

    tracemalloc.start()
    try:
        if kind == "ThreadPoolExecutor work item":
            gate = threading.Event()
            with ThreadPoolExecutor(1) as pool:
                pool.submit(gate.wait)
                start = tracemalloc.get_traced_memory()[0]
                futures = [pool.submit(int) for _ in range(n)]
                held = tracemalloc.get_traced_memory()[0] - start
                gate.set()
                wait(futures)
            return held / n
        return asyncio.run(held_async())
    finally:
        tracemalloc.stop()


MEMORY_KINDS = ("Bagpipe", "asyncio.Task on a Semaphore", "ThreadPoolExecutor work item",
                "bare asyncio.Task awaiting a future")


# --------------------------------------------------------------------------- 3. executors


def submits_per_second(make_pool: Callable, n: int) -> float:
    with make_pool() as pool:
        started = time.perf_counter()
        futures = [pool.submit(int) for _ in range(n)]
        for f in futures:
            f.result()
        return n / (time.perf_counter() - started)


POOLS = {"BoundedExecutor(4, max_queue=1000)": lambda: BoundedExecutor(4, max_queue=1_000),
         "ThreadPoolExecutor(4)": lambda: ThreadPoolExecutor(4)}


# --------------------------------------------------------------------------- report


def fmt(rate: float) -> str:
    return f"{rate / 1e6:.2f} M/s" if rate >= 1e6 else f"{rate / 1e3:.0f} k/s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 shorter rounds")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    calls = 20_000 if args.quick else 100_000
    submits = 10_000 if args.quick else 50_000
    waiting = 20_000

    print(f"CPython {platform.python_version()}, {rounds} rounds, {calls:,} gated calls, "
          f"{submits:,} submits, {waiting:,} waiting calls", flush=True)
    gates = dict(GATES)
    if gate_anyio() is None:  # an optional peer
        gates.pop("anyio.CapacityLimiter(100)")
    gate_rates: dict[str, list[float]] = {name: [] for name in gates}
    pool_rates: dict[str, list[float]] = {name: [] for name in POOLS}
    memory: dict[str, list[float]] = {kind: [] for kind in MEMORY_KINDS}
    for r in range(rounds):
        order = list(gates)
        for name in order[r % len(order):] + order[:r % len(order)]:
            gate_rates[name].append(calls_per_second(gates[name], calls))
        for name in (list(POOLS) if r % 2 == 0 else list(POOLS)[::-1]):
            pool_rates[name].append(submits_per_second(POOLS[name], submits))
        for kind in MEMORY_KINDS:
            memory[kind].append(bytes_per_waiting_call(kind, waiting))
        print(f"  round {r + 1}/{rounds} done", flush=True)

    def ratio(rates: dict[str, list[float]], a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(rates[a], rates[b]))

    print("\n| gate (100 running, 1,000 callers) | calls/s (median) | vs asyncio.Semaphore |")
    print("|---|---:|---:|")
    for name, rates in gate_rates.items():
        print(f"| {name} | {fmt(statistics.median(rates))} | {ratio(gate_rates, name, 'asyncio.Semaphore(100)'):.2f}x |")
    print("\n| executor (4 workers) | submit+result/s (median) | vs ThreadPoolExecutor |")
    print("|---|---:|---:|")
    for name, rates in pool_rates.items():
        print(f"| {name} | {fmt(statistics.median(rates))} | {ratio(pool_rates, name, 'ThreadPoolExecutor(4)'):.2f}x |")
    print("\n| a waiting call | bytes (tracemalloc, median) |")
    print("|---|---:|")
    for kind, values in memory.items():
        print(f"| {kind} | {statistics.median(values):,.0f} |")

    targets = [
        ("Bagpipe / asyncio.Semaphore, gated calls", ratio(gate_rates, "Bagpipe(limit=100)", "asyncio.Semaphore(100)"), 0.8, "x"),
        ("BoundedExecutor / ThreadPoolExecutor, submit+result",
         ratio(pool_rates, "BoundedExecutor(4, max_queue=1000)", "ThreadPoolExecutor(4)"), 0.8, "x"),
    ]
    print()
    missed = False
    for label, value, target, unit in targets:
        met = value >= target
        missed |= not met
        print(f"- {label}: {value:.3f}{unit} (target >= {target}{unit}): {'met' if met else 'NOT met'}")
    per_call = statistics.median(memory["Bagpipe"])
    met = per_call < 1024
    missed |= not met
    print(f"- bytes per waiting Bagpipe call: {per_call:,.0f} (target < 1,024): {'met' if met else 'NOT met'}")
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
