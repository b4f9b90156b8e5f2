"""Tests for tools/build_exercises.py (issue 14, "the workbook"): the student version of every
chapter, in which each `solution` cell is a stub with the exercise's hint.

What a learner must be able to rely on: no solution survives (neither its code nor its output),
every stub repeats its exercise's hint, the rest of the chapter is as published, and the student
notebook runs top to bottom in a fresh kernel without an error although the exercises are not
solved. The failure tests build tiny notebooks of their own in a temporary directory.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
import warnings
import tokenize
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from jupyter_core.utils import ensure_event_loop
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from conftest import ROOT, load_tool

tool = load_tool("build_exercises")
NOTEBOOKS = ROOT / "notebooks"
CHAPTERS = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
PARALLEL = 2          # kernels at once: the chapters measure memory and time, 2 cores are shared
CELL_TIMEOUT = 300    # seconds per cell, as tools/run_course.py allows
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --------------------------------------------------------------------------- helpers


def _tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


def _squash(text: str) -> str:
    return " ".join(text.split())


def _texts(nb) -> list[str]:
    """Everything a learner can read in a notebook: cell sources and every textual output."""
    texts = []
    for cell in nb.cells:
        texts.append(cell.source)
        for output in cell.get("outputs", []):
            if "text" in output:
                texts.append(output["text"])
            if "traceback" in output:
                texts.append("\n".join(output["traceback"]))
            for kind, value in output.get("data", {}).items():
                if not kind.startswith("image/"):
                    texts.append(value if isinstance(value, str) else str(value))
    return texts


def _code_lines(source: str) -> list[str]:
    """Every non-blank line of a solution, stripped, and also its code without a trailing comment."""
    comment_at: dict[int, int] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                comment_at[token.start[0]] = token.start[1]
    except (tokenize.TokenError, SyntaxError):
        pass
    lines = []
    for number, line in enumerate(source.splitlines(), 1):
        for text in (line.strip(), line[:comment_at.get(number, len(line))].strip()):
            if text and text not in lines:
                lines.append(text)
    return lines


def leaked_lines(original, student) -> list[str]:
    """Lines of the original's solution cells that a learner can read in the student notebook
    (a line the chapter itself shows outside its solutions, such as `service.reset()`, gives
    nothing away and is not counted)."""
    outside = "\n".join(_texts(new_notebook(cells=[c for c in original.cells if "solution" not in _tags(c)])))
    student_text = "\n".join(_texts(student))
    return [line for cell in original.cells if "solution" in _tags(cell)
            for line in _code_lines(cell.source)
            if line not in outside and line in student_text]


def _exercise_markdown(nb, index: int) -> str:
    """The markdown between the solution before cell ``index`` and that cell."""
    start = max([i for i, c in enumerate(nb.cells[:index]) if "solution" in _tags(c)], default=-1)
    return "\n".join(c.source for c in nb.cells[start + 1:index] if c.cell_type == "markdown")


def _stub_parts(source: str) -> tuple[str, str]:
    """(exercise number, hint) read back from a stub's comments."""
    number = re.match(r"# Exercise (\d+): ", source)
    assert number, f"a stub names its exercise first: {source!r}"
    hint: list[str] = []
    for line in source.splitlines()[1:]:
        if line.startswith("# Hint:"):
            hint.append(line.removeprefix("# Hint:"))
        elif hint and line.startswith("#"):
            hint.append(line[1:])
        else:
            break
    return number.group(1), _squash(" ".join(hint))


@dataclass
class Run:
    """One student notebook executed in a fresh kernel."""
    name: str
    seconds: float
    error: str | None
    failed_cell: int | None
    executed: nbformat.NotebookNode
    first_error: str | None = None   # the error of a first run beside another, when run again alone


