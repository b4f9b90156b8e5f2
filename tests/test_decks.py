"""Tests for tools/build_decks.py (issue 14, "Workshop slides", static): one offline reveal.js deck
per chapter, built from the committed notebooks, that loads nothing from the network.

The real decks are built once per session (the ``built_decks`` fixture of conftest.py, which skips
on a machine without the npm assets); the template and failure tests need no npm and build into
temporary directories. What a browser does with a deck is tests/test_browser.py's job.
"""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from conftest import ROOT, load_tool

decks_tool = load_tool("build_decks")
NOTEBOOKS = ROOT / "notebooks"
CHAPTERS = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.I)  # http(s)://..., //host/...
LOCAL_SCHEMES = ("data:", "blob:", "about:", "#", "javascript:")
# Tags whose src/href the browser fetches by itself (an <a href> is only followed when clicked).
LOADING = {"script": "src", "img": "src", "source": "src", "iframe": "src", "embed": "src",
           "audio": "src", "video": "src", "link": "href"}
CSS_REFS = re.compile(r"@import\s+(?:url\()?\s*[\"']?([^\"')\s;]+)|url\(\s*[\"']?([^\"')\s]+)", re.I)


class Deck(HTMLParser):
    """What the tests look at in a deck: what it loads, its <style> text, its inline scripts, the
    slide tree (top-level <section>s and the leaves the audience sees) and its speaker notes."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.loads: list[tuple[str, str]] = []
        self.styles: list[str] = []
        self.scripts: list[str] = []
        self.module_scripts = 0
        self.title = ""
        self.horizontal = 0
        self.leaves = 0
        self.notes: list[str] = []  # the text of each <aside class="notes">
        self.notes_outside_slides = 0
        self._depth = 0  # open <section>s
        self._children: list[int] = []  # per open section: how many sections it holds
        self._in: str | None = None  # "style", "script", "title" or "aside"
        self._text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in LOADING and attrs.get(LOADING[tag]):
            self.loads.append((tag, attrs[LOADING[tag]]))
        if tag == "script" and attrs.get("type") == "module":
            self.module_scripts += 1
        if tag == "section":
            if self._children:
                self._children[-1] += 1
            else:
                self.horizontal += 1
            self._depth += 1
            self._children.append(0)
        elif tag == "aside" and "notes" in (attrs.get("class") or "").split():
            self._in, self._text = "aside", []
            if self._depth == 0:
                self.notes_outside_slides += 1
        elif tag in ("style", "title") or (tag == "script" and "src" not in attrs):
            if self._in != "aside":
                self._in, self._text = tag, []

    def handle_endtag(self, tag):
        if tag == "section" and self._children:
            if self._children.pop() == 0:
                self.leaves += 1
            self._depth -= 1
        elif tag == self._in:
            text = "".join(self._text)
            {"aside": self.notes, "style": self.styles, "script": self.scripts}.get(tag, []).append(text)
            if tag == "title":
                self.title = text
            self._in = None

    def handle_data(self, data):
        if self._in:
            self._text.append(data)


def deck_cells(path: Path) -> list:
    """A chapter's cells as its deck shows them: the ``nav`` cells (chapter links) are left out."""
    nb = nbformat.read(path, as_version=4)
    return [c for c in nb.cells if "nav" not in c.metadata.get("tags", [])]


def slide_type(cell) -> str:
    return cell.metadata.get("slideshow", {}).get("slide_type", "-") or "-"


def expected_slides(cells) -> tuple[int, int]:
    """(horizontal slides, slides in all) from the metadata: the first cell shown opens a slide,
    every later ``slide`` opens another, every ``subslide`` a slide below it; ``skip`` and
    ``notes`` cells open nothing."""
    shown = [slide_type(c) for c in cells if slide_type(c) not in ("skip", "notes")]
    horizontal = 1 + shown[1:].count("slide")
    return horizontal, horizontal + shown[1:].count("subslide")


