"""Write the navigation line at the top and bottom of every chapter (cells tagged ``nav``).

Run it after adding or renaming a chapter: ``python tools/navigation.py``. With ``--check`` it
writes nothing and exits 1 if a chapter's links are out of date (tests/test_notebooks.py runs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CHAPTER = re.compile(r"^\d\d_.+\.ipynb$")


def chapters() -> list[Path]:
    return sorted(p for p in NOTEBOOKS.glob("*.ipynb") if CHAPTER.match(p.name))


def title(nb: nbformat.NotebookNode) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    raise ValueError("chapter has no '# ' title")


def nav_line(paths: list[Path], i: int, titles: list[str]) -> str:
    parts = ["[Contents](../README.md#chapters)"]
    if i > 0:
        parts.append(f"Previous: [{titles[i - 1]}]({paths[i - 1].name})")
    if i < len(paths) - 1:
        parts.append(f"Next: [{titles[i + 1]}]({paths[i + 1].name})")
    return " · ".join(parts)


def update(check: bool) -> list[str]:
    """Bring every nav cell up to date; return the names of chapters that were (or would be) changed."""
    paths = chapters()
    books = [nbformat.read(p, as_version=4) for p in paths]
    titles = [title(nb) for nb in books]
    stale = []
    for i, (path, nb) in enumerate(zip(paths, books)):
        line = nav_line(paths, i, titles)
        cells = [c for c in nb.cells if "nav" in c.metadata.get("tags", [])]
        if len(cells) != 2:
            stale.append(f"{path.name}: expected 2 cells tagged 'nav', found {len(cells)}")
            continue
        if any(c.source != line for c in cells):
            stale.append(path.name)
            if not check:
                for c in cells:
                    c.source = line
                nbformat.write(nb, path)
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale navigation")
    args = parser.parse_args()
    stale = update(args.check)
    for name in stale:
        print(("stale: " if args.check else "updated: ") + name)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