def execute(path: Path, cwd: Path) -> Run:
    """Run ``path`` top to bottom in a fresh ``python3`` kernel of this environment with ``cwd``
    as its working directory, the way tools/run_course.py runs a chapter (same kernel, timeout
    and client settings)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}},
                            extra_arguments=["--log-level=ERROR"])
    current = [None]
    client.on_cell_execute = lambda cell, cell_index, **_: current.__setitem__(0, cell_index)
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except CellExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
        arrows = re.findall(r"^-*> *\d+ (.*)$", ANSI.sub("", exc.traceback or ""), re.M)
        if arrows:
            error += f" at {arrows[-1].strip()!r}"
    except Exception as exc:  # a dead kernel, a timeout
        error = f"{type(exc).__name__}: {exc}"
    return Run(path.stem, time.perf_counter() - start, error, current[0] if error else None, nb)


def execute_all(paths: list[Path], cwd: Path, workers: int = PARALLEL) -> list[Run]:
    """Every notebook of ``paths``, ``workers`` at a time (a thread and a kernel each), in order."""
    def run(path: Path) -> Run:
        try:
            return execute(path, cwd)
        finally:
            ensure_event_loop().close()   # the loop nbclient made for this worker thread

    with ThreadPoolExecutor(workers, thread_name_prefix="student-run") as pool:
        return list(pool.map(run, paths))


# --------------------------------------------------------------------------- the real workbook


@pytest.fixture(scope="session")
def workbook(tmp_path_factory) -> dict[str, Path]:
    """The workbook built once per session into a temporary folder, by chapter name."""
    out = tmp_path_factory.mktemp("exercises")
    return {p.stem: p for p in tool.build(out)}


@pytest.fixture(scope="session")
def student_runs(workbook) -> dict[str, Run]:
    """Every student notebook executed, two at a time, in the workbook's own folder (where a
    learner opens them; the chapters read nothing relative to their working directory).

    A chapter that fails is run once more on its own: the chapters assert on timings, which two
    kernels side by side on a loaded machine can upset, while a cell that needs a solution's
    name fails every time."""
    paths = [workbook[name] for name in CHAPTERS]
    folder = paths[0].parent
    start = time.perf_counter()
    runs = {run.name: run for run in execute_all(paths, folder)}
    wall = time.perf_counter() - start
    total = sum(r.seconds for r in runs.values())
    print(f"\nstudent notebooks: {len(runs)} run {PARALLEL} at a time in {wall:.1f} s wall "
          f"(sum of the runs {total:.1f} s): "
          + ", ".join(f"{r.name[:2]} {r.seconds:.1f} s" for r in runs.values()))
    for name, run in runs.items():
        if run.error:
            print(f"{name} failed at cell {run.failed_cell} ({run.error}); running it again alone")
            again = execute(workbook[name], folder)
            again.first_error = run.error
            runs[name] = again
    return runs


def _original(name: str):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def test_one_student_notebook_per_chapter(workbook):
    assert sorted(workbook) == CHAPTERS and CHAPTERS, "every chapter gets a student version"


@pytest.mark.parametrize("name", CHAPTERS)
def test_no_solution_survives(workbook, name):
    original, student = _original(name), nbformat.read(workbook[name], as_version=4)
    solutions = [i for i, c in enumerate(original.cells) if "solution" in _tags(c)]
    assert solutions, f"{name} has no solution cells to replace"
    assert [i for i, c in enumerate(student.cells) if "solution" in _tags(c)] == [], "a `solution` tag is left"
    assert [i for i, c in enumerate(student.cells) if "exercise" in _tags(c)] == solutions
    for i in solutions:
        stub = student.cells[i]
        assert stub.cell_type == "code", f"cell {i}: a stub is a code cell"
        assert stub.outputs == [] and stub.execution_count is None, f"cell {i}: the solution's output is left"
        code = [line for line in stub.source.splitlines() if not line.lstrip().startswith("#")]
        assert code == ["pass"], f"cell {i}: a stub is comments and `pass`, got {code}"
    assert leaked_lines(original, student) == []


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_stub_repeats_its_hint(workbook, name):
    original, student = _original(name), nbformat.read(workbook[name], as_version=4)
    for i, cell in enumerate(student.cells):
        if "exercise" not in _tags(cell):
            continue
        number, hint = _stub_parts(cell.source)
        exercise = _squash(_exercise_markdown(original, i))
        assert hint and f"Hint: {hint}" in exercise, f"cell {i}: hint {hint!r} is not the exercise's"
        items = re.findall(rf"(?:^|\s){number}\. ((?:(?!\s\d+\. ).)*)", exercise)
        assert any(hint in item for item in items), f"cell {i}: exercise {number} is not the one hinted"


@pytest.mark.parametrize("name", CHAPTERS)
def test_the_rest_is_kept_as_committed(workbook, name):
    """Cells other than the solutions keep their source, metadata and outputs (a learner compares
    their run with the published one); only links that leave notebooks/ are moved, and they resolve."""
    original, student = _original(name), nbformat.read(workbook[name], as_version=4)
    assert len(student.cells) == len(original.cells)
    assert student.metadata == original.metadata
    for i, (before, after) in enumerate(zip(original.cells, student.cells)):
        if "solution" in _tags(before):
            continue
        assert after.cell_type == before.cell_type and after.metadata == before.metadata, f"cell {i}"
        if before.cell_type == "code":
            assert after.source == before.source and after.outputs == before.outputs, f"cell {i}"
            assert after.execution_count == before.execution_count
        else:
            assert MD_LINK.sub("](…)", after.source) == MD_LINK.sub("](…)", before.source), f"cell {i}"
            for target in MD_LINK.findall(after.source):
                path = target.split("#")[0]
                if path and not re.match(r"^[a-z]+:", path):
                    assert (workbook[name].parent / path).exists(), f"cell {i}: broken link {target}"


@pytest.mark.parametrize("name", CHAPTERS)
def test_student_notebook_runs_top_to_bottom(student_runs, name):
    """Unsolved exercises must not break the chapter: no later cell may need a name that only a
    solution defines."""
    run = student_runs[name]
    assert run.error is None, f"{name}: cell {run.failed_cell} failed: {run.error}"
    if run.first_error:
        warnings.warn(f"{name} failed beside another kernel ({run.first_error}) and passed alone: "
                      "a timing assert of the chapter, not the workbook")
    for cell in run.executed.cells:
        if "exercise" in _tags(cell):
            assert cell.outputs == [], "a stub runs silently"


def test_build_writes_to_build_exercises_by_default():
    written = tool.build()
    assert [p.parent for p in written] == [ROOT / "_build" / "exercises"] * len(CHAPTERS)
    student = nbformat.read(written[0], as_version=4)
    assert "](../../README.md#chapters)" in student.cells[0].source   # the Contents link


def test_command_line(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "build_exercises.py"),
                             "--out", str(tmp_path / "wb")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"{len(CHAPTERS)} student notebooks" in result.stdout
    assert sorted(p.stem for p in (tmp_path / "wb").glob("*.ipynb")) == CHAPTERS


# --------------------------------------------------------------------------- made-up chapters


def _chapter(*cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _solution(source: str, **kwargs):
    return new_code_cell(source, metadata={"tags": ["solution"]}, execution_count=3, **kwargs)


def _write(folder: Path, name: str, nb) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)
    return folder / name


def test_hint_forms(tmp_path):
    """An inline hint that wraps; the last hinted item of a cell, past a cell of prose without a
    hint; a hint in an unnumbered cell (numbered after the exercise before it)."""
    nb = _chapter(
        new_markdown_cell("## Exercises\n\n1. Size the map? Hint: bisect between\n   1,000 and 3,000."),
        _solution("answer = 1\nassert answer"),
        new_markdown_cell("2. Warm up. Hint: not this one.\n3. Count the calls.\n   Hint: a list,\n   then `len`."),
        new_markdown_cell("Some prose between the exercise and its solution."),
        _solution("calls = []\nassert not calls"),
        new_markdown_cell("Time a collection. Hint: `time.perf_counter()`."),
        _solution("import time\nassert time.perf_counter()"),
    )
    _write(tmp_path / "nb", "01_made_up.ipynb", nb)
    student = nbformat.read(tool.build(tmp_path / "out", tmp_path / "nb")[0], as_version=4)
    stubs = [c.source for c in student.cells if "exercise" in _tags(c)]
    assert stubs == [
        "# Exercise 1: your solution here\n# Hint: bisect between 1,000 and 3,000.\npass",
        "# Exercise 3: your solution here\n# Hint: a list, then `len`.\npass",
        "# Exercise 4: your solution here\n# Hint: `time.perf_counter()`.\npass",
    ]
    assert _stub_parts(stubs[1]) == ("3", "a list, then `len`.")


def test_long_hint_is_wrapped_as_comments(tmp_path):
    hint = " ".join(["word"] * 60)
    _write(tmp_path / "nb", "00_x.ipynb", _chapter(new_markdown_cell(f"1. Do it. Hint: {hint}"),
                                                   _solution("assert True")))
    stub = nbformat.read(tool.build(tmp_path / "out", tmp_path / "nb")[0], as_version=4).cells[1].source
    assert all(line.startswith("#") and len(line) <= 99 for line in stub.splitlines()[:-1])
    assert _stub_parts(stub) == ("1", hint)
    compile(stub, "stub", "exec")


def test_solution_without_hint_is_an_error_naming_notebook_and_cell(tmp_path):
    """The second solution has no hint of its own: the first exercise's hint must not be reused,
    and nothing is written."""
    nb = _chapter(new_markdown_cell("1. First. Hint: one."), _solution("first = 1\nassert first"),
                  new_markdown_cell("2. Second, with no hint."), _solution("second = 2\nassert second"))
    _write(tmp_path / "nb", "03_no_hint.ipynb", nb)
    with pytest.raises(tool.BuildError, match=r"03_no_hint\.ipynb: solution cell 3 \('second = 2'\).*Hint:"):
        tool.build(tmp_path / "out", tmp_path / "nb")
    assert not (tmp_path / "out").exists()


def test_build_refuses_to_overwrite_the_chapters_and_drops_stale_ones(tmp_path):
    chapter = _write(tmp_path / "nb", "00_x.ipynb", _chapter(new_markdown_cell("1. Hint: h."),
                                                             _solution("assert True")))
    with pytest.raises(tool.BuildError, match="out=.*chapters' own folder"):
        tool.build(tmp_path / "nb", tmp_path / "nb")
    assert "solution" in _tags(nbformat.read(chapter, as_version=4).cells[1])
    _write(tmp_path / "out", "09_renamed_since.ipynb", _chapter())
    (tmp_path / "out" / "notes.ipynb").write_text("{}")
    tool.build(tmp_path / "out", tmp_path / "nb")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00_x.ipynb", "notes.ipynb"]


def test_command_line_reports_a_missing_hint(tmp_path, monkeypatch):
    _write(tmp_path / "nb", "04_no_hint.ipynb", _chapter(_solution("assert 1")))
    monkeypatch.setattr(tool, "NOTEBOOKS", tmp_path / "nb")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert tool.main(["--out", str(tmp_path / "out")]) == 1
    assert "04_no_hint.ipynb: solution cell 0" in sys.stderr.getvalue()


def test_leak_check_catches_solution_code_left_behind():
    """The check of test_no_solution_survives fails when solution code reaches a learner: in an
    output (a listing printed by another cell, a traceback), in markdown, or in a stub."""
    original = _chapter(
        new_code_cell("import gc\ngc.collect()", outputs=[]),
        new_markdown_cell("1. Find the owner. Hint: `gc.get_referrers`."),
        _solution("gc.collect()  # shown in the chapter too: not a leak\n"
                  "owner = gc.get_referrers(page)[0]   # the answer\nassert owner"),
    )
    fair = tool.student_version(original, "made-up")
    assert leaked_lines(original, fair) == []

    for where in ("output", "traceback", "markdown", "stub"):
        student = tool.student_version(original, "made-up")
        leaked = "owner = gc.get_referrers(page)[0]   # the answer"
        if where == "output":
            student.cells[0].outputs = [new_output("stream", name="stdout", text=leaked + "\n")]
        elif where == "traceback":
            student.cells[0].outputs = [new_output("error", ename="E", evalue="", traceback=[leaked])]
        elif where == "markdown":
            student.cells[1].source += f"\n\n```python\n{leaked.split('#')[0]}\n```"
        else:
            student.cells[2].source += "\nassert owner"
        found = leaked_lines(original, student)
        assert found, f"solution code in the {where} went unnoticed"


def test_student_run_catches_a_chapter_that_needs_a_solution(tmp_path):
    """A later cell that uses a name only a solution defines fails in the student version, and
    the runner names that cell; the same chapter with its solution runs."""
    nb = _chapter(new_markdown_cell("1. Define it. Hint: `total = 42`."),
                  _solution("total = 42\nassert total"),
                  new_code_cell("print(total)"))
    _write(tmp_path / "nb", "05_depends.ipynb", nb)
    student = tool.build(tmp_path / "out", tmp_path / "nb")[0]
    solved, unsolved = execute_all([tmp_path / "nb" / "05_depends.ipynb", student], tmp_path, workers=2)
    assert solved.error is None and solved.failed_cell is None
    assert unsolved.failed_cell == 2 and "NameError" in unsolved.error and "total" in unsolved.error
