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
