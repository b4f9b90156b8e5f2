"""Present a chapter live: JupyterLab opens it straight in RISE, as slides whose cells run.

``make slides CHAPTER=01`` (``python tools/slides.py 01``) starts JupyterLab on ``notebooks/`` and
opens the chapter in RISE's presenter (``jupyterlab-rise``, installed by the set-up), at the URL
its server extension serves for a notebook: ``/rise/<path of the notebook>``. A chapter is named by
its number (``01`` or ``1``), its file stem (``01_caches``), the part after the number
(``caches``), its file name or its path. The slides come from each cell's
``slideshow.slide_type``, as in the offline decks of ``make decks``; the committed outputs show,
and Shift+Enter runs a cell again during the talk. ``T`` opens the speaker notes, ``Ctrl+C`` in
the terminal stops JupyterLab and its kernel.

Offline at a venue: RISE's default reveal.js theme (``simple``) loads its fonts from Google
Fonts, so the chapters set ``"rise": {"theme": "white"}`` in their notebook metadata (RISE reads
its options from there, over its settings), whose font ships with RISE; this tool warns when a
chapter does not. JupyterLab's own calls home (news, update check, the PyPI extension manager)
are switched off on the command line (:data:`OFFLINE_OPTIONS`).

Options this tool does not know go to ``jupyter lab`` unchanged (``--no-browser``,
``--port=8899``, ``--allow-root``...); ``--dry-run`` prints the command instead of running it.
tests/test_browser.py starts the same command headless and checks the first slide it shows.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import sys
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CHAPTER = re.compile(r"^(\d\d)_(.+)\.ipynb$")

THEME = "white"  # the course's RISE theme: its font (Source Sans Pro) is bundled with RISE
# RISE 0.43's reveal.js themes that load no web font (the others @import Google Fonts).
WEB_FONT_FREE_THEMES = frozenset({"white", "black", "serif"})
RISE_DEFAULT_THEME = "simple"  # what RISE uses when neither the notebook nor the settings say

# JupyterLab's requests off the machine, all switched off: the news feed, the check for a newer
# JupyterLab, and the extension manager's PyPI search (``readonly`` lists installed ones only).
OFFLINE_OPTIONS = (
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    "--LabApp.extension_manager=readonly",
)


class UnknownChapter(ValueError):
    """No chapter, or more than one, answers to the name given; the message lists the chapters."""


def _notebooks(notebooks: Path | None) -> Path:
    return Path(notebooks if notebooks is not None else NOTEBOOKS)


def chapters(notebooks: Path | None = None) -> list[Path]:
    """The chapter notebooks (``NN_name.ipynb``) of ``notebooks/`` in reading order."""
    return sorted(p for p in _notebooks(notebooks).glob("*.ipynb") if CHAPTER.match(p.name))


def _listing(every: list[Path]) -> str:
    return ", ".join(p.stem for p in every) or "none"


def resolve(name: str | os.PathLike | None, notebooks: Path | None = None) -> Path:
    """The chapter notebook named by ``name``: ``01``, ``1``, ``01_caches``, ``caches``,
    ``01_caches.ipynb`` or a path to it. Raises :class:`UnknownChapter`, listing the chapters,
    for no name, an unknown one or one that fits several chapters."""
    every = chapters(notebooks)
    usage = f"give one as CHAPTER=01 or CHAPTER=01_caches; the chapters are: {_listing(every)}"
    key = "" if name is None else Path(str(name).strip()).name.removesuffix(".ipynb")
    if not key:
        raise UnknownChapter(f"which chapter? {usage}")
    if key.isdigit():
        key = key.zfill(2)
    found = [p for p in every if key in (p.stem, *CHAPTER.match(p.name).groups())]
    if len(found) == 1:
        return found[0]
    if found:
        raise UnknownChapter(f"chapter {str(name)!r} fits {_listing(found)}; {usage}")
    raise UnknownChapter(f"no chapter {str(name)!r} in {_notebooks(notebooks)}; {usage}")


def rise_options(chapter: Path) -> dict:
    """The RISE options a notebook's metadata sets (``livereveal``, then ``rise`` over it, as
    RISE merges them)."""
    metadata = json.loads(Path(chapter).read_text(encoding="utf-8")).get("metadata", {})
    return {**metadata.get("livereveal", {}), **metadata.get("rise", {})}


def theme_warning(chapter: Path) -> str | None:
    """Why ``chapter`` would load web fonts in RISE (its theme pulls Google Fonts), or None."""
    theme = rise_options(chapter).get("theme")
    if theme in WEB_FONT_FREE_THEMES:
        return None
    said = (f"sets RISE's theme {theme!r}" if theme else
            f"sets no RISE theme, so RISE uses {RISE_DEFAULT_THEME!r}")
    return (f"{Path(chapter).name} {said}, which loads its fonts from Google Fonts (a venue without "
            f"Wi-Fi gets fallback fonts); add \"rise\": {{\"theme\": \"{THEME}\"}} to the "
            f"notebook's metadata")


def rise_path(chapter: Path, notebooks: Path | None = None) -> str:
    """The URL path (under the server's base URL) where RISE presents ``chapter``."""
    relative = Path(chapter).resolve().relative_to(_notebooks(notebooks).resolve())
    return "/rise/" + quote(relative.as_posix())


def command(chapter: Path, notebooks: Path | None = None, extra: list[str] | tuple = ()) -> list[str]:
    """The ``jupyter lab`` command that serves ``notebooks`` and opens ``chapter`` in RISE,
    with JupyterLab's network calls off; ``extra`` options come last (so they win)."""
    return [
        sys.executable, "-m", "jupyterlab",
        f"--ServerApp.root_dir={_notebooks(notebooks).resolve()}",
        f"--LabApp.default_url={rise_path(chapter, notebooks)}",
        *OFFLINE_OPTIONS,
        *extra,
    ]


def missing_tools() -> list[str]:
    """The Python packages live slides need that this interpreter cannot import."""
    return [name for name in ("jupyterlab", "jupyterlab_rise") if importlib.util.find_spec(name) is None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Other options (--no-browser, --port=N, --allow-root, ...) go to `jupyter lab`.",
    )
    parser.add_argument("chapter", nargs="?", help="01, 1, 01_caches, caches or a notebook path")
    parser.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    args, extra = parser.parse_known_args(argv)
    try:
        chapter = resolve(args.chapter)
    except UnknownChapter as unknown:
        print(f"slides: {unknown}", file=sys.stderr)
        return 2
    cmd = command(chapter, extra=extra)
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    missing = missing_tools()
    if missing:
        print(f"slides: {sys.executable} cannot import {', '.join(missing)}: run `make setup` (it "
              f"installs jupyterlab and jupyterlab-rise into .venv) and use .venv/bin/python",
              file=sys.stderr)
        return 1
    warning = theme_warning(chapter)
    if warning:
        print(f"slides: warning: {warning}", file=sys.stderr)
    print(f"slides: presenting {chapter.relative_to(ROOT) if chapter.is_relative_to(ROOT) else chapter} "
          f"in RISE at {rise_path(chapter)}; Shift+Enter runs a cell, T the speaker notes, "
          f"Ctrl+C here stops JupyterLab", flush=True)
    os.execv(cmd[0], cmd)  # JupyterLab takes over this process: Ctrl+C and make see it directly


if __name__ == "__main__":
    sys.exit(main())
