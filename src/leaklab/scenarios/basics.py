"""Small workloads for chapter 00 ("Measuring memory") and for the harness's own tests.

``keep`` and ``churn`` allocate the same memory and keep it or drop it (the harness's tests);
``handle_order`` is the request handler of chapter 00's tracemalloc exercise: something in it
keeps memory on every call, and a snapshot comparison names the line. They live in a file, not in
the notebook, so that ``track_isolated`` can run them in a fresh process and tracemalloc and line
profilers can show their source.
"""

from __future__ import annotations

import itertools
import time

#: Where :func:`keep` leaves what it allocates: a module global, so it lives as long as the process.
KEPT: list[bytes] = []


def keep(steps: int = 40, mib_per_step: float = 2.0, pause: float = 0.01) -> int:
    """Allocate ``mib_per_step`` MiB per step and keep all of it: RSS rises step by step."""
    size = int(mib_per_step * 1024 * 1024)
    for _ in range(steps):
        # b"x" * n writes every byte, so every page is really resident (bytes(n) would ask the
        # kernel for zero pages that take no RSS until written).
        KEPT.append(b"x" * size)
        time.sleep(pause)
    return len(KEPT)


def churn(steps: int = 40, mib_per_step: float = 2.0, pause: float = 0.01) -> int:
    """Allocate the same amount per step but drop it at once: RSS stays flat."""
    size = int(mib_per_step * 1024 * 1024)
    total = 0
    for _ in range(steps):
        block = b"x" * size
        total += len(block)
        del block
        time.sleep(pause)
    return total


#: Receipts that :func:`handle_order` files away "for the auditors" and never removes.
AUDIT: dict[int, str] = {}
_ORDER_IDS = itertools.count(1)


def handle_order(items: int = 20) -> int:
    """Serve one order of ``items`` items and return how many units it holds."""
    order = {"id": next(_ORDER_IDS), "items": [{"sku": n, "qty": 1} for n in range(items)]}
    total = sum(item["qty"] for item in order["items"])
    receipt = "\n".join(f"{item['sku']:>8} x {item['qty']}" for item in order["items"])
    AUDIT[order["id"]] = receipt
    return total


def reset() -> None:
    """Drop what :func:`keep` kept and the receipts :func:`handle_order` filed."""
    KEPT.clear()
    AUDIT.clear()
