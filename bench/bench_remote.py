"""RemoteCache against bare redis-py, Unix socket against TCP, and N workers' memory, in one run.

Run from the repository root:

    .venv/bin/python bench/bench_remote.py           # 7 rounds, then 8 workers x 100k keys
    .venv/bin/python bench/bench_remote.py --quick   # 3 rounds, 4 workers x 20k keys

1. **Hit path**: ``RemoteCache.get`` of a held key against a bare redis-py ``GET`` + ``json.loads``
   of the same key on the same embedded server (Unix socket), interleaved, median of the rounds;
   the ratio is the median of per-round ratios. Target: at least 0.9x.
2. **Transport**: the same hit over the Unix socket and over TCP loopback (median µs per call).
3. **Duplicated caches**: ``workers`` processes serve the same stream of keys, each with its own
   in-process dict cache, then each with a ``RemoteCache`` on one shared server: the RSS the
   workers gained, summed, against the server's ``used_memory``, and the total misses (every
   in-process cache misses each key once; the shared one misses it once in all).

``--check`` exits with status 1 if the hit-path target is missed. Benchmarks never run as tests.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import sys
import time

from leaklab.measure import rss_mib
from leaklab.remote import RemoteCache, _redis_client, embedded_server

VALUE = {"id": 0, "title": "x" * 120, "tags": ["a", "b", "c"]}


def per_call_us(fn, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls * 1e6


def hit_paths(url: str, calls: int) -> dict[str, float]:
    """µs per hit for each path, the two alternated in chunks of 100 calls so that a noisy
    neighbour slows both alike."""
    cache = RemoteCache(url, ttl=600, namespace="bench")
    cache.set("hot", VALUE)
    raw = _redis_client(url)
    paths = {
        "RemoteCache.get": lambda: cache.get("hot"),
        "redis-py GET + json.loads": lambda: json.loads(raw.get("bench:hot")),
    }
    spent = dict.fromkeys(paths, 0.0)
    for _ in range(calls // 100):
        for name, fn in paths.items():
            spent[name] += per_call_us(fn, 100)
    cache.close()
    raw.close()
    return {name: total / (calls // 100) for name, total in spent.items()}


def worker(url: str | None, keys: int, seed: int, queue) -> None:
    """Serve a stream of keys (each key twice, in a worker-specific order) through one cache."""
    import random

    order = list(range(keys)) * 2
    random.Random(seed).shuffle(order)
    before = rss_mib()
    misses = 0
    if url is None:
        cache: dict[str, dict] = {}
        for k in order:
            key = f"page:{k}"
            if key not in cache:
                misses += 1
                cache[key] = dict(VALUE, id=k)
        held = len(cache)
    else:
        remote = RemoteCache(url, ttl=600, namespace="pages")
        for k in order:
            remote.get_or_set(f"page:{k}", lambda k=k: dict(VALUE, id=k))
        misses, held = remote.stats().misses, 0
        remote.close()
    queue.put((rss_mib() - before, misses, held))


def duplicated(url: str, workers: int, keys: int) -> dict[str, dict[str, float]]:
    ctx = multiprocessing.get_context("fork")
    out = {}
    for label, target in (("in-process dict per worker", None), ("one shared server", url)):
        queue = ctx.Queue()
        procs = [ctx.Process(target=worker, args=(target, keys, seed, queue)) for seed in range(workers)]
        for p in procs:
            p.start()
        rows = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        out[label] = {"workers' RSS gained (MiB)": sum(r[0] for r in rows), "misses": sum(r[1] for r in rows)}
    client = _redis_client(url)
    out["one shared server"]["server used_memory (MiB)"] = client.info("memory")["used_memory"] / 2**20
    client.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    rounds, calls = (3, 2_000) if args.quick else (7, 10_000)
    workers, keys = (4, 20_000) if args.quick else (8, 100_000)
    print(f"CPython {platform.python_version()}, {rounds} rounds of {calls:,} hits; "
          f"{workers} workers x {keys:,} keys", flush=True)
    with embedded_server(maxmemory="1gb") as unix_url, embedded_server(maxmemory="64mb", tcp=True) as tcp_url:
        per: dict[str, list[float]] = {}
        for r in range(rounds):
            for name, us in hit_paths(unix_url, calls).items():
                per.setdefault(name, []).append(us)
            for name, us in (("Unix socket", per["RemoteCache.get"][-1]),
                             ("TCP loopback", hit_paths(tcp_url, calls)["RemoteCache.get"])):
                per.setdefault(f"transport: {name}", []).append(us)
        ratio = statistics.median(b / a for a, b in zip(per["RemoteCache.get"], per["redis-py GET + json.loads"]))
        print("\n| hit (same server, same key) | µs per call (median) |")
        print("|---|---:|")
        for name, values in per.items():
            print(f"| {name} | {statistics.median(values):.1f} |")
        print(f"\n- RemoteCache.get / bare GET + json.loads, calls per second: {ratio:.3f}x "
              f"(target >= 0.9x): {'met' if ratio >= 0.9 else 'NOT met'}")
        print(f"\nDuplicated caches: {workers} workers, {keys:,} keys each served twice", flush=True)
        table = duplicated(unix_url, workers, keys)
        print("\n| variant | workers' RSS gained (MiB) | server used_memory (MiB) | misses |")
        print("|---|---:|---:|---:|")
        for label, row in table.items():
            server = row.get("server used_memory (MiB)")
            gained = row["workers' RSS gained (MiB)"]
            shown = "-" if server is None else f"{server:.1f}"
            print(f"| {label} | {gained:.1f} | {shown} | {row['misses']:,} |")
    return 1 if (args.check and ratio < 0.9) else 0


if __name__ == "__main__":
    sys.exit(main())
