"""Tables of measurements for the notebooks (every chapter).

A pandas ``Styler`` would store its memory address as the plain-text output, and a plain
``DataFrame`` pads its columns to the widest value, so a value that changes length from run to run
(9.8 MiB, then 10.1 MiB) shifts every line. :func:`table` formats the cells as text and renders the
plain-text view without padding (``a | b | c``), so that nbval's sanitize patterns can mask the
measured values and compare the rest.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

__all__ = ["Table", "table"]

Formatter = str | Callable[[Any], str]


class Table:
    """A formatted table that displays as HTML in Jupyter and as unpadded text elsewhere."""

    def __init__(self, cells: pd.DataFrame, index_name: str) -> None:
        self.cells = cells
        self.index_name = index_name

    def _rows(self) -> list[list[str]]:
        header = [self.index_name, *map(str, self.cells.columns)]
        body = [[str(idx), *row] for idx, row in zip(self.cells.index, self.cells.itertuples(index=False))]
        return [header, *body]

    def __repr__(self) -> str:
        return "\n".join(" | ".join(row) for row in self._rows())

    def _repr_html_(self) -> str:
        head, *body = self._rows()
        th = "".join(f"<th>{html.escape(c)}</th>" for c in head)
        trs = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body
        )
        return f'<table class="leaklab"><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>'


def _apply(fmt: Formatter, value: Any) -> str:
    return fmt(value) if callable(fmt) else fmt.format(value)


def table(frame: pd.DataFrame, formats: Formatter | Mapping[str, Formatter] | None = None) -> Table:
    """Format ``frame`` for display: ``formats`` is one format string / callable for every column,
    or a mapping of column name to one (unnamed columns use ``str``)."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    if formats is not None and not isinstance(formats, (str, Mapping)) and not callable(formats):
        raise TypeError("formats must be a format string, a callable or a mapping of column -> format")
    if isinstance(formats, Mapping):
        unknown = set(formats) - set(frame.columns)
        if unknown:
            raise ValueError(f"formats names columns that frame does not have: {sorted(unknown)}")
    cells = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        fmt = formats.get(column, str) if isinstance(formats, Mapping) else (formats or str)
        cells[column] = [_apply(fmt, v) for v in frame[column]]
    return Table(cells, str(frame.index.name or ""))
