"""Tests for tools/run_course.py (`make course`): it runs chapters into a build folder, counts
their asserts, and fails when a chapter fails or breaks its budget."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def course(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("run_course", ROOT / "tools" / "run_course.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "run_course", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "NOTEBOOKS", tmp_path / "notebooks")
    monkeypatch.setattr(module, "BUILD", tmp_path / "_build")
    return module


def _chapter(path: Path, *sources: str, budget_mib: int = 10_000) -> None:
    nb = new_notebook(cells=[new_markdown_cell("# 99 · A test chapter"), *map(new_code_cell, sources)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["leaklab"] = {"budget_seconds": 600, "budget_mib": budget_mib}
    nbformat.write(nb, path)


def test_count_asserts_skips_magics_and_counts_nested_asserts(course):
    nb = new_notebook(cells=[new_code_cell("%time x = 1\nassert x\nfor i in range(2):\n    assert i < 2"),
                             new_markdown_cell("assert nothing here")])
    assert course.count_asserts(nb) == 2


def test_a_passing_chapter_is_executed_into_build_and_exported(course, tmp_path, capsys):
    _chapter(tmp_path / "notebooks" / "98_ok.ipynb", "x = 21 * 2", "assert x == 42", "x")
    assert course.main([]) == 0
    executed = nbformat.read(tmp_path / "_build" / "notebooks" / "98_ok.ipynb", as_version=4)
    assert executed.cells[-1].outputs[0]["data"]["text/plain"] == "42"
    assert (tmp_path / "_build" / "html" / "98_ok.html").exists()
    assert "98_ok.html" in (tmp_path / "_build" / "index.html").read_text()
    # The source notebook is untouched.
    assert nbformat.read(tmp_path / "notebooks" / "98_ok.ipynb", as_version=4).cells[-1].outputs == []
    out = capsys.readouterr().out
    assert "98_ok" in out and " ok" in out


def test_a_failing_or_over_budget_chapter_makes_the_run_fail(course, tmp_path, capsys):
    _chapter(tmp_path / "notebooks" / "97_fails.ipynb", "assert 1 == 2, 'claim no longer true'")
    _chapter(tmp_path / "notebooks" / "98_fat.ipynb", "x = 1", budget_mib=1)
    assert course.main([]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "OVER BUDGET" in out


# --------------------------------------------------------------------------- reliability (issues 9, 10)

_TAG = "LEAKLAB_TEST_TAG"


def _tagged(tag: str) -> list[psutil.Process]:
    """Live processes whose environment carries ``tag`` (the runner, its kernel and their children)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(_TAG) == tag and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            pass
    return found


def _survivors(tag: str, grace: float = 5.0) -> list[str]:
    deadline = time.monotonic() + grace
    while (left := _tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.05)
    described = []
    for proc in left:
        try:
            described.append(f"{proc.pid}: {' '.join(proc.cmdline())[:120]}")
            proc.kill()
        except psutil.Error:
            pass
    return described


