"""How long the cyclic garbage collector stops the program (chapter 00).

:func:`gc_pauses` records every collection inside a ``with`` block through ``gc.callbacks``:
its generation, how long it took and what it collected. Chapter 00 uses it to show that a
collection's pause grows with the tracked objects alive, and when the interpreter runs them.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class GcPauses:
    """Every cyclic-GC collection seen inside a :func:`gc_pauses` block.

    ``frame`` has one row per collection with ``generation``, ``duration_ms`` and ``collected``.
    """

    _rows: list[tuple[int, float, int]] = field(default_factory=list, repr=False)
    closed: bool = False

    @property
    def frame(self) -> pd.DataFrame:
        """One row per collection; complete once the ``with`` block has ended."""
        import pandas as pd

        return pd.DataFrame(self._rows, columns=["generation", "duration_ms", "collected"])

    @property
    def count(self) -> int:
        """Number of collections recorded."""
        return len(self._rows)

    @property
    def total_ms(self) -> float:
        """Sum of all pauses, ms."""
        return float(sum(r[1] for r in self._rows))

    @property
    def max_ms(self) -> float:
        """Longest single pause, ms (0 when there was none)."""
        return float(max((r[1] for r in self._rows), default=0.0))


@contextmanager
def gc_pauses() -> Iterator[GcPauses]:
    """Record every cyclic-GC collection that happens inside the block, through ``gc.callbacks``.

    >>> with gc_pauses() as pauses:
    ...     _ = gc.collect()
    >>> pauses.count >= 1
    True
    """
    record = GcPauses()
    started: list[int] = [0]
    clock = time.perf_counter_ns

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = clock()
        else:
            record._rows.append(
                (info["generation"], (clock() - started[0]) / 1e6, info.get("collected", 0))
            )

    gc.callbacks.append(callback)
    try:
        yield record
    finally:
        gc.callbacks.remove(callback)
        record.closed = True
