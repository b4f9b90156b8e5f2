"""What leaklab.testing.leak_report costs, and how exact its bytes_per_call is.

Run from the repository root:

    .venv/bin/python bench/bench_testing.py             # 5 rounds, about 10 s
    .venv/bin/python bench/bench_testing.py --rounds 3  # quicker
    .venv/bin/python bench/bench_testing.py --check     # exit 1 if the accuracy target is missed

Two tables (issue 13's Performance section), the medians of the rounds:

1. Overhead: 1,000 calls of a small function timed bare, and under
   ``leak_report(fn, calls=1000, warmup=0)``, with their ratio. The run under the helper has a
   fixed part (three full collections, two tracemalloc snapshots, about 64 RSS reads: it grows
   with the number of objects the process holds, printed above the table) and a part per call
   (tracemalloc records every allocation with up to ``leaklab.testing.FRAMES`` frames, so
   allocation-heavy code slows most: chapter 00 measures tracemalloc's cost on its own). The
   per-call part is the slope between runs of 1,000 and 11,000 calls, next to a bare call.
2. Accuracy: planted leaks that keep exactly 64 B, 1 KiB and 100 KiB per call (a ``bytes`` object
   of that allocated size stored in a list sized beforehand, so nothing else grows), measured
   with the defaults (``calls=1000, warmup=100``); the error of ``bytes_per_call`` against the
   planted size. Target: within 15%.

Benchmarks never run as tests.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from leaklab.testing import FRAMES, leak_report

CALLS = 1000
PLANTED = [("64 B", 64), ("1 KiB", 1024), ("100 KiB", 100 * 1024)]
TARGET = 0.15
EMPTY_BYTES = sys.getsizeof(b"")  # a bytes object of n bytes allocates EMPTY_BYTES + n


def no_alloc(x: int = 5) -> int:
    """A small function that allocates nothing (ints up to 256 are cached)."""
    return (x * 3) % 7


def small_alloc(x: int = 12345) -> int:
    """A small function that allocates and frees a dict and a list per call."""
    record = {"id": x, "items": [x, x + 1, x + 2]}
    return len(record["items"])


SMALL: dict[str, Callable[[], Any]] = {
    "no allocation": no_alloc,
    "a dict and a list": small_alloc,
}


def bare(fn: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - start


def under_report(fn: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    leak_report(fn, calls=calls, warmup=0)
    return time.perf_counter() - start


def overhead_rows(rounds: int) -> list[tuple[str, ...]]:
    rows = []
    for name, fn in SMALL.items():
        bare_s, report_s, bare_call, report_call = [], [], [], []
        for _ in range(rounds):
            bare_s.append(bare(fn, CALLS))
            report_s.append(under_report(fn, CALLS))
            bare_call.append(bare(fn, 11 * CALLS) / (11 * CALLS))
            report_call.append((under_report(fn, 11 * CALLS) - under_report(fn, CALLS))
                               / (10 * CALLS))
        b, r = statistics.median(bare_s), statistics.median(report_s)
        bc, rc = statistics.median(bare_call), statistics.median(report_call)
        rows.append((name, f"{b * 1e3:.3f} ms", f"{r * 1e3:.1f} ms", f"{r / b:,.0f}x",
                     f"{bc * 1e9:,.0f} ns", f"{rc * 1e9:,.0f} ns", f"{rc / bc:.1f}x"))
    return rows


def planted(size: int) -> tuple[Callable[[], None], list[Any]]:
    """A function keeping exactly ``size`` traced bytes per call, and what it keeps them in."""
    slots: list[Any] = [None] * (CALLS + 200)  # sized beforehand: the list itself never grows
    free = iter(range(len(slots)))
    payload = size - EMPTY_BYTES

    def leak() -> None:
        slots[next(free)] = bytes(payload)

    return leak, slots


def accuracy_rows(rounds: int) -> tuple[list[tuple[str, ...]], float]:
    rows = []
    worst = 0.0
    for label, size in PLANTED:
        measured = []
        flagged = True
        for _ in range(rounds):
            leak, slots = planted(size)
            report = leak_report(leak)
            measured.append(report.bytes_per_call)
            flagged &= report.leaking
            del leak, slots
            gc.collect()
        got = statistics.median(measured)
        error = (got - size) / size
        worst = max(worst, max(abs(m - size) / size for m in measured))
        rows.append((label, f"{size:,}", f"{got:,.1f}", f"{error:+.2%}",
                     f"{min(measured):,.1f} to {max(measured):,.1f}", "yes" if flagged else "no"))
    return rows, worst


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(f"{h:<{w}}" if i == 0 else f"{h:>{w}}"
                               for i, (h, w) in enumerate(zip(header, widths))) + " |",
             "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":"
                            for i, w in enumerate(widths)) + "|"]
    lines += ["| " + " | ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
                                for i, (c, w) in enumerate(zip(row, widths))) + " |"
              for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per measurement (5)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a bytes_per_call is off by more than 15%%")
    args = parser.parse_args(argv)
    rounds = max(1, args.rounds)

    print(f"# leaklab.testing.leak_report: {platform.python_implementation()} "
          f"{platform.python_version()} on {platform.machine()}, {rounds} rounds (medians), "
          f"tracemalloc with up to {FRAMES} frames, {len(gc.get_objects()):,} objects tracked "
          f"by the GC in this process")
    print()
    print(f"Overhead: {CALLS:,} calls bare and under leak_report(fn, calls={CALLS:,}, warmup=0)")
    print()
    print(table(("function", "bare", "leak_report", "ratio", "bare per call",
                 "per call under it", "ratio per call"), overhead_rows(rounds)))
    print()
    print(f"Accuracy of bytes_per_call on planted leaks (calls={CALLS:,}, warmup=100; "
          f"target within {TARGET:.0%})")
    print()
    rows, worst = accuracy_rows(rounds)
    print(table(("planted per call", "bytes", "bytes_per_call", "error", "range over rounds",
                 "leaking (> 64 B)"), rows))
    print()
    verdict = "met" if worst <= TARGET else "MISSED"
    print(f"largest error over all rounds: {worst:.2%} (target <= {TARGET:.0%}): {verdict}")
    sys.stdout.flush()
    return 1 if (args.check and worst > TARGET) else 0


if __name__ == "__main__":
    sys.exit(main())
