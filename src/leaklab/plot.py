"""The course's figure style: every chapter draws RSS over time with :func:`plot_rss`.

One look across the chapters: seconds on x, MiB on y, each curve labelled with its fitted slope
and drawn with that slope as a dashed line; curves that grow are drawn in warm colours, curves
that stay flat in cool ones. :func:`plot_lines` draws the other line charts (a cost against a
size) in the same style.
"""

from __future__ import annotations

import io

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from leaklab.measure import MemoryTrace

__all__ = ["plot_rss", "plot_lines", "CourseFigure", "LEAKY_COLORS", "FIXED_COLORS", "FIGSIZE"]

#: Colours for curves that grow (a leak) and for curves that stay flat (a fix), in order.
LEAKY_COLORS = ("#c62828", "#ef6c00", "#ad1457", "#6d4c41")
FIXED_COLORS = ("#1565c0", "#2e7d32", "#00838f", "#5e35b1", "#455a64")
FIGSIZE = (7.5, 4.0)

#: A curve counts as growing (drawn in a leak colour) when it rises at least this much.
GROWTH_MIB = 5.0

_RC = {
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "font.size": 10,
}


class CourseFigure(Figure):
    """A matplotlib Figure that Jupyter shows as a PNG when it is a cell's result."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def _new_axes(ax: Axes | None) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    # A Figure made outside pyplot is shown exactly once, as the cell's result: pyplot figures
    # are shown again by the inline backend, and nbval runs cells with store_history=False,
    # where a trailing ';' does not hide the result, so the two counts would differ.
    with plt.rc_context(_RC):
        fig = CourseFigure(figsize=FIGSIZE, layout="constrained")
        new_ax = fig.subplots()
    return fig, new_ax


def _style(ax: Axes) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, alpha=0.3)


def plot_rss(
    traces: Mapping[str, MemoryTrace],
    *,
    title: str | None = None,
    ax: Axes | None = None,
    leaky: Collection[str] | None = None,
    slopes: bool = True,
) -> Figure:
    """Draw RSS over time for each named trace, each labelled with its least-squares slope.

    ``slopes=False`` leaves out the slope (label and dashed fit), for curves that rise and fall,
    where one slope would mislead.

    ``leaky`` names the curves to draw in leak colours; by default a curve is drawn as leaky when
    it grew by at least ``GROWTH_MIB``. Returns the figure, not registered with pyplot: make it the cell's last expression to show it
    once (``fig.savefig(...)`` outside a notebook).
    """
    if not isinstance(traces, Mapping) or not traces:
        raise TypeError("traces must be a non-empty mapping of label -> MemoryTrace")
    for label, trace in traces.items():
        if not isinstance(trace, MemoryTrace):
            raise TypeError(f"traces[{label!r}] must be a MemoryTrace, got {type(trace).__name__}")
    if leaky is not None and (isinstance(leaky, str) or not isinstance(leaky, Collection)):
        raise TypeError("leaky must be a collection of trace labels")
    fig, ax = _new_axes(ax)
    warm, cool = iter(LEAKY_COLORS * 3), iter(FIXED_COLORS * 3)
    for label, trace in traces.items():
        grows = label in leaky if leaky is not None else trace.growth_mib >= GROWTH_MIB
        color = next(warm) if grows else next(cool)
        frame = trace.frame
        slope = trace.slope_mib_per_s
        ax.plot(frame["seconds"], frame["rss_mib"], color=color, lw=2,
                label=f"{label}  ({slope:+.1f} MiB/s)" if slopes else label)
        if slopes:
            x = frame["seconds"]
            intercept = frame["rss_mib"].mean() - slope * x.mean()
            ax.plot(x, intercept + slope * x, color=color, lw=1, ls="--", alpha=0.7)
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS (MiB)")
    if title:
        ax.set_title(title)
    ax.legend(loc="best")
    _style(ax)
    return fig


def plot_lines(
    x: Sequence[Any],
    series: Mapping[str, Sequence[float]],
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    logx: bool = False,
    logy: bool = False,
    leaky: Collection[str] = (),
    ax: Axes | None = None,
) -> Figure:
    """Draw one or more series against ``x`` in the course style (markers on the points).

    Series named in ``leaky`` take leak colours; the others take the fixed colours.
    """
    if not isinstance(series, Mapping) or not series:
        raise TypeError("series must be a non-empty mapping of label -> values")
    fig, ax = _new_axes(ax)
    warm, cool = iter(LEAKY_COLORS * 3), iter(FIXED_COLORS * 3)
    for label, values in series.items():
        if len(values) != len(x):
            raise ValueError(f"series[{label!r}] has {len(values)} values for {len(x)} x values")
        color = next(warm) if label in leaky else next(cool)
        ax.plot(x, values, marker="o", lw=2, color=color, label=label)
    if logx and min(x) <= 0:
        ax.set_xscale("symlog", linthresh=1)  # a log axis that also shows 0
    elif logx:
        ax.set_xscale("log")
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left")
    _style(ax)
    return fig
