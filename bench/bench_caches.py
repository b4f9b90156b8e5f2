"""Benchmark: leaklab.caches against a plain dict, functools.lru_cache, cachetools and cachebox.

Run from the repository root:

    .venv/bin/python bench/bench_caches.py           # full run, under a minute
    .venv/bin/python bench/bench_caches.py --quick   # a few seconds, for a smoke test

Every variant runs every workload side by side in one process, interleaved round by round, and
the table reports the median over the rounds, in operations per second. Quote the ratios, not the
absolute numbers: the machines are shared and noisy. The garbage collector is disabled while a
loop is timed (as ``timeit`` does) and enabled for everything else.

Workloads, each on a cache of ``--size`` entries:

- get hit: read held keys, in a random order.
- get miss: read keys that are not held.
- set+evict: store new keys into a full cache, so every set evicts one entry.
- mixed zipf: cache-aside on a skewed stream (Zipf, s=1, over 10x more keys than fit):
  ``v = get(k); if v is None: set(k, k)``; the hit ratio is printed too.
- bytes/entry: memory per entry beyond a plain dict holding the same keys and values
  (tracemalloc; cachebox keeps its entries in native memory that tracemalloc does not see).

Each variant is used through its fastest ordinary API: ``cache[key]`` for a cachetools hit (its
``get`` is slower), ``cache.get(key)`` where a miss must return None, a call for lru_cache (which
cannot tell a miss without computing and storing, so it has no "get miss"). "+ Lock" wraps every
operation in ``with lock:``, as the cachetools documentation tells multithreaded users to do.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import math
import os
import platform
import random
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import cachetools

import leaklab.caches
from leaklab.caches import LimitableMap, LRUCache

try:
    import cachebox
except ImportError:  # an optional peer (pip install leaklab[bench])
    cachebox = None

TTL = 3600.0  # long enough that nothing expires during the run
WORKLOADS = ("get hit", "get() hit", "get miss", "set+evict", "mixed zipf")


@dataclass
class Variant:
    """How to build one cache and the statement each workload runs per key ``k``."""

    name: str
    make: Callable[[int], Any]  # capacity -> cache object ``c``
    fill: str  # statement that stores k (used to fill, and as "set")
    hit: str | None
    miss: str | None
    mixed: str
    store_value: str = ""  # statement storing values[k] under k, for bytes/entry ("": n/a)


def variants() -> list[Variant]:
    """Every variant, with the statements each workload runs for key ``k``.

    In the statements, ``c`` is the cache, ``get`` and ``put`` its bound get and set (or
    insert) methods, ``lock`` a ``threading.Lock`` and ``values`` the memory test's values.
    """

    def aside(store: str) -> str:  # cache-aside: read, and store on a miss
        return f"v = get(k)\n    if v is None:\n        {store}"

    def ours(name: str, make: Callable[[int], Any]) -> Variant:
        return Variant(
            name,
            make,
            fill="put(k, k)",
            hit="get(k)",
            miss="get(k)",
            mixed=aside("put(k, k)"),
            store_value="put(k, values[k])",
        )

    def cachetools_style(name: str, make: Callable[[int], Any]) -> Variant:
        return Variant(
            name,
            make,
            fill="c[k] = k",
            hit="c[k]",
            miss="get(k)",
            mixed=aside("c[k] = k"),
            store_value="c[k] = values[k]",
        )

    pure = _pure_python_caches()
    pure_rows = []
    if pure is not None:  # the compiled read is in use: show the pure-Python one beside it
        pure_rows = [
            ours("leaklab LRUCache (pure Python)", pure.LRUCache),
            ours("leaklab LRUCache ttl (pure Python)", lambda n: pure.LRUCache(n, ttl=TTL)),
        ]
    out = [
        Variant(
            "dict (unbounded)",
            lambda n: {},
            fill="c[k] = k",
            hit="get(k)",
            miss="get(k)",
            mixed=aside("c[k] = k"),
            store_value="c[k] = values[k]",
        ),
        ours("LimitableMap (FIFO)", LimitableMap),
        ours("leaklab LRUCache", LRUCache),
        ours("leaklab LRUCache ttl", lambda n: LRUCache(n, ttl=TTL)),
        *pure_rows,
        cachetools_style("cachetools.LRUCache", cachetools.LRUCache),
        Variant(
            "cachetools.LRUCache + Lock",
            cachetools.LRUCache,
            fill="with lock:\n        c[k] = k",
            hit="with lock:\n        c[k]",
            miss="with lock:\n        get(k)",
            mixed="with lock:\n        v = get(k)\n    if v is None:\n"
            "        with lock:\n            c[k] = k",
            store_value="c[k] = values[k]",
        ),
        cachetools_style("cachetools.TTLCache", lambda n: cachetools.TTLCache(n, ttl=TTL)),
        Variant(
            "functools.lru_cache",
            _make_lru_cache,
            fill="c(k)",
            hit="c(k)",
            miss=None,
            mixed="c(k)",
            store_value="c(k)",
        ),
    ]
    if cachebox is not None:
        for name, make in [
            ("cachebox.LRUCache", lambda n: cachebox.LRUCache(n)),
            ("cachebox.TTLCache", lambda n: cachebox.TTLCache(n, TTL)),
        ]:
            v = ours(name, make)
            v.store_value = ""  # native memory: tracemalloc does not see it
            out.append(v)
    return out


def _pure_python_caches() -> ModuleType | None:
    """A second copy of the leaklab.caches package that runs in pure Python, or None if the
    installed one already does (the C extension was not built).

    The copy is imported from the same files under another name; its modules import each other
    relatively, so they are all imported afresh, under the copy's name, without the compiled core.
    """
    if not leaklab.caches.COMPILED:
        return None
    name = "leaklab._caches_pure_python_for_bench"
    init = leaklab.caches.__file__
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[os.path.dirname(init)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it is executed
    saved = os.environ.get("LEAKLAB_PURE_PYTHON")
    os.environ["LEAKLAB_PURE_PYTHON"] = "1"
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del os.environ["LEAKLAB_PURE_PYTHON"]
        else:
            os.environ["LEAKLAB_PURE_PYTHON"] = saved
    return module


_lru_source: dict[str, Any] = {"values": None}  # what the lru_cache'd function looks up


def _make_lru_cache(n: int) -> Any:
    @functools.lru_cache(maxsize=n)
    def compute(k: int) -> Any:
        values = _lru_source["values"]
        return k if values is None else values[k]

    return compute


def _loop(stmt: str) -> Callable[..., None]:
    """Compile ``for k in keys: <stmt>`` with the cache's bound methods as locals, like timeit."""
    src = f"def run(keys, c, get, put, lock, values):\n  for k in keys:\n    {stmt}\n"
    namespace: dict[str, Any] = {}
    exec(compile(src, f"<{stmt}>", "exec"), namespace)  # our own templates, as timeit does
    return namespace["run"]


