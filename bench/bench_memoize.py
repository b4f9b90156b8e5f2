"""Hit-path speed of leaklab.memoize against its peers, side by side in one run.

Run from the repository root:

    .venv/bin/python bench/bench_memoize.py           # 7 rounds, about 40 s
    .venv/bin/python bench/bench_memoize.py --quick   # 3 shorter rounds, about 15 s

Every contender memoizes the same one-argument function and is called with an argument already
cached, so only the hit path is timed: calls per second, the median of the rounds, the contenders
interleaved within each round (in a rotating order) so that a noisy neighbour slows them all
alike. The two targets of issue 4 are printed as ratios, each the median of the per-round ratios:

- ``leaklab.memoize`` without ttl: at least 0.5x ``functools.lru_cache`` (written in C);
- ``leaklab.memoize`` with ttl: at least 2x ``cachetools.cached(TTLCache)``.

One more row, not a target: ``reference_call`` (``leaklab.memoize.decorator``), the same algorithm
in plain Python that chapter 02 shows, over the same store; its ratio to ``leaklab.memoize`` is
what the generated wrappers (``leaklab/memoize/wrappers.py``) add.

``--check`` exits with status 1 if a target is missed. Benchmarks never run as tests.
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

from leaklab.memoize import memoize
from leaklab.memoize.decorator import Options, reference_wrapper

MAXSIZE = 128
TTL = 3600.0  # long enough never to expire during the run: only the hit path is timed
ARG = 12345
REFERENCE = "leaklab reference_call (plain Python)"


def target(x: int) -> int:
    return x


def contenders() -> dict[str, Callable[[int], Any]]:
    """The memoized functions to time, by the name printed in the table."""
    import cachetools

    made: dict[str, Callable[[int], Any]] = {
        "leaklab.memoize": memoize(maxsize=MAXSIZE)(target),
        "leaklab.memoize(ttl)": memoize(maxsize=MAXSIZE, ttl=TTL)(target),
        "functools.lru_cache": functools.lru_cache(maxsize=MAXSIZE)(target),
        "functools.cache": functools.cache(target),
        "cachetools.cached(LRUCache)": cachetools.cached(cachetools.LRUCache(MAXSIZE))(target),
        "cachetools.cached(TTLCache)": cachetools.cached(cachetools.TTLCache(MAXSIZE, TTL))(target),
    }
    try:
        import cachebox
    except ImportError:  # an optional peer (pyproject's "bench" extra)
        pass
    else:
        made["cachebox.cached(LRUCache)"] = cachebox.cached(cachebox.LRUCache(MAXSIZE))(target)
        made["cachebox.cached(TTLCache)"] = cachebox.cached(cachebox.TTLCache(MAXSIZE, TTL))(target)
    try:
        from leaklab.caches import LRUCache
    except ImportError:
        pass
    else:
        made["leaklab.memoize(cache=LRUCache)"] = memoize(cache=LRUCache(MAXSIZE))(target)
    made[REFERENCE] = reference_wrapper(
        Options(
            {"maxsize": MAXSIZE, "ttl": None, "typed": False, "key": None, "cache": None,
             "clock": time.monotonic},
            async_=False,
        ).new_memo(target),
        lambda args, kwargs: args[0],  # the key of a one-parameter function: the argument
    )  # fmt: skip
    return made


def method_contenders() -> dict[str, Any]:
    """Objects whose ``get(x)`` method is timed: the price of one cache per instance."""

    class Safe:
        @memoize(maxsize=MAXSIZE)
        def get(self, x: int) -> int:
            return x

    class Leaky:
        @functools.lru_cache(maxsize=MAXSIZE)  # noqa: B019  # the trap, as the reference
        def get(self, x: int) -> int:
            return x

    class Plain:
        def get(self, x: int) -> int:
            return x

    return {
        "leaklab.memoize, obj.method": Safe(),
        "functools.lru_cache, obj.method (leaks)": Leaky(),
        "plain obj.method, no cache": Plain(),
    }


def measure(
    subjects: dict[str, Any], statement: str, rounds: int, seconds: float
) -> dict[str, list[float]]:
    """Calls per second of ``statement`` for each subject (bound to ``s``), one value per
    round, the subjects interleaved in a rotating order."""
    timers = {
        name: timeit.Timer(statement, globals={"s": subject, "arg": ARG})
        for name, subject in subjects.items()
    }
    numbers = {}
    for name, timer in timers.items():
        timer.timeit(1)  # the miss: from now on every call is a hit
        number, elapsed = timer.autorange()  # about 0.2 s
        numbers[name] = max(1, int(number * seconds / max(elapsed, 1e-9)))
    names = list(subjects)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            rates[name].append(numbers[name] / timers[name].timeit(numbers[name]))
    return rates


def ratio(rates: dict[str, list[float]], ours: str, theirs: str) -> float:
    return statistics.median(a / b for a, b in zip(rates[ours], rates[theirs], strict=True))


def table(rates: dict[str, list[float]], reference: str) -> str:
    """A Markdown table, fastest first: the median rate, and the median of the per-round ratios
    to ``reference`` (each ratio compares two runs of the same round)."""
    rows = [
        (
            f"`{name}`",
            f"{statistics.median(values) / 1e6:.2f} M/s",
            f"{ratio(rates, name, reference):.2f}x",
        )
        for name, values in sorted(rates.items(), key=lambda item: -statistics.median(item[1]))
    ]
    header = ("contender", "hit calls/s (median)", f"vs `{reference}`")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    lines = [
        f"| {header[0]:<{widths[0]}} | {header[1]:>{widths[1]}} | {header[2]:>{widths[2]}} |",
        f"|{'-' * (widths[0] + 2)}|{'-' * (widths[1] + 1)}:|{'-' * (widths[2] + 1)}:|",
    ]
    lines += [f"| {a:<{widths[0]}} | {b:>{widths[1]}} | {c:>{widths[2]}} |" for a, b, c in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 shorter rounds instead of 7")
    parser.add_argument("--rounds", type=int, help="number of rounds (overrides --quick)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    seconds = 0.15 if args.quick else 0.4

    print(
        f"# leaklab.memoize hit path: {platform.python_implementation()} "
        f"{platform.python_version()} on {platform.machine()}, {rounds} rounds, "
        f"f({ARG}) already cached, maxsize={MAXSIZE}, ttl={TTL:g} s"
    )
    print()
    rates = measure(contenders(), "s(arg)", rounds, seconds)
    print(table(rates, "functools.lru_cache"))
    print()
    targets = [
        ("leaklab.memoize", "functools.lru_cache", 0.5),
        ("leaklab.memoize(ttl)", "cachetools.cached(TTLCache)", 2.0),
    ]
    missed = False
    for ours, theirs, wanted in targets:
        got = ratio(rates, ours, theirs)
        verdict = "met" if got >= wanted else "MISSED"
        missed |= got < wanted
        print(f"ratio {ours} / {theirs} = {got:.2f}x (target >= {wanted:g}x): {verdict}")
    print(
        f"ratio leaklab.memoize / {REFERENCE} = {ratio(rates, 'leaklab.memoize', REFERENCE):.2f}x"
        " (what the generated wrappers add)"
    )
    print()
    method_rates = measure(method_contenders(), "s.get(arg)", rounds, seconds)
    print(
        "On a method, obj.get(x): one cache per instance costs a Python-level descriptor "
        "call per access"
    )
    print()
    print(table(method_rates, "functools.lru_cache, obj.method (leaks)"))
    sys.stdout.flush()
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
