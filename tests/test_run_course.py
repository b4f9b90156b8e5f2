"""Tests for tools/run_course.py (`make course`): it runs chapters into a build folder, counts
their asserts, and fails when a chapter fails or breaks its budget."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat
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
