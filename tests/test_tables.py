"""Tests for leaklab.tables: notebook tables whose text output survives nbval's sanitizing."""

import pandas as pd
import pytest

from leaklab.tables import table


def test_text_view_has_no_padding_and_formats_per_column():
    frame = pd.DataFrame({"rss": [9.83, 10.12], "count": [3, 40]}, index=pd.Index(["a", "b"], name="run"))
    shown = table(frame, {"rss": "{:.1f} MiB"})
    assert repr(shown) == "run | rss | count\na | 9.8 MiB | 3\nb | 10.1 MiB | 40"
    html = shown._repr_html_()
    assert "<td>10.1 MiB</td>" in html and "<th>run</th>" in html


def test_one_format_for_all_columns_and_escaping():
    shown = table(pd.DataFrame({"<x>": [1.5]}), "{:.2f} ms")
    assert repr(shown).splitlines()[1] == "0 | 1.50 ms"
    assert "&lt;x&gt;" in shown._repr_html_()


@pytest.mark.parametrize("bad, error", [([1, 2], TypeError), ("not a frame", TypeError)])
def test_rejects_non_frames(bad, error):
    with pytest.raises(error, match="frame"):
        table(bad)


def test_rejects_unknown_columns_and_bad_formats():
    frame = pd.DataFrame({"a": [1]})
    with pytest.raises(ValueError, match="formats"):
        table(frame, {"b": "{}"})
    with pytest.raises(TypeError, match="formats"):
        table(frame, 3)
