"""Tests for leaklab.plot: one figure style for every chapter."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from leaklab.measure import MemoryTrace
from leaklab.plot import FIXED_COLORS, LEAKY_COLORS, plot_lines, plot_rss


def _trace(slope: float) -> MemoryTrace:
    seconds = [i * 0.1 for i in range(20)]
    return MemoryTrace(pd.DataFrame({"seconds": seconds, "rss_mib": [100 + slope * s for s in seconds]}))


def test_plot_rss_labels_each_curve_with_its_slope_and_colours_by_growth():
    fig = plot_rss({"leaky dict": _trace(50.0), "bounded": _trace(0.0)}, title="t")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["leaky dict  (+50.0 MiB/s)", "bounded  (+0.0 MiB/s)"]
    solid = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    assert solid[0].get_color() == LEAKY_COLORS[0]
    assert solid[1].get_color() == FIXED_COLORS[0]
    assert ax.get_ylabel() == "RSS (MiB)" and ax.get_xlabel() == "seconds"
    


def test_plot_rss_explicit_leaky_names_win():
    fig = plot_rss({"a": _trace(0.0)}, leaky={"a"})
    assert fig.axes[0].get_lines()[0].get_color() == LEAKY_COLORS[0]
    


@pytest.mark.parametrize("bad", [{}, [1, 2], {"a": 3}])
def test_plot_rss_rejects_bad_traces(bad):
    with pytest.raises(TypeError, match="traces"):
        plot_rss(bad)


def test_plot_lines_checks_lengths():
    with pytest.raises(ValueError, match="series"):
        plot_lines([1, 2], {"a": [1]}, xlabel="x", ylabel="y")
    fig = plot_lines([1, 10, 100], {"a": [1, 2, 3]}, xlabel="x", ylabel="y", logx=True)
    assert fig.axes[0].get_xscale() == "log"
    


def test_figures_render_themselves_as_png_for_jupyter():
    fig = plot_rss({"a": _trace(1.0)})
    png = fig._repr_png_()
    assert png.startswith(b"\x89PNG") and len(png) > 5_000
    # Not registered with pyplot: the inline backend will not show it a second time.
    assert fig not in [plt.figure(n) for n in plt.get_fignums()]
