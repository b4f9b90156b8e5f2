"""Hygiene of the committed chapters: what nbval does not check by itself.

nbval re-runs every cell and compares outputs; these tests check that the stored outputs come from
one clean top-to-bottom run and carry nothing machine-specific, that the navigation is current and
that every chapter follows the template and declares its budget.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p for p in (ROOT / "notebooks").glob("*.ipynb") if re.match(r"\d\d_", p.name))
ADDRESS = re.compile(r"\bat 0x[0-9a-fA-F]{6,}|\b0x[0-9a-fA-F]{8,}\b")
MACHINE_PATH = re.compile(r"(/home/|/root/|/tmp/|/work/|site-packages|[A-Z]:\\\\)")


def _texts(output: dict) -> list[str]:
    if output["output_type"] == "stream":
        return [output["text"]]
    if output["output_type"] == "error":
        return ["\n".join(output["traceback"])]
    return [v for k, v in output.get("data", {}).items() if k.startswith("text/")]


def test_there_are_chapters():
    assert [p.name for p in CHAPTERS][:1] == ["00_measuring_memory.ipynb"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_outputs_come_from_one_clean_run(path):
    nb = nbformat.read(path, as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), "re-run the notebook top to bottom before committing"
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            assert output["output_type"] != "error", f"stored error in: {cell.source[:60]!r}"
            assert not (output["output_type"] == "stream" and output["name"] == "stderr"), (
                f"warning or stderr output stored in: {cell.source[:60]!r}: {output.get('text', '')[:200]}"
            )
            for text in _texts(output):
                assert not ADDRESS.search(text), f"memory address in output of {cell.source[:60]!r}"
                assert not MACHINE_PATH.search(text), f"machine path in output of {cell.source[:60]!r}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_follows_the_template(path):
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for heading in ("**What you will learn**", "**What you need:**", "**Time:**", "## Summary",
                    "## Exercises", "## Further reading"):
        assert heading in text, f"{path.name} lacks {heading}"
    budget = nb.metadata.get("leaklab", {})
    assert budget.get("budget_seconds", 0) > 0 and budget.get("budget_mib", 0) > 0
    # The last code cell checks the memory budget in the kernel itself.
    last_code = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert f"peak_rss_mib() < {budget['budget_mib']}" in last_code.source
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert code.count("assert ") >= 5, "every claim is asserted where it is made"
    assert "sys.path" not in code, "notebooks import leaklab as an installed package"


def test_navigation_is_current():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "navigation.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- decks and workbooks
# Every chapter is also a slide deck (cell metadata slideshow.slide_type, read by RISE and by
# nbconvert's reveal.js exporter) and a workbook (cells tagged `solution` are what the student
# version replaces). These rules are what makes that work in a room and alone.

MAX_SLIDE_CODE_LINES = 15
MAX_PROSE_WORDS = 2_600   # about 25 minutes to read with the code and figures
MAX_CODE_LINES = 240
SLIDES_RANGE = (10, 30)   # about 15 minutes to present
INTERNAL = re.compile(r"\bsyllabus\b|\.venv/bin/|the project's (?:2-core )?machine|README_\w+\.md", re.I)


def _slide_type(cell) -> str:
    return cell.metadata.get("slideshow", {}).get("slide_type", "-")


def _only_asserts(source: str) -> bool:
    lines = [l for l in source.splitlines() if l.strip() and not l.strip().startswith("#")]
    return bool(lines) and lines[0].startswith("assert") and all(
        l.startswith(("assert", " ", ")")) for l in lines)


def deck_problems(nb) -> list[str]:
    """What keeps a chapter from working as a deck: one line per problem (empty when it works)."""
    problems = []
    figures = 0
    for i, cell in enumerate(nb.cells):
        kind = _slide_type(cell)
        if kind in ("slide", "subslide"):
            figures = 0
        headings = [n for n, line in enumerate(cell.source.splitlines()) if line.startswith("## ")]
        if cell.cell_type == "markdown" and headings:
            if kind != "slide":
                problems.append(f"cell {i}: a ## section must start a slide, is {kind!r}")
            if headings != [0]:
                problems.append(f"cell {i}: split it so that its ## heading starts the cell")
        if cell.cell_type == "markdown" and cell.source.startswith("### ") and kind not in ("slide", "subslide"):
            problems.append(f"cell {i}: a ### step must start a subslide, is {kind!r}")
        if cell.cell_type != "code" or kind in ("skip", "notes"):
            continue
        figures += sum("image/png" in out.get("data", {}) for out in cell.outputs)
        if figures > 1:
            problems.append(f"cell {i}: a second figure on one slide")
            figures = 1
        if _only_asserts(cell.source):
            problems.append(f"cell {i}: a cell that only checks is shown on a slide (make it skip)")
        lines = [l for l in cell.source.splitlines() if l.strip()]
        if len(lines) > MAX_SLIDE_CODE_LINES:
            problems.append(f"cell {i}: {len(lines)} lines of code on a slide (at most {MAX_SLIDE_CODE_LINES})")
    code = [c for c in nb.cells if c.cell_type == "code"]
    if code and _slide_type(code[0]) != "skip":
        problems.append("the imports cell (first code cell) must be skip")
    slides = sum(_slide_type(c) in ("slide", "subslide") for c in nb.cells)
    if not SLIDES_RANGE[0] <= slides <= SLIDES_RANGE[1]:
        problems.append(f"{slides} slides and subslides, not {SLIDES_RANGE[0]}-{SLIDES_RANGE[1]}")
    return problems


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_a_deck(path):
    assert deck_problems(nbformat.read(path, as_version=4)) == []


def test_deck_rules_catch_what_breaks_a_deck():
    """The rules above fail for the mistakes they exist for (checked on a made-up notebook)."""
    v4 = nbformat.v4
    nb = v4.new_notebook()
    fig = {"output_type": "display_data", "data": {"image/png": "iVBOR"}, "metadata": {}}
    nb.cells = [
        v4.new_code_cell("import gc", metadata={"slideshow": {"slide_type": "slide"}}),
        v4.new_markdown_cell("End of one.\n\n## Two", metadata={"slideshow": {"slide_type": "-"}}),
        v4.new_code_cell("plot()", outputs=[fig]),
        v4.new_code_cell("plot()", outputs=[fig]),
        v4.new_code_cell("assert x > 1\nassert y"),
        v4.new_code_cell("\n".join(f"x{i} = {i}" for i in range(16))),
    ]
    problems = "\n".join(deck_problems(nb))
    for expected in ("must start a slide", "its ## heading starts the cell", "second figure",
                     "only checks", "16 lines of code", "imports cell", "slides and subslides"):
        assert expected in problems


def _solutions(nb):
    return [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_a_workbook(path):
    """At least three exercises, each answered by an executed, asserting `solution` cell that
    follows the exercise's text."""
    nb = nbformat.read(path, as_version=4)
    solutions = _solutions(nb)
    assert len(solutions) >= 3, f"{path.name}: {len(solutions)} solution cells, a chapter has at least 3"
    for cell in solutions:
        index = nb.cells.index(cell)
        assert cell.cell_type == "code" and cell.execution_count, "solutions run in the tests"
        assert re.search(r"^\s*assert\b", cell.source, re.M), f"solution proves nothing: {cell.source[:60]!r}"
        assert nb.cells[index - 1].cell_type == "markdown" or "solution" in nb.cells[index - 1].metadata.get("tags", []), \
            "each solution follows its exercise's text"
    exercises_at = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## Exercises" in c.source)
    assert all(nb.cells.index(c) > exercises_at for c in solutions)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_length_and_references(path):
    """About 25 minutes to read, and nothing a learner does not have."""
    nb = nbformat.read(path, as_version=4)
    prose = sum(len(re.findall(r"\w+", c.source)) for c in nb.cells if c.cell_type == "markdown")
    code = sum(len([l for l in c.source.splitlines() if l.strip()]) for c in nb.cells if c.cell_type == "code")
    assert prose <= MAX_PROSE_WORDS, f"{path.name}: {prose} words of prose"
    assert code <= MAX_CODE_LINES, f"{path.name}: {code} lines of code"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            found = INTERNAL.search(cell.source)
            assert not found, f"{path.name} cell {i} refers to {found.group(0)!r}, which learners do not have"
