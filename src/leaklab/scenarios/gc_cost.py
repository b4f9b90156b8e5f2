"""How much a full cyclic-GC collection costs as a cache grows (chapter 00, chapter 01).

The syllabus' claim: a full (generation 2) collection visits every *tracked* container, so a
cache of small dicts of lists makes every full collection slower, while a cache of plain str
values (untracked) costs it nothing, and ``gc.freeze()`` takes a cache out of its sight.
Run in a fresh process (``track_isolated``) so the kernel's own objects do not blur the numbers.
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import Any

KINDS = ("dict values", "str values", "dict values, frozen")


def _value(kind: str, i: int) -> Any:
    if kind.startswith("dict"):
        return {"id": i, "tags": [i]}  # a dict holding a list: two tracked containers
    return f"value-{i}"  # a str: never tracked by the cyclic collector


def full_collection_ms(kind: str, sizes: list[int], repeats: int = 5) -> list[dict[str, Any]]:
    """Grow one cache through ``sizes`` entries; at each size time ``gc.collect()`` (median).

    Returns one row per size: ``entries``, ``tracked`` (objects the collector tracks),
    ``full_gc_ms``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    cache: dict[int, Any] = {}
    rows = []
    for size in sorted(sizes):
        for i in range(len(cache), size):
            cache[i] = _value(kind, i)
        if kind.endswith("frozen"):
            gc.collect()
            gc.freeze()  # everything alive now moves to the permanent generation
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            gc.collect()
            times.append((time.perf_counter() - start) * 1e3)
        rows.append({"entries": size, "tracked": len(gc.get_objects()), "full_gc_ms": statistics.median(times)})
        if kind.endswith("frozen"):
            gc.unfreeze()
    return rows


def fill_with_pauses(entries: int) -> list[dict[str, Any]]:
    """Fill a cache of dict values and record every collection the interpreter ran on its own.

    Returns one row per collection: ``generation``, ``duration_ms`` and ``cache_len`` (the
    cache's size when it happened), plus a last row with the total time under ``"total_ms"``.
    """
    from leaklab.measure import gc_pauses

    cache: dict[int, Any] = {}
    lens: list[int] = []
    gc.callbacks.append(lambda phase, info: lens.append(len(cache)) if phase == "start" else None)
    start = time.perf_counter()
    with gc_pauses() as pauses:
        for i in range(entries):
            cache[i] = _value("dict values", i)
    total_ms = (time.perf_counter() - start) * 1e3
    gc.callbacks.pop()
    rows = [
        {"generation": g, "duration_ms": ms, "cache_len": n}
        for (g, ms, _collected), n in zip(pauses._rows, lens)
    ]
    return [*rows, {"total_ms": total_ms}]