def words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z]{3,}", text))


def external(refs) -> list[str]:
    return [ref for ref in refs if REMOTE.match(ref.strip())]


def local_target(base: Path, ref: str) -> Path | None:
    """The file a relative reference names (query and fragment dropped), or None for data: etc."""
    ref = ref.strip()
    if not ref or ref.startswith(LOCAL_SCHEMES) or REMOTE.match(ref):
        return None
    return (base / re.split(r"[?#]", ref, maxsplit=1)[0]).resolve()


def css_refs(css: str) -> list[str]:
    return [a or b for a, b in CSS_REFS.findall(css)]


@pytest.fixture(scope="module")
def decks(built_decks) -> dict[str, tuple[Path, Deck]]:
    return {p.name.removesuffix(".slides.html"): (p, Deck(p.read_text(encoding="utf-8"))) for p in built_decks}


def tiny_notebook() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell("# A tiny deck", metadata={"slideshow": {"slide_type": "slide"}}),
        new_markdown_cell("Say this out loud.", metadata={"slideshow": {"slide_type": "notes"}}),
        new_code_cell("1 + 1", metadata={"slideshow": {"slide_type": "subslide"}}),
    ]
    return nb


# --- the decks built from the chapters ---------------------------------------------------------


def test_every_chapter_has_a_deck_titled_by_the_chapter(built_decks, decks):
    assert CHAPTERS, "no chapter notebooks found"
    assert [p.name for p in built_decks] == [f"{c}.slides.html" for c in CHAPTERS]
    assert all(p.parent == ROOT / "_build" / "decks" for p in built_decks)
    for chapter, (_, deck) in decks.items():
        heading = next(line[2:].strip() for c in deck_cells(NOTEBOOKS / f"{chapter}.ipynb")
                       if c.cell_type == "markdown" for line in c.source.splitlines() if line.startswith("# "))
        assert deck.title.startswith(heading), (chapter, deck.title)


def test_decks_load_nothing_from_the_network(decks):
    for chapter, (_, deck) in decks.items():
        assert deck.loads, f"{chapter}: the deck loads no script or stylesheet at all?"
        assert external(ref for _, ref in deck.loads) == [], chapter
        assert external(ref for style in deck.styles for ref in css_refs(style)) == [], chapter
        # Module paths given to require() and the MathJax loader are fetched too.
        for script in deck.scripts:
            assert not re.search(r"require\(\s*(?:\{[^}]*\}\s*,\s*)?\[[^\]]*[\"'](?:https?:)?//", script), chapter
        assert deck.module_scripts == 0, f"{chapter}: a <script type=module> (mermaid's loader) is left"


def test_copied_css_loads_nothing_from_the_network(built_decks):
    sheets = sorted((built_decks[0].parent / "vendor").rglob("*.css"))
    assert sheets, "no stylesheet was copied into vendor/"
    for sheet in sheets:
        assert external(css_refs(sheet.read_text(encoding="utf-8", errors="replace"))) == [], sheet


def test_every_local_reference_resolves(built_decks, decks):
    out = built_decks[0].parent
    for chapter, (path, deck) in decks.items():
        refs = [ref for _, ref in deck.loads]
        for script in deck.scripts:  # reveal.js and its notes plugin, loaded through require()
            for array in re.findall(r"require\(\s*(?:\{[^}]*\}\s*,\s*)?\[([^\]]*)\]", script):
                refs += re.findall(r"[\"']([^\"']+\.js)[\"']", array)
        assert any(r.endswith("plugin/notes/notes.js") for r in refs), f"{chapter}: no notes plugin"
        assert "plugins: [RevealNotes]" in "".join(deck.scripts), f"{chapter}: notes plugin not registered"
        for ref in refs:
            target = local_target(path.parent, ref)
            if target is not None:
                assert target.is_file(), f"{chapter}: {ref} -> {target} is missing"
                assert target.is_relative_to(out), f"{chapter}: {ref} points outside {out}"
        mathjax = next(r for r in refs if "MathJax.js" in r)
        for config in re.search(r"config=([^&]+)", mathjax).group(1).split(","):
            assert (out / "vendor" / "mathjax" / "config" / f"{config}.js").is_file(), config
    for sheet in (out / "vendor").rglob("*.css"):
        for ref in css_refs(sheet.read_text(encoding="utf-8", errors="replace")):
            target = local_target(sheet.parent, ref)
            assert target is None or target.is_file(), f"{sheet}: {ref} is missing"


