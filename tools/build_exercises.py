"""Write the student workbook: `make exercises` (also a step of `make course`).

For every chapter ``notebooks/NN_name.ipynb`` it writes ``_build/exercises/NN_name.ipynb`` in which
each code cell tagged ``solution`` is replaced by a stub that names the exercise, repeats its hint
as comments and runs (``pass``); the stub has no outputs and is tagged ``exercise``. Every other
cell is kept as committed, outputs included, so a learner reads the chapter as published and can
compare the figures with their own run. Relative links that leave the notebooks folder (the
"Contents" link to ``../README.md``) are rewritten so that they still resolve from the workbook.

An exercise is the markdown between the previous solution (or the chapter's start) and its
solution cell: the last numbered item (``2. ...``) or markdown cell there that contains
``Hint:``. The hint is the text from ``Hint:`` to the end of that item. A solution cell with no
hint before it is an error naming the notebook and the cell, so that authors keep their hints.

    python tools/build_exercises.py [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
OUT = ROOT / "_build" / "exercises"
CHAPTER = re.compile(r"^\d\d_.+\.ipynb$")
ITEM = re.compile(r"^\s{0,3}(\d+)[.)]\s", re.M)   # a numbered markdown list item
HINT = "Hint:"
LINK = re.compile(r"(\]\()(\.\./[^)\s]+)(\))")  # [text](../somewhere) in markdown
WIDTH = 99


class BuildError(Exception):
    """A chapter cannot be turned into a workbook (the message names the notebook and the cell)."""


@dataclass
class Exercise:
    """What a stub says about the exercise it stands for."""
    number: str
    hint: str


def chapters(folder: Path = NOTEBOOKS) -> list[Path]:
    """The chapter notebooks (NN_name.ipynb) of ``folder``, in reading order."""
    return sorted(p for p in folder.glob("*.ipynb") if CHAPTER.match(p.name))


def is_solution(cell: nbformat.NotebookNode) -> bool:
    return "solution" in cell.metadata.get("tags", [])


def _squash(text: str) -> str:
    return " ".join(text.split())


def find_exercise(markdown: str, default_number: int) -> Exercise | None:
    """The exercise whose hint ``markdown`` (one cell) holds: its number and hint, or None.

    The last numbered item containing ``Hint:`` wins; a cell with a hint but no numbered item is
    exercise ``default_number`` (the one after the previous exercise)."""
    if HINT not in markdown:
        return None
    starts = [m.start() for m in ITEM.finditer(markdown)]
    items = [markdown[a:b] for a, b in zip(starts, starts[1:] + [len(markdown)])] or [markdown]
    item = [text for text in items if HINT in text][-1]
    found = ITEM.match(item)
    number = found.group(1) if found else str(default_number)
    hint = _squash(item.split(HINT, 1)[1])
    return Exercise(number, hint) if hint else None


def stub_source(exercise: Exercise) -> str:
    """The code a learner finds in place of a solution: the exercise, its hint, and ``pass``."""
    hint = textwrap.wrap(exercise.hint, width=WIDTH, initial_indent="# Hint: ",
                         subsequent_indent="#       ", break_long_words=False,
                         break_on_hyphens=False)
    return "\n".join([f"# Exercise {exercise.number}: your solution here", *hint, "pass"])


def _relink(source: str, source_dir: Path, out: Path) -> str:
    """Rewrite ``](../x)`` links, written relative to ``source_dir``, relative to ``out``."""
    def fix(match: re.Match) -> str:
        target, _, anchor = match.group(2).partition("#")
        moved = os.path.relpath((source_dir / target).resolve(), out.resolve())
        return match.group(1) + Path(moved).as_posix() + ("#" + anchor if anchor else "") + match.group(3)
    return LINK.sub(fix, source)


def student_version(nb: nbformat.NotebookNode, name: str, source_dir: Path = NOTEBOOKS,
                    out: Path = OUT) -> nbformat.NotebookNode:
    """A copy of chapter ``nb`` with every solution replaced by a stub (``name`` is for errors)."""
    student = copy.deepcopy(nb)
    last_solution, last_number = -1, 0
    for index, cell in enumerate(student.cells):
        if cell.cell_type == "markdown":
            cell.source = _relink(cell.source, source_dir, out)
        if not is_solution(cell):
            continue
        if cell.cell_type != "code":
            raise BuildError(f"{name}: cell {index} is tagged 'solution' but is a {cell.cell_type} "
                             "cell; only code cells can be solutions")
        exercise = None
        for before in range(index - 1, last_solution, -1):
            if nb.cells[before].cell_type == "markdown":
                exercise = find_exercise(nb.cells[before].source, last_number + 1)
                if exercise:
                    break
        if exercise is None:
            first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
            raise BuildError(
                f"{name}: solution cell {index} ({first_line[:60]!r}) has no exercise with a "
                f"'{HINT}' in the markdown before it (cells {last_solution + 1}-{index - 1}); "
                "write the exercise's hint there")
        last_solution, last_number = index, int(exercise.number)
        cell.source = stub_source(exercise)
        cell.outputs = []
        cell.execution_count = None
        cell.metadata["tags"] = ["exercise" if t == "solution" else t for t in cell.metadata["tags"]]
        cell.metadata.pop("execution", None)   # timings of the solution's run
    return student


def build(out: Path | None = None, notebooks: Path | None = None) -> list[Path]:
    """Write the student version of every chapter into ``out`` (default ``_build/exercises/``)
    and return their paths. Raises BuildError for a solution without a hint."""
    out = Path(out) if out is not None else OUT
    source_dir = Path(notebooks) if notebooks is not None else NOTEBOOKS
    paths = chapters(source_dir)
    if not paths:
        raise BuildError(f"no chapter notebooks (NN_name.ipynb) in {source_dir}")
    if out.resolve() == source_dir.resolve():
        raise BuildError(f"out={out} is the chapters' own folder: the student versions would "
                         "overwrite the solutions; choose another folder")
    # Every chapter is converted before anything is written: an error leaves no half workbook.
    students = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        students.append((path.name, student_version(nb, f"{source_dir.name}/{path.name}", source_dir, out)))
    out.mkdir(parents=True, exist_ok=True)
    names = {name for name, _ in students}
    for stale in chapters(out):   # a chapter renamed or removed since the last build
        if stale.name not in names:
            stale.unlink()
    written = []
    for name, student in students:
        nbformat.validate(student)
        target = out / name
        nbformat.write(student, target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help=f"folder to write into (default {OUT.relative_to(ROOT)}/)")
    args = parser.parse_args(argv)
    try:
        written = build(args.out)
    except BuildError as error:
        print(f"build_exercises: {error}", file=sys.stderr)
        return 1
    exercises = sum(
        sum(1 for c in nbformat.read(p, as_version=4).cells if "exercise" in c.metadata.get("tags", []))
        for p in written)
    where = written[0].parent
    try:
        where = where.resolve().relative_to(ROOT)
    except ValueError:
        pass
    print(f"{len(written)} student notebooks with {exercises} exercises in {where}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
