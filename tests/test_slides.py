"""Tests for tools/slides.py (issue 14, live slides): ``make slides CHAPTER=01`` resolves the
chapter, refuses an unknown one by listing the chapters, and builds the ``jupyter lab`` command
that opens it in RISE with JupyterLab's network calls off. No server and no browser here:
tests/test_browser.py runs the command and looks at the slide it shows.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from conftest import ROOT, load_tool

slides = load_tool("slides")
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
RISE_STATIC = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / \
    "site-packages" / "jupyterlab_rise" / "static"


def write_notebook(path: Path, metadata: dict | None = None) -> Path:
    path.write_text(json.dumps({"cells": [], "metadata": metadata or {}, "nbformat": 4,
                                "nbformat_minor": 5}), encoding="utf-8")
    return path


@pytest.fixture
def course(tmp_path):
    """A notebooks/ directory of three chapters, two of them sharing a name, and files that are
    not chapters."""
    for name in ("00_intro", "01_caches", "02_caches", "README", "1_short"):
        write_notebook(tmp_path / f"{name}.ipynb")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    write_notebook(tmp_path / ".ipynb_checkpoints" / "00_intro-checkpoint.ipynb")
    return tmp_path


def test_chapters_are_the_numbered_notebooks_in_order(course):
    assert [p.name for p in slides.chapters(course)] == ["00_intro.ipynb", "01_caches.ipynb",
                                                         "02_caches.ipynb"]
    assert [p.stem for p in slides.chapters()] == CHAPTERS


@pytest.mark.parametrize("name", ["01", "1", " 01 ", "01_caches", "caches", "01_caches.ipynb",
                                  "notebooks/01_caches.ipynb", ROOT / "notebooks" / "01_caches.ipynb"])
def test_resolve_accepts_number_stem_name_and_path(name):
    assert slides.resolve(name) == ROOT / "notebooks" / "01_caches.ipynb"


def test_every_chapter_resolves_by_its_number():
    assert [slides.resolve(stem[:2]).stem for stem in CHAPTERS] == CHAPTERS


@pytest.mark.parametrize("name", ["99", "7x", "cache", "01_cache", "1_caches", "001", "caches.py"])
def test_unknown_chapter_is_refused_with_the_list(name):
    with pytest.raises(slides.UnknownChapter) as error:
        slides.resolve(name)
    message = str(error.value)
    assert repr(name) in message
    assert all(stem in message for stem in CHAPTERS), message


@pytest.mark.parametrize("name", [None, "", "  "])
def test_no_chapter_asks_which(name):
    with pytest.raises(slides.UnknownChapter, match=r"which chapter\?.*CHAPTER=01.*01_caches"):
        slides.resolve(name)


def test_a_name_two_chapters_share_is_ambiguous(course):
    with pytest.raises(slides.UnknownChapter, match=r"'caches' fits 01_caches, 02_caches"):
        slides.resolve("caches", course)
    assert slides.resolve("2", course) == course / "02_caches.ipynb"
    with pytest.raises(slides.UnknownChapter, match="no chapter 'README'"):
        slides.resolve("README", course)  # a notebook, but not a chapter


def test_command_opens_the_chapter_in_rise_offline():
    chapter = slides.resolve("01")
    cmd = slides.command(chapter, extra=["--no-browser", "--port=8899"])
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={ROOT / 'notebooks'}" in cmd
    assert "--LabApp.default_url=/rise/01_caches.ipynb" in cmd
    assert all(option in cmd for option in slides.OFFLINE_OPTIONS)
    assert cmd[-2:] == ["--no-browser", "--port=8899"]  # last, so they override


def test_rise_path_is_relative_to_the_notebooks_and_quoted(tmp_path):
    chapter = write_notebook(tmp_path / "07_a b#c.ipynb")
    assert slides.rise_path(chapter, tmp_path) == "/rise/07_a%20b%23c.ipynb"
    with pytest.raises(ValueError):
        slides.rise_path(ROOT / "README.md", tmp_path)


def test_offline_options_switch_jupyterlab_network_calls_off():
    from jupyterlab.handlers.announcements import NeverCheckForUpdate
    from jupyterlab.labapp import LabApp

    app = LabApp()
    app.parse_command_line(list(slides.OFFLINE_OPTIONS))
    assert app.news_url is None
    assert app.check_for_updates_class is NeverCheckForUpdate
    assert app.extension_manager == "readonly"


def test_theme_warning_names_the_theme_and_the_fix(tmp_path):
    bare = write_notebook(tmp_path / "01_a.ipynb")
    assert "'simple'" in slides.theme_warning(bare)
    assert '"rise": {"theme": "white"}' in slides.theme_warning(bare)
    sky = write_notebook(tmp_path / "02_b.ipynb", {"livereveal": {"theme": "sky"}})
    assert "'sky'" in slides.theme_warning(sky)
    # RISE reads "rise" over "livereveal"
    over = write_notebook(tmp_path / "03_c.ipynb", {"livereveal": {"theme": "sky"},
                                                    "rise": {"theme": "white"}})
    assert slides.theme_warning(over) is None
    under = write_notebook(tmp_path / "04_d.ipynb", {"livereveal": {"theme": "white"},
                                                     "rise": {"theme": "moon"}})
    assert "'moon'" in slides.theme_warning(under)


@pytest.mark.parametrize("stem", CHAPTERS)
def test_every_chapter_presents_with_a_theme_that_loads_no_web_font(stem):
    warning = slides.theme_warning(ROOT / "notebooks" / f"{stem}.ipynb")
    assert warning is None, warning


def test_web_font_free_themes_match_the_installed_rise():
    """The themes slides.py accepts are exactly those of the installed RISE whose stylesheet
    imports no Google Font (RISE loads each theme as a chunk of its bundle)."""
    if not RISE_STATIC.is_dir():
        pytest.skip(f"jupyterlab-rise is not installed at {RISE_STATIC}: run `make setup`")
    themes = {}
    for bundle in RISE_STATIC.glob("*.bundle.js"):
        themes.update(re.findall(r'"\./(\w+)\.css":\[\d+,(\d+)\]', bundle.read_text(errors="replace")))
    assert "white" in themes and "simple" in themes, themes
    fonts = {theme for theme, chunk in themes.items()
             if "fonts.googleapis" in (RISE_STATIC / f"{chunk}.bundle.js").read_text(errors="replace")}
    assert set(themes) - fonts == slides.WEB_FONT_FREE_THEMES
    assert slides.RISE_DEFAULT_THEME in fonts and slides.THEME in slides.WEB_FONT_FREE_THEMES


def test_main_starts_jupyterlab_on_the_chapter(monkeypatch, capsys):
    started = []
    monkeypatch.setattr(slides.os, "execv", lambda path, argv: started.append((path, argv)))
    slides.main(["01", "--no-browser"])
    expected = slides.command(slides.resolve("01"), extra=["--no-browser"])
    assert started == [(expected[0], expected)]
    assert "/rise/01_caches.ipynb" in capsys.readouterr().out


def test_main_refuses_an_unknown_chapter_and_starts_nothing(monkeypatch, capsys):
    monkeypatch.setattr(slides.os, "execv", lambda *a: pytest.fail("started JupyterLab"))
    assert slides.main(["42"]) == 2
    assert slides.main([]) == 2  # `make slides` without CHAPTER=
    err = capsys.readouterr().err
    assert "no chapter '42'" in err and "which chapter?" in err
    assert all(stem in err for stem in CHAPTERS)


def test_main_dry_run_prints_the_command(monkeypatch, capsys):
    monkeypatch.setattr(slides.os, "execv", lambda *a: pytest.fail("started JupyterLab"))
    assert slides.main(["--dry-run", "caches"]) == 0
    out = capsys.readouterr().out
    assert "-m jupyterlab" in out and "--LabApp.default_url=/rise/01_caches.ipynb" in out


def test_main_says_how_to_install_what_is_missing(monkeypatch, capsys):
    monkeypatch.setattr(slides.os, "execv", lambda *a: pytest.fail("started JupyterLab"))
    monkeypatch.setattr(slides, "missing_tools", lambda: ["jupyterlab_rise"])
    assert slides.main(["01"]) == 1
    err = capsys.readouterr().err
    assert "jupyterlab_rise" in err and "make setup" in err


def test_main_warns_about_a_web_font_theme(monkeypatch, capsys, tmp_path):
    write_notebook(tmp_path / "01_x.ipynb")
    monkeypatch.setattr(slides, "NOTEBOOKS", tmp_path)
    monkeypatch.setattr(slides.os, "execv", lambda *a: None)
    slides.main(["01"])
    assert "warning: 01_x.ipynb sets no RISE theme" in capsys.readouterr().err
