"""Build the course book: an offline HTML site of every chapter, from the committed notebooks.

``python tools/build_book.py [--out DIR]`` (``make book``; ``make course`` runs it too) writes the
book to ``_build/book/`` (open ``_build/book/index.html``). The chapters are rendered with the
outputs and figures they were committed with, which strict nbval checks; nothing is executed again.

How: the pages in ``docs/`` (landing page, API reference, workshop agenda, ``conf.py``) and the
chapter notebooks ``notebooks/NN_*.ipynb`` are copied into ``_build/book-work/source/``, and
Sphinx (myst-nb, sphinx-book-theme) builds from there, so a build never writes into the
repository. In the copies, each chapter's navigation line links "Contents" to the book's landing
page instead of the repository's README, which is not part of the book. The work directory is
removed after a clean build and kept after a failed one, to look into.

The build fails, raising :class:`BuildError` with the messages, when Sphinx warns at all (a broken
link or reference, a notebook that did not render, a docstring it cannot parse) or when a built
page would load anything from the network (a script, a stylesheet, a font, an ``@import``): the
book must work at a venue without Wi-Fi.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "_build" / "book"

CHAPTER = re.compile(r"^\d\d_.+\.ipynb$")
# The chapters' navigation cells (tools/navigation.py) link "Contents" to the README's chapter list;
# in the book that list is on the landing page.
README_CONTENTS = "](../README.md#chapters)"
BOOK_CONTENTS = "](index.md#chapters)"

# What a page loads by itself: <script src>, <link href> (stylesheets, fonts, icons, preloads),
# <img src>, and url(...) / @import in CSS. Links a reader follows (<a href>) are fine offline.
_LOADS = [
    re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?([^\"'\s>]+)", re.I),
    re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?([^\"'\s>]+)", re.I),
    re.compile(r"<(?:img|source|iframe|embed)\b[^>]*\bsrc\s*=\s*[\"']?([^\"'\s>]+)", re.I),
    re.compile(r"@import\s+(?:url\()?\s*[\"']?([^\"')\s;]+)", re.I),
    re.compile(r"url\(\s*[\"']?([^\"')\s]+)", re.I),
]
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.I)  # http(s)://, protocol-relative //
_LOCAL_SCHEMES = ("data:", "file:", "blob:", "about:")


class BuildError(RuntimeError):
    """The book did not build cleanly; ``messages`` lists Sphinx's warnings or what went wrong."""

    def __init__(self, summary: str, messages: list[str]):
        self.messages = messages
        super().__init__(summary + ("\n" + "\n".join(messages) if messages else ""))


def chapters(notebooks: Path = NOTEBOOKS) -> list[Path]:
    """The chapter notebooks (``NN_name.ipynb``) in reading order."""
    return sorted(p for p in Path(notebooks).glob("*.ipynb") if CHAPTER.match(p.name))


def _book_notebook(path: Path) -> str:
    """A chapter's JSON as the book reads it: its navigation cells' Contents link to the landing
    page. Raises ValueError saying why when the file is not a valid notebook."""
    try:
        nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        nbformat.validate(nb)
    except (ValueError, nbformat.ValidationError, UnicodeDecodeError) as error:
        raise ValueError(str(error).splitlines()[0]) from None
    for cell in nb.cells:
        if "nav" in cell.metadata.get("tags", []):
            cell.source = cell.source.replace(README_CONTENTS, BOOK_CONTENTS)
    return nbformat.writes(nb) + "\n"