_RUNNER = """
import importlib.util, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("run_course", {script!r})
module = importlib.util.module_from_spec(spec)
sys.modules["run_course"] = module
spec.loader.exec_module(module)
tmp = Path({tmp!r})
module.ROOT, module.NOTEBOOKS, module.BUILD = tmp, tmp / "notebooks", tmp / "_build"
sys.exit(module.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_stops_at_once_says_so_and_leaves_no_kernel(tmp_path, sig, code):
    marker = tmp_path / "started"
    (tmp_path / "notebooks").mkdir()
    # The chapter's cell runs an isolated measurement (a grandchild of the runner) for two minutes.
    _chapter(tmp_path / "notebooks" / "97_slow.ipynb",
             f"open({str(marker)!r}, 'w').close()",
             "from leaklab.measure import track_isolated\ntrack_isolated('time:sleep', 120)")
    _chapter(tmp_path / "notebooks" / "98_next.ipynb", "x = 1")
    tag = uuid.uuid4().hex
    runner = subprocess.Popen(
        [sys.executable, "-c", _RUNNER.format(script=str(ROOT / "tools" / "run_course.py"),
                                              tmp=str(tmp_path))],
        env=dict(os.environ, **{_TAG: tag}), cwd=ROOT, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (marker.exists() and any("leaklab._isolated" in " ".join(p.cmdline())
                                           for p in _tagged(tag))):
            assert runner.poll() is None, runner.communicate()[0]
            assert time.monotonic() < deadline, "the chapter never started its measurement"
            time.sleep(0.1)
        time.sleep(1.0)
        os.kill(runner.pid, sig)  # the runner alone, as `kill` does; Ctrl-C reaches only it too,
        # since the kernel runs in a session of its own
        start = time.monotonic()
        out, _ = runner.communicate(timeout=60)
        elapsed = time.monotonic() - start
    finally:
        left = _survivors(tag)
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == code, out
    assert "interrupted" in out and "FAILED" not in out and "AssertionError" not in out, out
    assert not (tmp_path / "_build" / "notebooks" / "98_next.ipynb").exists()  # no next chapter
    assert elapsed < 20, out
    assert left == []


def test_an_unknown_chapter_is_an_error_that_lists_the_chapters(course, tmp_path, capsys):
    _chapter(tmp_path / "notebooks" / "00_first.ipynb", "x = 1")
    _chapter(tmp_path / "notebooks" / "01_second.ipynb", "x = 2")
    for wrong in ["0", "1", "00_fir", "second", "02"]:
        with pytest.raises(SystemExit) as info:
            course.main([wrong])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert repr(wrong) in err and "00_first, 01_second" in err, err
    assert not (tmp_path / "_build" / "notebooks").exists()  # nothing ran


def _fake_runs(course, monkeypatch, **fields):
    calls = []

    def run_chapter(path, timeout):
        calls.append((path.stem, timeout))
        values = dict(seconds=1.0, peak_mib=100.0, cells=1, asserts=0, error=None,
                      budget_seconds=30, budget_mib=600)
        values.update(fields)
        return course.Result(name=path.stem, **values)

    monkeypatch.setattr(course, "run_chapter", run_chapter)
    return calls


def test_chapters_are_chosen_by_number_or_name(course, tmp_path, monkeypatch):
    for name in ["00_first", "01_second", "02_third"]:
        _chapter(tmp_path / "notebooks" / f"{name}.ipynb", "x = 1")
    calls = _fake_runs(course, monkeypatch)
    assert course.main(["02", "00_first.ipynb", "00"]) == 0
    assert [stem for stem, _ in calls] == ["00_first", "02_third"]


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "forever"])
def test_a_zero_or_bad_cell_timeout_is_refused(course, tmp_path, capsys, value):
    _chapter(tmp_path / "notebooks" / "00_first.ipynb", "x = 1")
    with pytest.raises(SystemExit) as info:
        course.main(["--timeout", value])
    assert info.value.code == 2
    assert "--timeout" in capsys.readouterr().err


def test_no_cell_timeout_must_be_said(course, tmp_path, monkeypatch):
    _chapter(tmp_path / "notebooks" / "00_first.ipynb", "x = 1")
    calls = _fake_runs(course, monkeypatch)
    assert course.main(["--timeout", "none"]) == 0
    assert course.main(["--timeout", "45"]) == 0
    assert course.main([]) == 0
    assert [timeout for _, timeout in calls] == [None, 45, 300]


def test_time_over_budget_is_a_warning_memory_over_budget_fails(course, tmp_path, monkeypatch, capsys):
    _chapter(tmp_path / "notebooks" / "00_first.ipynb", "x = 1")
    _fake_runs(course, monkeypatch, seconds=31.7, budget_seconds=30)  # a busy machine
    assert course.main([]) == 0
    out = capsys.readouterr().out
    assert "WARNING" in out and "31.7 s > 30 s" in out and "OVER BUDGET" not in out, out
    _fake_runs(course, monkeypatch, peak_mib=700.0, budget_mib=600)
    assert course.main([]) == 1
    out = capsys.readouterr().out
    assert "OVER BUDGET: 700 MiB > 600 MiB" in out, out
    _fake_runs(course, monkeypatch, seconds=31.7, error="AssertionError: claim")
    assert course.main([]) == 1
    assert "FAILED: AssertionError: claim" in capsys.readouterr().out


# --------------------------------------------------------------------------- deliverables (issue 14)


def _fake_tools(course, monkeypatch, tmp_path, *, decks_missing=False, book_fails=False):
    """Stand-ins for tools/build_*.py, so these tests check run_course's bookkeeping only (the
    real builders have their own tests: test_book, test_decks, test_exercises)."""
    import types

    class MissingTool(RuntimeError):
        pass

    def tool(name):
        module = types.SimpleNamespace(MissingTool=MissingTool)

        def build():
            if name == "build_decks" and decks_missing:
                raise MissingTool("no npm on PATH: install Node.js 18+ and npm, then npm ci")
            if name == "build_book" and book_fails:
                raise RuntimeError("a chapter did not render")
            out = tmp_path / "_build" / name.removeprefix("build_")
            out.mkdir(parents=True, exist_ok=True)
            return out

        module.build = build
        return module

    monkeypatch.setattr(course, "load_tool", tool)


def test_deliver_builds_each_part_and_prints_where_and_how_long(course, tmp_path, monkeypatch, capsys):
    _fake_tools(course, monkeypatch, tmp_path)
    _chapter(tmp_path / "notebooks" / "98_ok.ipynb", "x = 1")
    assert course.main(["--deliver"]) == 0
    out = capsys.readouterr().out
    for part in ("book", "decks", "exercises"):
        assert f"_build/{part}/" in out
    assert "Building the book" in out


def test_without_deliver_nothing_else_is_built(course, tmp_path, monkeypatch, capsys):
    _fake_tools(course, monkeypatch, tmp_path)
    _chapter(tmp_path / "notebooks" / "98_ok.ipynb", "x = 1")
    assert course.main([]) == 0
    assert "Building" not in capsys.readouterr().out
    assert not (tmp_path / "_build" / "book").exists()


def test_a_missing_optional_tool_is_reported_as_skipped_and_the_run_passes(course, tmp_path, monkeypatch, capsys):
    _fake_tools(course, monkeypatch, tmp_path, decks_missing=True)
    _chapter(tmp_path / "notebooks" / "98_ok.ipynb", "x = 1")
    assert course.main(["--deliver"]) == 0
    out = capsys.readouterr().out
    assert "skipped: no npm on PATH" in out and "_build/exercises/" in out


def test_a_failing_build_fails_the_run(course, tmp_path, monkeypatch, capsys):
    _fake_tools(course, monkeypatch, tmp_path, book_fails=True)
    _chapter(tmp_path / "notebooks" / "98_ok.ipynb", "x = 1")
    assert course.main(["--deliver"]) == 1
    assert "FAILED: RuntimeError: a chapter did not render" in capsys.readouterr().out