def _args(c: Any) -> tuple[Any, Any, Any]:
    get = getattr(c, "get", None)
    put = getattr(c, "set", None) or getattr(c, "insert", None)
    return get, put, threading.Lock()


def _filled(v: Variant, n: int, keys: list[int]) -> tuple[Any, tuple[Any, Any, Any]]:
    c = v.make(n)
    args = _args(c)
    _loop(v.fill)(keys, c, *args, None)
    return c, args


def time_workload(
    v: Variant, workload: str, n: int, data: dict[str, Any], repeat: int
) -> float | None:
    """Best ops/s of ``repeat`` runs of ``workload``, each on a fresh, filled cache.

    The best of a few runs (as ``timeit`` advises) filters out the runs that another process
    interrupted; the table then reports the median of these over the rounds. None if the
    workload does not apply to the variant.
    """
    held = data["held"]
    if workload == "get hit":
        stmt, keys = v.hit, data["hit_order"]
    elif workload == "get() hit":  # every cache through its get() method, as cache-aside code does
        stmt, keys = v.miss, data["hit_order"]
    elif workload == "get miss":
        stmt, keys = v.miss, data["absent"]
    elif workload == "set+evict":
        stmt, keys = v.fill, data["absent"]
    else:
        stmt, keys = v.mixed, data["zipf"]
    if stmt is None:
        return None
    run = _loop(stmt)
    best = math.inf
    for _ in range(repeat):
        c, args = _filled(v, n, held)
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            run(keys, c, *args, None)
            elapsed = time.perf_counter() - t0
        finally:
            gc.enable()
        best = min(best, elapsed)
    return len(keys) / best


def hit_ratios(vs: list[Variant], n: int, zipf: list[int], held: list[int]) -> dict[str, float]:
    """Hit ratio of each variant on the mixed stream (untimed; counts its own misses)."""
    out: dict[str, float] = {}
    for v in vs:
        misses = 0
        c, (get, put, _) = _filled(v, n, held)
        if v.name == "functools.lru_cache":
            before = c.cache_info().misses
            for k in zipf:
                c(k)
            out[v.name] = 1 - (c.cache_info().misses - before) / len(zipf)
            continue
        store = put if put is not None else c.__setitem__
        for k in zipf:
            if get(k) is None:
                misses += 1
                store(k, k)
        out[v.name] = 1 - misses / len(zipf)
    return out


def bytes_per_entry(vs: list[Variant], count: int) -> dict[str, float | None]:
    """Traced bytes per entry beyond a plain dict holding the same keys and values."""
    keys = list(range(10**6, 10**6 + count))  # not small ints: every key is its own object
    values = _Values(keys, [str(k) for k in keys])
    out: dict[str, float | None] = {}

    def measure(stmt: str, make: Callable[[int], Any]) -> int:
        gc.collect()
        tracemalloc.start()
        c = make(count)
        _loop(stmt)(keys, c, *_args(c), values)
        gc.collect()
        size, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del c
        return size

    base = measure("c[k] = values[k]", lambda n: {})
    for v in vs:
        _lru_source["values"] = values  # the lru_cache'd function returns values[k]
        out[v.name] = (measure(v.store_value, v.make) - base) / count if v.store_value else None
        _lru_source["values"] = None
    return out