def test_vendor_holds_only_what_decks_need(built_decks):
    vendor = built_decks[0].parent / "vendor"
    size = sum(p.stat().st_size for p in vendor.rglob("*") if p.is_file())
    assert size < 8 * 2**20, f"vendor/ is {size / 2**20:.1f} MiB; copy only what a deck loads"
    themes = sorted(p.name for p in (vendor / "reveal.js" / "dist" / "theme").glob("*.css"))
    assert themes == ["white.css"]  # the other themes pull Google Fonts
    assert not (vendor / "mathjax" / "extensions" / "a11y").exists()
    revealjs = json.loads((ROOT / "node_modules" / "reveal.js" / "package.json").read_text())
    assert revealjs["version"].startswith("4."), "nbconvert's reveal template needs reveal.js 4.x"


def test_slides_follow_the_notebook_metadata(decks):
    for chapter, (_, deck) in decks.items():
        horizontal, total = expected_slides(deck_cells(NOTEBOOKS / f"{chapter}.ipynb"))
        assert (deck.horizontal, deck.leaves) == (horizontal, total), chapter


def test_notes_cells_become_speaker_notes(decks):
    with_notes = 0
    for chapter, (_, deck) in decks.items():
        notes = [c for c in deck_cells(NOTEBOOKS / f"{chapter}.ipynb") if slide_type(c) == "notes"]
        assert len(deck.notes) == len(notes), chapter
        assert deck.notes_outside_slides == 0, f"{chapter}: a note outside any slide is never shown"
        for cell, aside in zip(notes, deck.notes):
            said = re.sub(r"\]\([^)]*\)", "]", cell.source)  # a link's target is not its text
            assert words(said) <= words(aside), (chapter, sorted(words(said) - words(aside))[:5])
        with_notes += bool(notes)
    assert with_notes, "no chapter has a notes cell, so nothing here tests speaker notes"


def test_skipped_and_nav_cells_are_not_shown(decks):
    for chapter, (path, _) in decks.items():
        html = path.read_text(encoding="utf-8")
        nb = nbformat.read(NOTEBOOKS / f"{chapter}.ipynb", as_version=4)
        nav = [c for c in nb.cells if "nav" in c.metadata.get("tags", [])]
        assert nav and all(".ipynb" in c.source for c in nav)
        assert not re.search(r'href="[^"]*\.ipynb', html), f"{chapter}: a chapter link to a notebook is shown"


# --- the template, with no npm needed -----------------------------------------------------------


def test_template_drops_mermaid_and_every_cdn():
    from nbconvert import SlidesExporter

    stock, _ = SlidesExporter().from_notebook_node(tiny_notebook())
    ours, _ = decks_tool.exporter().from_notebook_node(tiny_notebook())
    stock_deck, deck = Deck(stock), Deck(ours)
    # The checks below do catch nbconvert's own deck...
    assert "mermaid" in stock and stock_deck.module_scripts == 1
    assert external(ref for _, ref in stock_deck.loads)
    # ...and find nothing in ours, whose every script and style is under vendor/.
    assert "mermaid" not in ours.lower() and deck.module_scripts == 0
    assert external(ref for _, ref in deck.loads) == []
    assert {ref.split("/")[0] for _, ref in deck.loads} == {"vendor"}
    assert re.search(r'<link[^>]+href="vendor/reveal.js/dist/theme/white.css"', ours)
    assert '"vendor/reveal.js/plugin/notes/notes.js"' in ours
    assert (deck.horizontal, deck.leaves) == (1, 2) and len(deck.notes) == 1


