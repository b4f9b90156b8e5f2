"""Tests for leaklab.plot: one figure style for every chapter, colours keyed by role."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from leaklab.measure import MemoryTrace
from leaklab.plot import ROLE_COLORS, color_for, course_figure, levels_off, plot_lines, plot_rss


def _trace(slope: float, n: int = 20, done: bool = False) -> MemoryTrace:
    seconds = [i * 0.1 for i in range(n)]
    columns = {"seconds": seconds, "rss_mib": [100 + slope * s for s in seconds]}
    if done:
        columns["done"] = [i * 1000 for i in range(n)]
    return MemoryTrace(pd.DataFrame(columns))


def _plateau() -> MemoryTrace:
    seconds = [i * 0.1 for i in range(30)]
    rss = [100 + min(s, 1.0) * 50 for s in seconds]  # rises 50 MiB in 1 s, then flat for 2 s
    return MemoryTrace(pd.DataFrame({"seconds": seconds, "rss_mib": rss}))


def _legend_texts(fig):
    legends = fig.legends or [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def _solid(fig):
    return [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "-"]


def test_plot_rss_labels_each_curve_with_its_slope_and_colours_by_growth():
    fig = plot_rss({"leaky dict": _trace(50.0), "bounded": _trace(0.0)}, title="t")
    assert _legend_texts(fig) == ["leaky dict  (+50.0 MiB/s)", "bounded  (+0.0 MiB/s)"]
    solid = _solid(fig)
    assert solid[0].get_color() in ROLE_COLORS["leak"]
    assert solid[1].get_color() in ROLE_COLORS["fixed"]
    ax = fig.axes[0]
    assert ax.get_ylabel() == "RSS (MiB)" and ax.get_xlabel() == "seconds"


def test_a_series_keeps_its_colour_whatever_its_position_or_company():
    one = plot_rss({"functools.lru_cache": _trace(0.0), "dict": _trace(50.0)},
                   roles={"functools.lru_cache": "fixed", "dict": "leak"})
    other = plot_rss({"x": _trace(0.0), "y": _trace(0.0), "functools.lru_cache": _trace(0.0)},
                     roles={"functools.lru_cache": "fixed", "x": "peer", "y": "leaklab"})
    first = {line.get_label().split("  ")[0]: line.get_color() for line in _solid(one)}
    second = {line.get_label().split("  ")[0]: line.get_color() for line in _solid(other)}
    assert first["functools.lru_cache"] == second["functools.lru_cache"]
    assert second["x"] in ROLE_COLORS["peer"] and second["y"] in ROLE_COLORS["leaklab"]


def test_series_of_one_role_in_one_figure_get_distinct_shades_and_many_do_not_fail():
    series = {f"variant {i}": [i, i + 1] for i in range(20)}
    fig = plot_lines([1, 2], series, xlabel="x", ylabel="y", roles=dict.fromkeys(series, "peer"))
    colors = [line.get_color() for line in fig.axes[0].get_lines()]
    assert len(set(colors[:4])) == 4 and set(colors) == set(ROLE_COLORS["peer"])


def test_color_for_is_stable_and_checks_the_role():
    assert color_for("cachetools", "peer") == ROLE_COLORS["peer"][0]  # a role's own colour first
    taken = [ROLE_COLORS["peer"][0]]
    assert color_for("cachebox", "peer", taken) == color_for("cachebox", "peer", taken) != taken[0]
    with pytest.raises(ValueError, match="role"):
        color_for("a", "leaky")


def test_leaky_names_match_exactly_and_must_be_a_collection():
    fig = plot_lines([1, 2], {"leak": [1, 2], "leaky dict": [2, 3]}, xlabel="x", ylabel="y",
                     leaky={"leaky dict"})
    lines = fig.axes[0].get_lines()
    assert lines[0].get_color() in ROLE_COLORS["fixed"]  # "leak" is not a substring match
    assert lines[1].get_color() in ROLE_COLORS["leak"]
    with pytest.raises(TypeError, match="leaky"):
        plot_lines([1, 2], {"leak": [1, 2]}, xlabel="x", ylabel="y", leaky="leak")
    with pytest.raises(ValueError, match="not series"):
        plot_rss({"a": _trace(0.0)}, leaky={"b"})
    with pytest.raises(ValueError, match="roles"):
        plot_rss({"a": _trace(0.0)}, roles={"a": "bad"})


def test_explicit_roles_win_over_growth():
    fig = plot_rss({"a": _trace(0.0)}, leaky={"a"})
    assert _solid(fig)[0].get_color() in ROLE_COLORS["leak"]


def test_a_curve_that_levels_off_is_labelled_with_its_plateau_not_a_slope():
    fig = plot_rss({"bounded cache": _plateau(), "leak": _trace(50.0, n=30)})
    texts = _legend_texts(fig)
    assert texts[0] == "bounded cache  (levels off at +50 MiB)"
    assert texts[1].endswith("MiB/s)")
    assert levels_off(range(30), [min(i, 10) * 5 for i in range(30)])
    assert not levels_off(range(30), [i * 5 for i in range(30)])


def test_per_request_puts_requests_on_x():
    fig = plot_rss({"dict": _trace(50.0, done=True)}, per="request")
    assert fig.axes[0].get_xlabel() == "requests"
    # 50 MiB/s over 1,000 requests per 0.1 s: 5 MiB per 1,000 requests, 5.12 KiB per request.
    assert _legend_texts(fig) == ["dict  (+5.12 KiB/request)"]
    with pytest.raises(ValueError, match="progress"):
        plot_rss({"dict": _trace(50.0)}, per="request")


def test_legend_never_covers_the_data():
    fig = plot_rss({f"a long label for a curve number {i}": _trace(float(i)) for i in range(5)})
    fig._repr_png_()  # lay the figure out as Jupyter would
    renderer = fig._get_renderer()
    legend_box = fig.legends[0].get_window_extent(renderer)
    axes_box = fig.axes[0].get_window_extent(renderer)
    assert not legend_box.overlaps(axes_box)


@pytest.mark.parametrize("bad", [{}, [1, 2], {"a": 3}])
def test_plot_rss_rejects_bad_traces(bad):
    with pytest.raises(TypeError, match="traces"):
        plot_rss(bad)


def test_plot_lines_checks_lengths():
    with pytest.raises(ValueError, match="series"):
        plot_lines([1, 2], {"a": [1]}, xlabel="x", ylabel="y")
    fig = plot_lines([1, 10, 100], {"a": [1, 2, 3]}, xlabel="x", ylabel="y", logx=True)
    assert fig.axes[0].get_xscale() == "log"


def test_figures_render_themselves_as_one_png_for_jupyter(monkeypatch):
    fig = plot_rss({"a": _trace(1.0)})
    png = fig._repr_png_()
    assert png.startswith(b"\x89PNG") and len(png) > 5_000
    # Not registered with pyplot: the inline backend will not show it a second time.
    assert fig not in [plt.figure(n) for n in plt.get_fignums()]
    # Shown in Jupyter as the image alone, with no "<CourseFigure ...>" text beside it.
    shown = []
    import IPython.display

    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append((obj, raw)))
    fig._ipython_display_()
    assert [(sorted(obj), raw) for obj, raw in shown] == [(["image/png"], True)]


def test_course_figure_makes_panels():
    fig, (top, bottom) = course_figure(2, 1, sharex=True)
    plot_lines([1, 2], {"queue length": [1, 5]}, xlabel="s", ylabel="calls", ax=top,
               roles={"queue length": "leak"})
    plot_rss({"rss": _trace(1.0)}, ax=bottom)
    assert len(fig.axes) == 2 and top.get_legend() is not None


def test_fractional_x_keeps_its_decimals():
    fig = plot_lines([0.0, 0.5, 1.0, 1.5], {"queue": [1, 2, 3, 4]}, xlabel="s", ylabel="n")
    fig._repr_png_()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert len(set(labels)) == len(labels)  # not "0, 0, 1, 1"
