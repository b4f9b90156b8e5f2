"""The measuring runs of chapter 01 ("Memory is a costly cache"), around its service.

The story, the leaking service and its fixes, is :mod:`leaklab.scenarios.cache_service`; these
are the runs the chapter measures it with, kept apart so that the module a learner opens from a
listing stays short. Every name here is importable from ``cache_service`` too (the chapter uses
``cs.latency_run`` and the like), and ``track_isolated`` imports them in a new interpreter.

- :func:`latency_run` times every request and records every garbage collection
  (:func:`leaklab.measure.gc_pauses`) while a cache of dicts, a cache of ``str`` or a bounded
  cache grows (:data:`LATENCY_KINDS`): the collector's work grows with the tracked objects alive.
- :func:`skewed_keys` and :func:`hit_ratio` compare eviction policies on a Zipf-like key stream
  (seeded, so every run sees the same stream): FIFO (``LimitableMap``) evicts hot keys, LRU keeps
  them. Chapter 05's remote workers draw their keys from :func:`skewed_keys` too.
- :func:`preforked_workers` fills a cache and then forks worker processes, as a server that loads
  its data before forking does (``python -m leaklab.scenarios.cache_service_measurements fork
  ...``); some workers only wait, the others read every entry once (:func:`read_every_page`).
  Each reports the growth of its USS, the memory only it holds: the fork shares the cache's pages
  until a worker touches them, and in CPython reading an object writes its reference count.

Nothing here imports pandas, so the fresh processes stay lean.
"""

from __future__ import annotations

import bisect
import gc
import itertools
import json
import os
import random
import subprocess
import sys
import time
import traceback
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import psutil

from leaklab.caches import LRUCache
from leaklab.measure import gc_pauses
from leaklab.scenarios.cache_service import BOUND, fill_cache, profile_request, read_every_page

__all__ = [
    "LATENCY_KINDS",
    "hit_ratio",
    "latency_run",
    "preforked_workers",
    "skewed_keys",
]


# --------------------------------------------------------------------------------------------
# Latency and collector pauses while a cache grows

#: The caches :func:`latency_run` compares: what the values are, and whether the cache is bounded.
LATENCY_KINDS = ("dict of dicts", "dict of str", "LRUCache of dicts")


