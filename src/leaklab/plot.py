"""The course's figure style: every chapter draws RSS with :func:`plot_rss` and other line charts
with :func:`plot_lines`.

One look across the chapters:

- **Colour belongs to a series' role**, never to its position in a list, and is the same in every
  chapter: ``"leak"`` (the broken version) is red, ``"fixed"`` (the plain corrected code, or the
  standard library's answer) blue, ``"peer"`` (another library people use) grey-violet,
  ``"leaklab"`` (the course's own fix) green, ``"other"`` (a reference or a neutral measure) ochre.
  When one figure holds several series of a role, the others take shades of its colour chosen by
  their labels.
- **Legends sit outside the axes**, so they never cover data.
- A curve that rises is labelled with its fitted slope and drawn with it dashed; a curve that
  levels off is labelled with its plateau instead (one slope would read as a leak); a flat one
  with its slope, which is then about 0.
- ``per="request"`` puts requests (any unit a workload reports with
  :func:`leaklab.measure.progress`) on x, for stories told per request.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from leaklab.measure import MemoryTrace, fit_slope

__all__ = [
    "plot_rss",
    "plot_lines",
    "course_figure",
    "color_for",
    "CourseFigure",
    "ROLE_COLORS",
    "ROLES",
    "FIGSIZE",
]

#: Shades per role, darkest first. Every figure of the course takes its colours from here.
ROLE_COLORS: dict[str, tuple[str, ...]] = {
    "leak": ("#c62828", "#d84315", "#ad1457", "#8e2424"),
    "fixed": ("#1565c0", "#0277bd", "#283593", "#00838f"),
    "peer": ("#6a5f8a", "#757575", "#7b1fa2", "#4e4e6e"),
    "leaklab": ("#2e7d32", "#558b2f", "#00695c", "#1b5e20"),
    "other": ("#b8860b", "#795548", "#827717", "#a1887f"),
}
#: The roles a series can play, the keys of :data:`ROLE_COLORS`.
ROLES = tuple(ROLE_COLORS)
#: Width and height in inches of every course figure: readable on a slide and on a laptop.
FIGSIZE = (7.5, 4.2)

#: A curve counts as growing (role "leak" by default) when it rises at least this much.
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
    """A matplotlib Figure that Jupyter shows as one PNG, with no text repr beside it."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()

    def _ipython_display_(self) -> None:
        # Publish the picture alone: IPython would otherwise add "<CourseFigure size ...>" as
        # text/plain, which some front ends and slide exporters print beside the image.
        from IPython.display import display

        display({"image/png": self._repr_png_()}, raw=True)


def course_figure(nrows: int = 1, ncols: int = 1, *, sharex: bool = False,
                  figsize: tuple[float, float] | None = None) -> tuple[CourseFigure, Any]:
    """A new figure in the course style and its axes (one ``Axes`` or an array of them), for
    figures of several panels, e.g. queue length above RSS. Not registered with pyplot: make the
    figure the cell's last expression to show it once."""
    if figsize is None:
        figsize = (FIGSIZE[0], FIGSIZE[1] * (1 if nrows == 1 else 0.75 * nrows))
    with plt.rc_context(_RC):
        fig = CourseFigure(figsize=figsize, layout="constrained")
        axes = fig.subplots(nrows, ncols, sharex=sharex)
    return fig, axes


def _new_axes(ax: Axes | None) -> tuple[Figure, Axes, bool]:
    if ax is not None:
        if not isinstance(ax, Axes):
            raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
        return ax.figure, ax, False  # type: ignore[return-value]
    # A Figure made outside pyplot is shown exactly once, as the cell's result: pyplot figures
    # are shown again by the inline backend.
    fig, new_ax = course_figure()
    return fig, new_ax, True


def _style(ax: Axes) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, alpha=0.3)


def color_for(label: str, role: str, taken: Collection[str] = ()) -> str:
    """The colour of series ``label`` in ``role``: the role's own colour (its first shade) unless
    that is ``taken`` in the figure already; then a shade that is a function of the label, so the
    same pair of series gets the same pair of colours in every figure (when all shades are taken,
    one is reused)."""
    if role not in ROLE_COLORS:
        raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    shades = ROLE_COLORS[role]
    if shades[0] not in taken:
        return shades[0]
    others = shades[1:]
    start = zlib.crc32(str(label).encode()) % len(others)
    for k in range(len(others)):
        shade = others[(start + k) % len(others)]
        if shade not in taken:
            return shade
    return others[start]


def _check_labels(name: str, value: Any) -> None:
    if isinstance(value, str) or not isinstance(value, Collection):
        raise TypeError(f"{name} must be a collection of series labels (a set or list), got {value!r}")


def _roles(labels: Sequence[str], roles: Mapping[str, str] | None, leaky: Collection[str] | None,
           default: Any) -> dict[str, str]:
    """Role of every label: ``roles`` first, then ``leaky`` (role "leak"), then ``default(label)``."""
    if roles is not None and not isinstance(roles, Mapping):
        raise TypeError(f"roles must be a mapping of series label -> role, got {roles!r}")
    if leaky is not None:
        _check_labels("leaky", leaky)
    for source, names in (("roles", roles or {}), ("leaky", leaky or ())):
        unknown = [n for n in names if n not in labels]
        if unknown:
            raise ValueError(f"{source} names {unknown!r}, which are not series of this figure")
    out = {}
    for label in labels:
        if roles is not None and label in roles:
            role = roles[label]
            if role not in ROLE_COLORS:
                raise ValueError(f"roles[{label!r}] must be one of {', '.join(ROLES)}; got {role!r}")
        elif leaky is not None:
            role = "leak" if label in leaky else "fixed"
        else:
            role = default(label)
        out[label] = role
    return out


