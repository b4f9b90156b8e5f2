"""RSS over the run of one function, and the fitted line the chapters assert on (every chapter).

:func:`~leaklab.measure.track` and :func:`~leaklab.measure.track_isolated` return a
:class:`MemoryTrace`. Chapters never assert on a raw RSS value: they assert on a least-squares fit
(:func:`fit_slope`), through :func:`fitted_rise` (the MiB a run's fitted line rises) or the
trace's ``slope_mib_per_s`` and ``bytes_per_unit``, which one early or late sample cannot move much.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from leaklab.measure.rss import MIB

if TYPE_CHECKING:  # pandas is imported only when a frame is built: isolated children stay lean
    import pandas as pd


def fit_slope(x: Any, y: Any) -> float:
    """Least-squares slope of ``y`` against ``x``: the robust statistic the chapters assert on.

    Returns 0.0 when there are fewer than two distinct ``x`` values.
    """
    xs = [float(v) for v in x]
    ys = [float(v) for v in y]
    if len(xs) != len(ys):
        raise ValueError(f"x and y must have the same length, got {len(xs)} and {len(ys)}")
    if len(xs) < 2:
        return 0.0
    mx = math.fsum(xs) / len(xs)
    my = math.fsum(ys) / len(ys)
    sxx = math.fsum((a - mx) ** 2 for a in xs)
    if sxx == 0:
        return 0.0
    return math.fsum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sxx


def fitted_rise(trace: MemoryTrace) -> float:
    """MiB that the least-squares line through ``trace`` rises over the whole run.

    Unlike ``growth_mib`` (last sample minus first) one late or early sample cannot move it much,
    which is why chapters assert on it: a leak of N MiB rises about N, a bounded cache about 0.
    """
    if not isinstance(trace, MemoryTrace):
        raise TypeError(f"trace must be a MemoryTrace, got {type(trace).__name__}")
    return trace.slope_mib_per_s * trace.seconds


@dataclass(frozen=True)
class MemoryTrace:
    """RSS sampled over the run of one function.

    ``frame`` has the columns ``seconds`` (since the first sample) and ``rss_mib``;
    ``result`` is what the function returned.
    """

    frame: pd.DataFrame
    result: Any = None

    @property
    def peak_mib(self) -> float:
        """Highest sampled RSS, MiB."""
        return float(self.frame["rss_mib"].max())

    @property
    def growth_mib(self) -> float:
        """Last sample minus first sample, MiB."""
        rss = self.frame["rss_mib"]
        return float(rss.iloc[-1] - rss.iloc[0])

    @property
    def slope_mib_per_s(self) -> float:
        """Least-squares slope of RSS against time, MiB per second."""
        return fit_slope(self.frame["seconds"], self.frame["rss_mib"])

    @property
    def seconds(self) -> float:
        """Duration covered by the samples."""
        return float(self.frame["seconds"].iloc[-1])

    @property
    def has_progress(self) -> bool:
        """True when the workload reported :func:`progress`, so ``frame`` has a ``done`` column."""
        return "done" in self.frame.columns

    @property
    def bytes_per_unit(self) -> float:
        """Least-squares slope of RSS against ``done`` (bytes per request, item, ...).

        Needs a workload that called :func:`progress`; raises ValueError otherwise.
        """
        if not self.has_progress:
            raise ValueError("this trace has no 'done' column: its workload never called progress()")
        return fit_slope(self.frame["done"], self.frame["rss_mib"]) * MIB

    def __repr__(self) -> str:
        return (
            f"MemoryTrace(samples={len(self.frame)}, seconds={self.seconds:.2f}, "
            f"growth_mib={self.growth_mib:+.1f}, slope_mib_per_s={self.slope_mib_per_s:+.1f}, "
            f"peak_mib={self.peak_mib:.1f})"
        )


def _frame(columns: dict[str, list[float]]) -> pd.DataFrame:
    """The trace's frame from the sampled columns (pandas imported here, not before)."""
    import pandas as pd

    return pd.DataFrame(columns)