def test_unknown_chapter_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"chapters: no chapter '99'.*01_caches"):
        decks_tool.build(out=tmp_path, chapters=["99"])
    assert [p.stem for p in decks_tool.select(["01", "2", "03_module_state.ipynb"])] == [
        "01_caches", "02_memoize", "03_module_state"]


# --- what a machine without the npm assets gets --------------------------------------------------


def fake_npm(bin_dir: Path, script: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    npm = bin_dir / "npm"
    npm.write_text("#!/bin/sh\n" + script)
    npm.chmod(0o755)
    return npm


def test_no_node_modules_and_no_npm_says_how_to_install(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(decks_tool, "NODE_MODULES", tmp_path / "project" / "node_modules")
    out = tmp_path / "decks"
    with pytest.raises(decks_tool.MissingTool) as missing:
        decks_tool.build(out=out)
    message = str(missing.value)
    for needed in ("reveal.js", "npm is not on PATH", "Node.js 18+", "npm ci", str(tmp_path / "project")):
        assert needed in message, message
    assert not out.exists() or not list(out.iterdir()), "nothing is written when the assets are missing"


def test_failing_npm_ci_is_reported_with_its_error(tmp_path, monkeypatch):
    log = tmp_path / "npm.log"
    fake_npm(tmp_path / "bin", f'echo "$PWD $*" > {log}\necho "npm error network unreachable" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setattr(decks_tool, "NODE_MODULES", project / "node_modules")
    with pytest.raises(decks_tool.MissingTool, match=r"(?s)`npm ci` in .*failed.*network unreachable.*Node.js"):
        decks_tool.build(out=tmp_path / "decks", chapters=["01"])
    assert log.read_text().split()[:2] == [str(project), "ci"]


needs_node_modules = pytest.mark.skipif(
    not (ROOT / "node_modules" / "reveal.js").is_dir(), reason="no node_modules here: run `npm ci` (Node.js 18+)"
)


@needs_node_modules
def test_missing_node_modules_are_installed_by_npm_ci(tmp_path, monkeypatch):
    # A stand-in npm whose `ci` "installs" this checkout's node_modules into the project directory.
    fake_npm(tmp_path / "bin", f'[ "$1" = ci ] && exec /bin/ln -s {ROOT / "node_modules"} node_modules\nexit 1\n')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setattr(decks_tool, "NODE_MODULES", project / "node_modules")
    decks = decks_tool.build(out=tmp_path / "decks", chapters=["01"])
    assert [p.name for p in decks] == ["01_caches.slides.html"]
    assert (tmp_path / "decks" / "vendor" / "reveal.js" / "plugin" / "notes" / "notes.js").is_file()


@needs_node_modules
def test_wrong_revealjs_major_is_refused(tmp_path, monkeypatch):
    real = ROOT / "node_modules"
    fake = tmp_path / "node_modules"
    fake.mkdir()
    for package in real.iterdir():
        if package.name != "reveal.js":
            os.symlink(package, fake / package.name)
    (fake / "reveal.js").mkdir()
    for item in (real / "reveal.js").iterdir():
        if item.name != "package.json":
            os.symlink(item, fake / "reveal.js" / item.name)
    (fake / "reveal.js" / "package.json").write_text('{"name": "reveal.js", "version": "5.2.1"}')
    monkeypatch.setattr(decks_tool, "NODE_MODULES", fake)
    with pytest.raises(decks_tool.MissingTool, match=r"reveal\.js 5\.2\.1 \(the decks need reveal\.js 4\.x\)"):
        decks_tool.build(out=tmp_path / "decks", chapters=["01"])