def _percentile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_run(kind: str, requests: int = 200_000, windows: int = 8, bound: int = BOUND) -> dict[str, Any]:
    """Handle ``requests`` requests, each for a new user, through a cache of ``kind``; time every
    request and record every collection of the cyclic garbage collector.

    Returns ``windows``: one row per window of ``requests // windows`` requests with
    ``requests`` (served at its end), ``entries`` (held at its end), ``p50_us``, ``p99_us``,
    ``max_ms`` (its slowest request), ``mean_us``, ``gc_ms`` (time in collections) and
    ``full_gc_ms`` (in full, generation-2 collections); ``full``: one ``(entries, ms)`` pair per
    full collection (entries held when it started); ``total_ms`` (the whole run), ``gc_ms`` (all
    collections), ``max_pause_ms`` (the longest), ``collections`` (how many); and over all
    requests ``p50_us``, ``p99_us`` and ``max_ms``.
    """
    if kind not in LATENCY_KINDS:
        raise ValueError(f"kind must be one of {LATENCY_KINDS}, got {kind!r}")
    if requests % windows:
        raise ValueError(f"requests ({requests}) must be a multiple of windows ({windows})")
    bounded = kind.startswith("LRUCache")
    store: Any = LRUCache(bound) if bounded else {}
    put = store.set if bounded else store.__setitem__
    get = store.get
    latencies = [0] * requests
    started_at: list[tuple[int, int]] = []  # (request, entries) when each collection started

    def note_start(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started_at.append((request, len(store)))

    clock = time.perf_counter_ns
    request = 0
    gc.collect()
    with gc_pauses() as pauses:
        gc.callbacks.append(note_start)  # after gc_pauses' own: every start is noted by both
        begin = clock()
        try:
            for request in range(requests):
                t0 = clock()
                profile_request(get, put, kind, request)
                latencies[request] = clock() - t0
            total_ms = (clock() - begin) / 1e6
        finally:
            gc.callbacks.remove(note_start)
    collections = [(at, entries, generation, ms)
                   for (at, entries), (generation, ms, _) in zip(started_at, pauses._rows)]
    per = requests // windows
    rows = []
    for w in range(windows):
        lo, hi = w * per, (w + 1) * per
        ordered = sorted(latencies[lo:hi])
        inside = [c for c in collections if lo <= c[0] < hi]
        rows.append({
            "requests": hi,
            "entries": hi if not bounded else min(hi, bound),
            "p50_us": _percentile(ordered, 0.50) / 1e3,
            "p99_us": _percentile(ordered, 0.99) / 1e3,
            "max_ms": ordered[-1] / 1e6,
            "mean_us": sum(ordered) / len(ordered) / 1e3,
            "gc_ms": sum(c[3] for c in inside),
            "full_gc_ms": sum(c[3] for c in inside if c[2] == 2),
        })
    latencies.sort()
    return {
        "kind": kind,
        "windows": rows,
        "full": [(entries, ms) for _, entries, generation, ms in collections if generation == 2],
        "total_ms": total_ms,
        "gc_ms": pauses.total_ms,
        "max_pause_ms": pauses.max_ms,
        "collections": pauses.count,
        "p50_us": _percentile(latencies, 0.50) / 1e3,
        "p99_us": _percentile(latencies, 0.99) / 1e3,
        "max_ms": latencies[-1] / 1e6,
    }


# --------------------------------------------------------------------------------------------
# Eviction policies on a skewed key stream


def skewed_keys(requests: int, universe: int, s: float = 1.0, seed: int = 1) -> list[int]:
    """``requests`` keys from ``range(universe)``, key ``k`` drawn with weight ``1 / (k + 1) ** s``
    (Zipf-like: key 0 is the most popular). Seeded: the same list on every run and platform."""
    if requests < 0 or universe < 1:
        raise ValueError(f"need requests >= 0 and universe >= 1, got {requests}, {universe}")
    rng = random.Random(seed)
    cumulative = list(itertools.accumulate(1.0 / (rank ** s) for rank in range(1, universe + 1)))
    total = cumulative[-1]
    last = universe - 1
    return [min(bisect.bisect(cumulative, rng.random() * total), last) for _ in range(requests)]


def hit_ratio(store: Any, keys: Iterable[Hashable], watch: Hashable = 0) -> dict[str, Any]:
    """Look every key up in ``store`` (``get`` / ``set``), storing it on a miss.

    Returns ``hits``, ``misses``, ``ratio`` (hits / lookups) and ``watched_misses``: the misses of
    the key ``watch`` (by default key 0, the hottest key of :func:`skewed_keys`).
    """
    hits = misses = watched = 0
    missing = object()
    for key in keys:
        if store.get(key, missing) is missing:
            misses += 1
            if key == watch:
                watched += 1
            store.set(key, True)
        else:
            hits += 1
    lookups = hits + misses
    return {"hits": hits, "misses": misses, "ratio": hits / lookups if lookups else 0.0,
            "watched_misses": watched}


# --------------------------------------------------------------------------------------------
# Worker processes forked after the cache was filled


def _forked_worker(shared: dict[Hashable, str], reads: bool, report: int) -> None:
    """In a forked child: measure USS, read the cache if ``reads``, measure again, report, exit."""
    me = psutil.Process()
    start = me.memory_full_info().uss
    read = read_every_page(shared) if reads else 0
    grew = me.memory_full_info().uss - start
    os.write(report, json.dumps({"reads": reads, "read_bytes": read, "uss_growth_bytes": grew}).encode())


def _preforked(workers: int, readers: int, entries: int, payload_bytes: int) -> dict[str, Any]:
    """The body of :func:`preforked_workers`, run in a fresh single-threaded process."""
    process = psutil.Process()
    gc.collect()
    before = process.memory_info().rss
    shared = fill_cache(entries, payload_bytes)
    filled = process.memory_info().rss - before
    gc.collect()
    reports = []
    for n in range(workers):
        reads = n >= workers - readers
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(read_end)
                _forked_worker(shared, reads, write_end)
                code = 0
            except BaseException:  # noqa: BLE001  reported on stderr; the parent raises
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            answer = pipe.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not answer:
            raise RuntimeError(f"worker {n} failed (wait status {status})")
        reports.append(json.loads(answer))
    return {"cache_bytes": filled, "entries": len(shared),
            "reads": [r["reads"] for r in reports],
            "read_bytes": [r["read_bytes"] for r in reports],
            "uss_growth_bytes": [r["uss_growth_bytes"] for r in reports]}


def preforked_workers(workers: int = 4, readers: int = 2, entries: int = 25_000,
                      payload_bytes: int = 1024, timeout: float = 60.0) -> dict[str, Any]:
    """Fill a cache of ``entries`` pages in a fresh process, then fork ``workers`` workers from
    it; the last ``readers`` of them read every page once, the others only wait.

    Each worker measures its USS (unique set size: the memory only it holds, which the kernel
    would free if it exited) right after the fork and after its work. Returns ``cache_bytes``
    (the RSS the filling process grew by: the cache's size), ``entries``, and per worker
    ``reads`` (whether it read), ``read_bytes`` and ``uss_growth_bytes``.

    The fork happens in a fresh single-threaded process (``python -m
    leaklab.scenarios.cache_service_measurements fork ...``), never in the caller, which may
    have threads.
    """
    for name, value, low in (("workers", workers, 1), ("readers", readers, 0),
                             ("entries", entries, 1), ("payload_bytes", payload_bytes, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if readers > workers:
        raise ValueError(f"readers ({readers}) cannot exceed workers ({workers})")
    if not hasattr(os, "fork"):
        raise RuntimeError("preforked_workers needs os.fork (Linux or macOS)")
    command = [sys.executable, "-m", "leaklab.scenarios.cache_service_measurements", "fork",
               str(workers), str(readers), str(entries), str(payload_bytes)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the forking process failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "fork":
        print(json.dumps(_preforked(*map(int, sys.argv[2:]))))
    else:
        sys.exit("usage: python -m leaklab.scenarios.cache_service_measurements"
                 " fork WORKERS READERS ENTRIES PAYLOAD_BYTES")