def _colors(roles: Mapping[str, str]) -> dict[str, str]:
    taken: list[str] = []
    colors = {}
    for label, role in roles.items():
        colors[label] = color_for(label, role, taken)
        taken.append(colors[label])
    return colors


def _legend(fig: Figure, ax: Axes, own_figure: bool) -> None:
    """Outside the axes: below the plot for a figure of our own, to the right of a given axes."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    if own_figure:
        fig.legend(handles, labels, loc="outside lower center", ncols=1 if len(labels) > 4 or
                   max(map(len, labels)) > 38 else 2)
    else:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def levels_off(x: Sequence[float], y: Sequence[float]) -> bool:
    """True when a series that rose has stopped rising: its last third is flat (rises less than a
    tenth of what the whole series rose, or under 1 unit) while the whole rose at least
    ``GROWTH_MIB``."""
    xs, ys = list(map(float, x)), list(map(float, y))
    n = len(xs)
    if n < 6:
        return False
    whole = fit_slope(xs, ys) * (xs[-1] - xs[0])
    tail = xs[2 * n // 3:], ys[2 * n // 3:]
    tail_rise = fit_slope(*tail) * (tail[0][-1] - tail[0][0])
    return whole >= GROWTH_MIB and tail_rise < max(0.1 * whole, 1.0)


def plot_rss(
    traces: Mapping[str, MemoryTrace],
    *,
    title: str | None = None,
    ax: Axes | None = None,
    roles: Mapping[str, str] | None = None,
    leaky: Collection[str] | None = None,
    slopes: bool = True,
    per: str | None = None,
) -> Figure:
    """Draw RSS for each named trace: over time, or over requests with ``per="request"``.

    Each curve is labelled with its least-squares slope (MiB/s, or KiB per unit with ``per``) and
    drawn with it dashed; one that levels off is labelled with its plateau instead.
    ``slopes=False`` leaves slopes out, for curves that rise and fall.

    ``roles`` maps labels to a role of :data:`ROLES` (its colour); ``leaky`` is a shorthand that
    gives the named labels role "leak" and the others "fixed". By default a curve that grew by at
    least ``GROWTH_MIB`` is "leak" and the others "fixed". Returns the figure, not registered with
    pyplot: make it the cell's last expression to show it once.
    """
    if not isinstance(traces, Mapping) or not traces:
        raise TypeError("traces must be a non-empty mapping of label -> MemoryTrace")
    for label, trace in traces.items():
        if not isinstance(trace, MemoryTrace):
            raise TypeError(f"traces[{label!r}] must be a MemoryTrace, got {type(trace).__name__}")
        if per is not None and not trace.has_progress:
            raise ValueError(f"per={per!r} needs progress marks, and traces[{label!r}] has none: "
                             "call leaklab.measure.progress(n) in its workload")
    if per is not None and (not isinstance(per, str) or not per):
        raise TypeError(f"per must be a unit name such as 'request', got {per!r}")
    role_of = _roles(list(traces), roles, leaky,
                     lambda label: "leak" if traces[label].growth_mib >= GROWTH_MIB else "fixed")
    colors = _colors(role_of)
    fig, ax, own = _new_axes(ax)
    for label, trace in traces.items():
        color = colors[label]
        frame = trace.frame
        x = frame["done"] if per else frame["seconds"]
        y = frame["rss_mib"]
        ax.plot(x, y, color=color, lw=2, label=label)
        if not slopes:
            continue
        line = ax.get_lines()[-1]
        if levels_off(x, y):
            tail = y.iloc[2 * len(y) // 3:]
            plateau = float(tail.median())
            ax.axhline(plateau, color=color, lw=1, ls=":", alpha=0.8)
            line.set_label(f"{label}  (levels off at {plateau - float(y.iloc[0]):+.0f} MiB)")
            continue
        slope = fit_slope(x, y)
        intercept = y.mean() - slope * x.mean()
        ax.plot(x, intercept + slope * x, color=color, lw=1, ls="--", alpha=0.7)
        unit = f"{slope * 1024:+.2f} KiB/{per}" if per else f"{slope:+.1f} MiB/s"
        line.set_label(f"{label}  ({unit})")
    ax.set_xlabel(f"{per}s" if per else "seconds")
    if per:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_ylabel("RSS (MiB)")
    if title:
        ax.set_title(title)
    _legend(fig, ax, own)
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
    roles: Mapping[str, str] | None = None,
    leaky: Collection[str] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Draw one or more series against ``x`` in the course style (markers on the points).

    Colours come from ``roles`` (label -> role) or ``leaky`` (named labels "leak", others
    "fixed"); by default every series is "fixed". Sizes that span decades want ``logx``/``logy``.
    """
    if not isinstance(series, Mapping) or not series:
        raise TypeError("series must be a non-empty mapping of label -> values")
    for label, values in series.items():
        if len(values) != len(x):
            raise ValueError(f"series[{label!r}] has {len(values)} values for {len(x)} x values")
    colors = _colors(_roles(list(series), roles, leaky, lambda label: "fixed"))
    fig, ax, own = _new_axes(ax)
    for label, values in series.items():
        ax.plot(x, values, marker="o", lw=2, color=colors[label], label=label)
    if logx and min(x) <= 0:
        ax.set_xscale("symlog", linthresh=1)  # a log axis that also shows 0
    elif logx:
        ax.set_xscale("log")
    elif all(float(v).is_integer() for v in x):  # counts: thousands separators, no decimals
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    _legend(fig, ax, own)
    _style(ax)
    return fig