class _Values:
    """``values[k]`` for the memory loop, without a dict of its own being traced."""

    __slots__ = ("base", "values")

    def __init__(self, keys: list[int], values: list[str]) -> None:
        self.base = keys[0]
        self.values = values

    def __getitem__(self, k: int) -> str:
        return self.values[k - self.base]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 rounds")
    parser.add_argument("--size", type=int, default=None, help="cache capacity (10000)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per variant (9)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per round, best kept (3)")
    args = parser.parse_args(argv)
    n = args.size or (2_000 if args.quick else 10_000)
    rounds = args.rounds or (3 if args.quick else 9)
    ops = 5 * n

    rng = random.Random(12345)
    held = list(range(n))
    hit_order = [rng.choice(held) for _ in range(ops)]
    absent = list(range(n, n + ops))
    universe = 10 * n
    weights = [1 / rank for rank in range(1, universe + 1)]  # Zipf, s = 1
    ids = list(range(universe))
    rng.shuffle(ids)  # hot keys are not the ones filled first
    zipf = rng.choices(ids, weights=weights, k=ops)
    data = {"held": held, "hit_order": hit_order, "absent": absent, "zipf": zipf}

    vs = variants()
    results: dict[tuple[str, str], list[float]] = {}
    order = [(v, w) for v in vs for w in WORKLOADS]
    for _ in range(rounds):
        rng.shuffle(order)  # interleaved, in a different order each round
        for v, w in order:
            r = time_workload(v, w, n, data, args.repeat)
            if r is not None:
                results.setdefault((v.name, w), []).append(r)
    median = {key: statistics.median(vals) for key, vals in results.items()}
    ratios = hit_ratios(vs, n, zipf, held)
    memory = bytes_per_entry(vs, 100_000 if not args.quick else 20_000)

    print(
        f"# leaklab.caches benchmark: Python {platform.python_version()}, "
        f"cachetools {cachetools.__version__}, "
        f"cachebox {getattr(cachebox, '__version__', 'not installed')}; "
        f"leaklab LRUCache reads {'compiled' if leaklab.caches.COMPILED else 'in pure Python'}"
    )
    print(
        f"# capacity {n}, {ops} ops per run; ops/s in thousands (k) or millions (M): median over "
        f"{rounds} interleaved rounds of the best of {args.repeat} runs"
    )
    print()
    head = ["variant", *WORKLOADS, "hit ratio (zipf)", "bytes/entry vs dict"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for v in vs:
        cells = [v.name]
        for w in WORKLOADS:
            rate = median.get((v.name, w))
            cells.append(_fmt_rate(rate))
        cells.append(f"{ratios[v.name]:.2f}")
        mem = memory[v.name]
        cells.append("n/a (native)" if mem is None else f"{mem:+.0f}")
        print("| " + " | ".join(cells) + " |")
    print()
    print(
        "Notes: a plain dict never evicts (its set+evict column only inserts, and it grows);\n"
        "lru_cache is called through a function, so its set+evict is a miss that computes and\n"
        "stores, and it has no get miss. 'get hit' uses each cache's fastest hit (cachetools:\n"
        "c[k]); 'get() hit' calls every cache's get(k) method. leaklab's LRUCache reads through\n"
        "a compiled get (leaklab.caches._core) when the C extension was built at install time;\n"
        "'(pure Python)' rows are the same class without it, as on a machine with no compiler\n"
        "(there a get miss is slower than a hit: it catches a KeyError)."
    )
    print()
    print("Targets (ratios of medians in this run):")
    checks = [
        ("leaklab LRUCache", "cachetools.LRUCache + Lock", 2.5),
        ("leaklab LRUCache", "cachetools.LRUCache", 1.5),
        ("leaklab LRUCache ttl", "cachetools.TTLCache", 2.0),
    ]
    if leaklab.caches.COMPILED:  # the same ratios without the compiled read, for reference
        checks += [
            ("leaklab LRUCache (pure Python)", "cachetools.LRUCache + Lock", 2.5),
            ("leaklab LRUCache (pure Python)", "cachetools.LRUCache", 1.5),
            ("leaklab LRUCache ttl (pure Python)", "cachetools.TTLCache", 2.0),
        ]
    for ours, theirs, target in checks:
        for w in ("get hit", "get() hit", "set+evict"):
            ratio = median[(ours, w)] / median[(theirs, w)]
            verdict = "met" if ratio >= target else "NOT met"
            print(f"  {ours} / {theirs}, {w}: {ratio:.3f}x (target {target}x: {verdict})")
    return 0


def _fmt_rate(rate: float | None) -> str:
    if rate is None:
        return "n/a"
    if rate >= 1e6:
        return f"{rate / 1e6:.2f} M"
    return f"{rate / 1e3:.0f} k"


if __name__ == "__main__":
    sys.exit(main())
