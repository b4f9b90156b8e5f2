"""How much a full cyclic-GC collection costs as a cache grows (chapter 00).

A full (generation 2) collection visits every *tracked* container that is alive, so a cache of
small dicts of lists makes every full collection slower, while a cache of plain ``str`` values
(untracked) costs it nothing, and ``gc.freeze()`` takes everything alive out of its sight.
Run each kind in a fresh process (``track_isolated``) so the kernel's own objects do not blur the
numbers.
"""

from __future__ import annotations

import gc
import time
from typing import Any

KINDS = ("dict values", "str values")


def value(kind: str, i: int) -> Any:
    """The ``i``-th value of a cache of the given kind."""
    if kind == "dict values":
        return {"id": i, "tags": [i]}  # a dict holding a list: two tracked containers
    return f"value-{i}"  # a str holds no references: the collector never tracks it


def collect_ms(repeats: int = 3) -> float:
    """The shortest of ``repeats`` full collections, in ms (on a busy machine, other work only
    ever adds time, so the shortest run is the best estimate of the collection's own cost)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)


def full_collection_ms(kind: str, sizes: list[int], repeats: int = 3) -> list[dict[str, Any]]:
    """Grow one cache through ``sizes`` entries; at each size time a full ``gc.collect()``, as
    it is and after ``gc.freeze()``.

    Returns one row per size: ``entries``, ``tracked`` (objects the collector tracks),
    ``full_gc_ms`` and ``frozen_gc_ms`` (the shortest of ``repeats``).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    cache: dict[int, Any] = {}
    rows = []
    for size in sorted(sizes):
        for i in range(len(cache), size):
            cache[i] = value(kind, i)
        full_ms = collect_ms(repeats)
        gc.freeze()  # everything alive moves to the permanent generation
        frozen_ms = collect_ms(repeats)
        gc.unfreeze()
        rows.append({"entries": size, "tracked": len(gc.get_objects()), "full_gc_ms": full_ms,
                     "frozen_gc_ms": frozen_ms})
    return rows


def fill_with_pauses(entries: int, kind: str = "dict values") -> list[dict[str, Any]]:
    """Fill a cache and record every collection the interpreter ran on its own.

    Returns one row per collection: ``generation``, ``duration_ms`` and ``cache_len`` (the
    cache's size when it started), plus a last row with the total time under ``"total_ms"``.
    """
    from leaklab.measure import gc_pauses

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    cache: dict[int, Any] = {}
    lens: list[int] = []

    def note_size(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            lens.append(len(cache))

    gc.callbacks.append(note_size)
    try:
        start = time.perf_counter()
        with gc_pauses() as pauses:
            for i in range(entries):
                cache[i] = value(kind, i)
        total_ms = (time.perf_counter() - start) * 1e3
    finally:
        gc.callbacks.remove(note_size)
    rows = [
        {"generation": g, "duration_ms": ms, "cache_len": n}
        for (g, ms, _collected), n in zip(pauses._rows, lens)
    ]
    return [*rows, {"total_ms": total_ms}]