def assemble(src: Path, docs: Path = DOCS, notebooks: Path = NOTEBOOKS) -> dict[Path, Path]:
    """Write the book's source tree into ``src`` (emptied first); return {copy: original}.

    Raises :class:`BuildError` naming every chapter that is not a readable notebook (Sphinx would
    stop at the first with a traceback)."""
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(docs, src, ignore=shutil.ignore_patterns("_build", "__pycache__", ".*"))
    origins = {src / p.relative_to(docs): p for p in Path(docs).rglob("*") if p.is_file()}
    unreadable = []
    for path in chapters(notebooks):
        target = src / path.name
        if target.exists():
            raise BuildError(f"{path.name} is both a chapter and a page in {_shown(docs)}", [])
        try:
            target.write_text(_book_notebook(path), encoding="utf-8")
        except ValueError as error:
            unreadable.append(f"{_shown(path)}: not a readable notebook: {error}")
        origins[target] = path
    if unreadable:
        raise BuildError("a chapter did not render:", unreadable)
    return origins


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _readable(stderr: str, origins: dict[Path, Path]) -> list[str]:
    """Sphinx's messages, with each copy in the source tree named by the file it came from."""
    text = stderr
    for copy, original in sorted(origins.items(), key=lambda kv: -len(str(kv[0]))):
        text = text.replace(str(copy), _shown(original))
    return [line for line in text.splitlines() if line.strip()]


def external_loads(book: Path) -> list[str]:
    """Every URL off this machine that a built page or stylesheet would load, as ``file: url``."""
    found = []
    for path in sorted(book.rglob("*")):
        if path.suffix not in (".html", ".css") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".html":
            # Code shown on a page is text, not markup: skip the highlighted blocks and outputs.
            text = re.sub(r"<pre\b.*?</pre>", "", text, flags=re.S | re.I)
        for pattern in _LOADS if path.suffix == ".html" else _LOADS[3:]:
            for url in pattern.findall(text):
                if _REMOTE.match(url) and not url.lower().startswith(_LOCAL_SCHEMES):
                    found.append(f"{path.relative_to(book)}: {url}")
    return found


def _clear(out: Path) -> None:
    """Remove a previous book at ``out``, refusing to delete a directory that is not one."""
    if not out.exists():
        return
    if out.is_dir() and (not any(out.iterdir()) or (out / ".buildinfo").exists()):
        shutil.rmtree(out)
    else:
        raise BuildError(f"--out {out} exists and is not a book built by this tool; "
                         "choose an empty or new directory", [])


def build(out: Path | None = None, *, docs: Path = DOCS, notebooks: Path = NOTEBOOKS) -> Path:
    """Build the book into ``out`` (default ``_build/book/``) and return that directory.

    Every build starts afresh (a Sphinx environment kept between builds would stop repeating the
    warnings of pages it does not read again) in a work directory beside ``out``
    (``_build/book-work/``: the assembled source, and what Sphinx and myst-nb write on the way),
    and the finished site moves to ``out`` only when it built cleanly. ``docs`` and ``notebooks``
    default to the repository's; the tests pass small trees of their own. Raises
    :class:`BuildError` with the messages on any Sphinx warning or error, and when a page would
    load something from the network; a failed build leaves no book at ``out``.
    """
    out = (Path(out) if out is not None else BOOK).resolve()
    _clear(out)
    work = out.with_name(out.name + "-work")
    if work.exists():
        shutil.rmtree(work)
    src, html = work / "source", work / "html"  # myst-nb writes work/jupyter_execute/ itself
    origins = assemble(src, Path(docs), Path(notebooks))
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-a", "-q", "--no-color",
               "-W", "--keep-going", "-d", str(work / "doctrees"), str(src), str(html)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=work)
    if done.returncode != 0:
        raise BuildError(f"the book did not build cleanly (Sphinx exit status {done.returncode}):",
                         _readable(done.stderr + done.stdout, origins))
    remote = external_loads(html)
    if remote:
        raise BuildError("the book would load these from the network (it must work offline):",
                         remote)
    html.rename(out)
    shutil.rmtree(work)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help=f"where to write the book (default {_shown(BOOK)}/)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        book = build(args.out)
    except BuildError as error:
        print(f"book: FAILED: {error}", file=sys.stderr)
        return 1
    pages = sum(1 for _ in book.rglob("*.html"))
    print(f"book: {_shown(book / 'index.html')} ({pages} pages, "
          f"{time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
