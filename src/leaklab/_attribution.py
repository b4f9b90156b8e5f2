"""Which line of a program an allocation is charged to: the top lines of chapter 06's leak report.

:mod:`leaklab.testing` takes two tracemalloc snapshots around the measured calls and asks
:func:`_top_lines` which lines grew. Each allocation still alive is charged to the innermost frame
in the user's code (outside the standard library and site-packages), failing that to the
innermost library frame; what leaklab's own measuring machinery, tracemalloc and importlib
allocate is left out. File names are shown as imported (:func:`_short`), never where a machine
keeps them.
"""

from __future__ import annotations

import inspect
import os
import sys
import sysconfig
import tracemalloc
from collections.abc import Iterable
from typing import Any

from leaklab.measure import _measure_leak

_OWN, _SKIP, _LIBRARY, _USER = 0, 1, 2, 3


def _norm(path: str) -> str:
    return os.path.normcase(os.path.abspath(path))


_HERE = os.path.dirname(_norm(__file__))
# leaklab's measuring machinery and tracemalloc: an allocation made there is the measurement's own.
_MEASURE_DIR = os.path.join(_HERE, "measure")
_OWN_FILES = frozenset(
    os.path.join(_HERE, name)
    for name in ("testing.py", "_attribution.py", "pytest_plugin.py", "_checks.py")
) | frozenset(
    os.path.join(_MEASURE_DIR, name) for name in os.listdir(_MEASURE_DIR) if name.endswith(".py")
) | {_norm(tracemalloc.__file__)}
_LIBRARY_DIRS = tuple(
    sorted({_norm(p) + os.sep for key in ("stdlib", "platstdlib", "purelib", "platlib")
            if (p := sysconfig.get_paths().get(key))})
)
_IMPORTLIB_DIR = _norm(os.path.dirname(__import__("importlib").__file__)) + os.sep


def _call_lines() -> frozenset[tuple[str, int]]:
    """The lines of the measuring loop that call ``fn``: what a C callable (an ``lru_cache``
    wrapper, a bound ``list.append``) allocates is charged to them, so it is the caller's."""
    try:
        lines, first = inspect.getsourcelines(_measure_leak)
    except (OSError, TypeError):
        return frozenset()
    filename = _measure_leak.__code__.co_filename
    return frozenset((filename, first + i) for i, text in enumerate(lines)
                     if text.rstrip().endswith("# the measured call"))


_CALL_LINES = _call_lines()


def _classify(filename: str, cache: dict[str, int]) -> int:
    kind = cache.get(filename)
    if kind is None:
        if filename.startswith("<frozen importlib") or filename.startswith("<frozen zipimport"):
            kind = _SKIP
        elif filename.startswith("<frozen "):
            kind = _LIBRARY
        elif filename.startswith("<"):  # <string>, <stdin>: code the user typed or exec'd
            kind = _USER
        else:
            path = _norm(filename)
            if path in _OWN_FILES:
                kind = _OWN
            elif path.startswith(_IMPORTLIB_DIR):
                kind = _SKIP
            elif path.startswith(_LIBRARY_DIRS):
                kind = _LIBRARY
            else:
                kind = _USER
        cache[filename] = kind
    return kind


def _charged_line(frames: tuple[tuple[str, int], ...],
                  kinds: dict[str, int]) -> tuple[str, int] | None:
    """The line an allocation is charged to (``frames`` most recent first), None if it is the
    measurement's own."""
    if not frames:
        return None
    if _classify(frames[0][0], kinds) == _OWN and frames[0] not in _CALL_LINES:
        return None
    fallback = None
    for frame in frames:
        kind = _classify(frame[0], kinds)
        if kind == _USER:
            return frame
        if kind == _LIBRARY and fallback is None:
            fallback = frame
    return fallback


def _raw_traces(snapshot: tracemalloc.Snapshot) -> Iterable[tuple[int, tuple[tuple[str, int], ...]]]:
    """(size, frames most recent first) for every trace in ``snapshot``."""
    raw = getattr(snapshot.traces, "_traces", None)
    if isinstance(raw, list) and (not raw or (isinstance(raw[0], tuple) and len(raw[0]) >= 3)):
        return ((trace[1], trace[2]) for trace in raw)
    # CPython's private layout changed: the public API (frames oldest first), slower.
    return ((trace.size, tuple((f.filename, f.lineno) for f in reversed(trace.traceback)))
            for trace in snapshot.traces)


def _sizes_by_line(snapshot: tracemalloc.Snapshot, kinds: dict[str, int],
                   choices: dict[Any, tuple[str, int] | None]) -> dict[tuple[str, int], int]:
    sizes: dict[tuple[str, int], int] = {}
    for size, frames in _raw_traces(snapshot):
        try:
            line = choices[frames]
        except KeyError:
            line = choices[frames] = _charged_line(frames, kinds)
        if line is not None:
            sizes[line] = sizes.get(line, 0) + size
    return sizes


def _top_lines(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot,
               top: int) -> list[tuple[str, int, int]]:
    """The ``top`` lines whose charged memory grew most from ``before`` to ``after``:
    (filename, line number, bytes grown), largest first."""
    kinds: dict[str, int] = {}
    choices: dict[Any, tuple[str, int] | None] = {}
    old = _sizes_by_line(before, kinds, choices)
    new = _sizes_by_line(after, kinds, choices)
    grown = [(size - old.get(line, 0), line) for line, size in new.items()]
    grown = [item for item in grown if item[0] > 0]
    grown.sort(key=lambda item: (-item[0], item[1]))
    return [(filename, int(lineno), int(size)) for size, (filename, lineno) in grown[:top]]


def _short(filename: str) -> str:
    """``filename`` relative to the current directory when it is under it, else relative to the
    ``sys.path`` entry it was imported from (``leaklab/scenarios/x.py``), so that a report never
    shows where a machine keeps its files; else its name alone."""
    candidates = []
    for base in [os.getcwd(), *sys.path]:
        if not base:
            continue
        try:
            relative = os.path.relpath(filename, base)
        except ValueError:  # another drive on Windows
            continue
        if not relative.startswith(os.pardir):
            candidates.append(relative)
    return min(candidates, key=len) if candidates else os.path.basename(filename)
