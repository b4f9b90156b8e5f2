"""Tests for tools/build_book.py (issue 14, "the book"): the offline HTML book of every chapter,
built by Sphinx from the committed notebooks, with a landing page, search and the API reference.

The real book is built once per session (the ``built_book`` fixture of conftest.py); the failure
tests build tiny source trees of their own in a temporary directory.
"""

from __future__ import annotations

import base64
import importlib
import json
import re
import struct
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from sphinx.search.en import SearchEnglish

from conftest import ROOT, load_tool

book_tool = load_tool("build_book")
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.I)  # http(s)://..., //host/...
LOADING_TAGS = ("script", "img", "iframe", "embed", "source", "audio", "video")
API_MODULES = ("measure", "plot", "tables", "clock", "caches", "memoize", "state", "bagpipe",
               "queues", "remote", "testing")


class Page(HTMLParser):
    """What the tests look at in a built page: its links (all, and those of the article, the
    page's own content without the sidebars), what the browser loads by itself (scripts,
    stylesheets, images...), the ids, the text of <pre> blocks and of the article."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.article_links: list[str] = []
        self.article_images: list[str] = []
        self.loads: list[str] = []
        self.pre_texts: list[str] = []
        self._text: list[str] = []
        self._article = self._pre = 0
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "article":
            self._article += 1
        elif tag == "pre":
            self._pre += 1
            self.pre_texts.append("")
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
            if self._article:
                self.article_links.append(attrs["href"])
        elif tag in LOADING_TAGS and attrs.get("src"):
            self.loads.append(attrs["src"])
            if tag == "img" and self._article:
                self.article_images.append(attrs["src"])
        elif tag == "link" and attrs.get("href"):
            self.loads.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "article":
            self._article -= 1
        elif tag == "pre":
            self._pre -= 1

    def handle_data(self, data):
        if self._pre:
            self.pre_texts[-1] += data
        if self._article:
            self._text.append(data)

    @property
    def article_text(self) -> str:
        return " ".join(" ".join(self._text).split())


def read(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


def css_loads(css: str) -> list[str]:
    """The URLs a stylesheet loads: ``url(...)`` and ``@import "..."``."""
    return (re.findall(r"url\(\s*[\"']?([^\"')\s]+)", css)
            + re.findall(r"@import\s+[\"']([^\"']+)", css))


def notebook_pngs(name: str) -> list[bytes]:
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    return [base64.b64decode(out["data"]["image/png"])
            for cell in nb.cells if cell.cell_type == "code"
            for out in cell.outputs if "image/png" in out.get("data", {})]


# --- the real book -------------------------------------------------------------------------

def test_there_are_seven_chapters_to_build():
    assert len(CHAPTERS) == 7, CHAPTERS


def test_landing_page_lists_every_chapter_in_order_and_the_two_setup_commands(built_book):
    page = read(built_book / "index.html")
    listed = [href.split("#")[0].removesuffix(".html") for href in page.article_links
              if re.match(r"\d\d_\w+\.html", href)]
    assert list(dict.fromkeys(listed)) == CHAPTERS  # in the page's own text, not only the sidebar
    commands = [line.split("#")[0].strip() for pre in page.pre_texts for line in pre.splitlines()]
    assert "make course" in commands and "make test" in commands
    for way in ("Alone (self-study)", "In a room (a workshop)", "As a reference (this book)"):
        assert way in page.article_text


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_chapter_page_shows_its_committed_figures(built_book, chapter):
    page = read(built_book / f"{chapter}.html")
    shown = [(built_book / src).read_bytes() for src in page.article_images]  # each file exists
    assert sorted(shown) == sorted(notebook_pngs(chapter))  # the committed images, byte for byte
    assert all(src.startswith("_images/") for src in page.article_images)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_chapter_links_its_neighbours_and_the_contents(built_book, chapter):
    page = read(built_book / f"{chapter}.html")
    i = CHAPTERS.index(chapter)
    neighbours = {f"{CHAPTERS[j]}.html" for j in (i - 1, i + 1) if 0 <= j < len(CHAPTERS)}
    assert neighbours <= set(page.article_links)
    assert "index.html#chapters" in page.article_links  # the navigation line's "Contents"


def test_every_internal_link_and_anchor_resolves(built_book):
    ids: dict[Path, set[str]] = {}
    for path in built_book.rglob("*.html"):
        for href in read(path).links:
            if REMOTE.match(href) or href.startswith(("mailto:", "javascript:")):
                continue
            target, _, anchor = href.partition("#")
            file = (path.parent / target).resolve() if target else path
            where = path.relative_to(built_book)
            assert file.is_file(), f"{where} links to a missing file: {href}"
            if anchor and file.suffix == ".html":
                if file not in ids:
                    ids[file] = read(file).ids
                assert anchor in ids[file], f"{where} links to a missing anchor: {href}"


@pytest.mark.parametrize("module, name", [
    ("caches", "LRUCache"), ("caches", "LimitableMap"), ("memoize", "memoize"),
    ("bagpipe", "Bagpipe"), ("measure", "track"), ("measure", "track_isolated"),
    ("queues", "BoundedExecutor"), ("state", "GlobalsWatch"), ("remote", "RemoteCache"),
    ("testing", "assert_no_leak"), ("clock", "FakeClock"), ("plot", "plot_rss"),
    ("tables", "table"),
])
def test_api_reference_documents_the_public_names(built_book, module, name):
    html = (built_book / "api.html").read_text(encoding="utf-8")
    assert f'id="module-leaklab.{module}"' in html
    entry = re.search(rf'<dt class="sig[^"]*" id="leaklab\.{module}\.{name}">(.*?)</dd>',
                      html, re.S)
    assert entry, f"leaklab.{module}.{name} is not documented"
    description = re.sub(r"<[^>]+>", " ", entry.group(1).split("</dt>", 1)[1])
    assert len(description.split()) >= 5, f"leaklab.{module}.{name} is shown without its docstring"


def test_api_reference_shows_every_name_each_module_exports(built_book):
    """Every name in ``__all__``, also after a module becomes a package that re-exports them
    (a constant's ``#:`` comment must then be in the package's ``__init__.py``)."""
    html = (built_book / "api.html").read_text(encoding="utf-8")
    assert [m for m in API_MODULES if f'id="module-leaklab.{m}"' not in html] == []
    missing = [f"leaklab.{module}.{name}" for module in API_MODULES
               for name in importlib.import_module(f"leaklab.{module}").__all__
               if f'id="leaklab.{module}.{name}"' not in html]
    assert missing == []


def test_search_index_knows_every_chapter_and_its_words(built_book):
    assert (built_book / "search.html").is_file()
    text = (built_book / "searchindex.js").read_text(encoding="utf-8")
    index = json.loads(text[text.index("(") + 1:text.rindex(")")])
    assert set(CHAPTERS) <= set(index["docnames"])
    words = {"00_measuring_memory": "tracemalloc", "01_caches": "cachetools",
             "02_memoize": "memoize", "03_module_state": "GlobalsWatch", "04_queues": "Bagpipe",
             "05_out_of_process_cache": "Valkey", "06_hunting_leaks": "objgraph"}
    stemmer = SearchEnglish({})  # the index holds stems, which the search page looks up
    for chapter, word in words.items():
        stem, docs = stemmer.stem(word.lower()), set()
        for table in ("terms", "titleterms"):
            found = index[table].get(stem, [])
            docs |= {found} if isinstance(found, int) else set(found)
        assert index["docnames"].index(chapter) in docs, f"search misses {word!r} in {chapter}"


def test_no_page_or_stylesheet_loads_anything_from_the_network(built_book):
    remote = []
    for path in built_book.rglob("*"):
        if path.suffix == ".html":
            html = path.read_text(encoding="utf-8")
            styles = re.findall(r"<style\b[^>]*>(.*?)</style>", html, re.S)
            urls = read(path).loads + [url for css in styles for url in css_loads(css)]
        elif path.suffix == ".css":
            urls = css_loads(path.read_text(encoding="utf-8"))
        else:
            continue
        remote += [f"{path.relative_to(built_book)}: {url}" for url in urls if REMOTE.match(url)]
    assert remote == []


def test_the_offline_scan_sees_a_remote_load():
    """The test above would fail for a page loading MathJax or a web font from a CDN."""
    page = Page('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>'
                '<link rel="stylesheet" href="//fonts.googleapis.com/css?family=Lato">'
                '<script src="_static/doctools.js"></script>')
    assert [url for url in page.loads if REMOTE.match(url)] == page.loads[:2]
    css = '@import "https://fonts.example/x.css"; b { src: url(https://f.example/a.woff2) }'
    assert css_loads(css) == ["https://f.example/a.woff2", "https://fonts.example/x.css"]


def test_a_build_writes_nothing_into_the_repository(built_book):
    """Sphinx and myst-nb write doctrees, _build/ and jupyter_execute/ beside what they read or
    write; the book is built from a copy under _build/, so none of them appear in the sources."""
    litter = ("_build", "jupyter_execute", ".jupyter_cache", "_autosummary", ".doctrees")
    made = [p for d in (ROOT / "docs", ROOT / "notebooks") for p in map(d.joinpath, litter)
            if p.exists()]
    made += [p for p in map(ROOT.joinpath, litter[1:]) if p.exists()]
    assert made == []
    assert built_book == ROOT / "_build" / "book" and (built_book / "index.html").is_file()
    assert not (ROOT / "_build" / "book-work").exists()  # removed after a clean build


# --- failures: tiny source trees ----------------------------------------------------------

def _one_pixel_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b""))


def _tiny(tmp_path: Path, *markdown: str, page: str = "") -> tuple[Path, Path]:
    """A book of one chapter, ``00_tiny.ipynb`` with a figure and ``markdown`` cells, and a
    landing page (with ``page`` in it), configured by the real docs/conf.py."""
    docs, notebooks = tmp_path / "docs", tmp_path / "notebooks"
    docs.mkdir(exist_ok=True)
    notebooks.mkdir(exist_ok=True)
    (docs / "conf.py").write_text((ROOT / "docs" / "conf.py").read_text())
    (docs / "index.md").write_text(
        "# A tiny book\n\n## Chapters\n\n- [The chapter](00_tiny.ipynb)\n\n"
        f"{page}\n\n```{{toctree}}\n:hidden:\n\n00_tiny\n```\n")
    png = base64.b64encode(_one_pixel_png()).decode()
    figure = new_output("display_data", data={"image/png": png})
    nb = new_notebook(cells=[
        new_markdown_cell("[Contents](../README.md#chapters)", metadata={"tags": ["nav"]}),
        new_markdown_cell("# 00 · Tiny\n\nOne figure."),
        new_code_cell("figure()", execution_count=1, outputs=[figure]),
        *map(new_markdown_cell, markdown)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, notebooks / "00_tiny.ipynb")
    return docs, notebooks


def test_a_broken_reference_or_an_unreadable_chapter_fails_the_build(tmp_path):
    docs, notebooks = _tiny(tmp_path)
    out = book_tool.build(tmp_path / "book", docs=docs, notebooks=notebooks)  # the control builds
    assert read(out / "00_tiny.html").article_images

    docs, notebooks = _tiny(tmp_path, "Next: [the next chapter](01_missing.ipynb)",
                            "See {ref}`a-label-nobody-defined`.")
    with pytest.raises(book_tool.BuildError) as failed:
        book_tool.build(tmp_path / "book", docs=docs, notebooks=notebooks)
    message = str(failed.value)
    assert "01_missing.ipynb" in message and "a-label-nobody-defined" in message
    assert str(notebooks / "00_tiny.ipynb") in message  # the author's file, not the build's copy
    assert not (tmp_path / "book").exists()  # no stale book left to be taken for this one

    (notebooks / "01_cut.ipynb").write_text('{"cells": [{"cell_type": "markdown", "sou')
    with pytest.raises(book_tool.BuildError, match=r"01_cut\.ipynb: not a readable notebook"):
        book_tool.build(tmp_path / "book", docs=docs, notebooks=notebooks)


def test_a_page_that_would_load_from_the_network_fails_the_build(tmp_path):
    script = '<script src="https://cdn.example.org/tracker.js"></script>'
    docs, notebooks = _tiny(tmp_path, page=script)
    with pytest.raises(book_tool.BuildError, match=r"index\.html: https://cdn\.example\.org/"):
        book_tool.build(tmp_path / "book", docs=docs, notebooks=notebooks)


def test_out_must_be_new_empty_or_a_previous_book(tmp_path):
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_book.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    assert f"--out {tmp_path} exists and is not a book" in result.stderr
    assert mine.read_text() == "mine"
