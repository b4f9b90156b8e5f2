"""Build the offline workshop decks: one reveal.js slide show per chapter, from the committed notebooks.

``python tools/build_decks.py [--out DIR] [CHAPTER ...]`` (``make decks``; ``make course`` runs it
too) writes ``_build/decks/NN_name.slides.html`` for every chapter (or for the chapters named, as
``01``, ``01_caches`` or a notebook path). Open one in a browser, straight from the file system:
arrow keys move, ``s`` opens the speaker view with the chapter's ``notes`` cells.

The slides come from each cell's ``slideshow.slide_type`` (the chapters' slide metadata); the
outputs and figures are the committed ones, nothing is executed again. Cells tagged ``nav`` (the
previous/next chapter links, which point at notebooks) are left out.

A deck must work at a venue without Wi-Fi, so it loads nothing from the network. nbconvert's
reveal template takes reveal.js, require.js, jQuery, MathJax and mermaid from CDNs; here
reveal.js 4 (theme ``white``, whose font ships with it: the other themes pull Google Fonts, and
the notes plugin), require.js, jQuery and a MathJax 2 subset are copied from ``node_modules/``
into ``_build/decks/vendor/`` and referenced by relative paths, and the template in
``tools/deck_template/`` drops mermaid and the widgets loader. ``node_modules/`` comes from the
npm registry through ``npm ci`` (package.json and package-lock.json pin the versions); when it is
missing, :func:`build` runs ``npm ci`` itself if npm is on PATH, and otherwise raises
:class:`MissingTool` saying how to install Node.js and npm.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
DECKS = ROOT / "_build" / "decks"
TEMPLATE = Path(__file__).resolve().parent / "deck_template"
# Where `npm ci` installs the assets (package.json sits in its parent). Read at every build, so a
# test can point it at an empty directory.
NODE_MODULES = ROOT / "node_modules"

CHAPTER = re.compile(r"^\d\d_.+\.ipynb$")
THEME = "white"  # the reveal.js theme whose font is bundled with reveal.js (no Google Fonts)
TRANSITION = "slide"
# A 16:9 slide wider than nbconvert's 960x700, without the In/Out prompts, so that a code cell of
# about 70 columns fits; a slide taller than the screen scrolls instead of being cut off.
SIZE = {"reveal_width": "1280", "reveal_height": "720", "reveal_scroll": True}

# Major versions nbconvert 7's reveal template works with: reveal.js 5 and later break it, and
# the template's MathJax configuration is MathJax 2's.
MAJOR = {"reveal.js": 4, "mathjax": 2}

# What a deck loads, as (file or directory in node_modules, place under vendor/). Only these are
# copied: reveal.js's script, styles, `white` theme and its font, the notes plugin (speaker view);
# require.js; jQuery; and the part of MathJax 2 that typesets TeX to HTML (its TeX input, CommonHTML
# output, their extensions and web fonts, English messages): about 1.6 MiB of the package's 73.
# The licences travel with the files (require.js carries its own in its header).
ASSETS: list[tuple[str, str]] = [
    ("reveal.js/dist/reveal.js", "reveal.js/dist/reveal.js"),
    ("reveal.js/dist/reveal.css", "reveal.js/dist/reveal.css"),
    (f"reveal.js/dist/theme/{THEME}.css", f"reveal.js/dist/theme/{THEME}.css"),
    ("reveal.js/dist/theme/fonts/source-sans-pro", "reveal.js/dist/theme/fonts/source-sans-pro"),
    ("reveal.js/plugin/notes/notes.js", "reveal.js/plugin/notes/notes.js"),
    ("reveal.js/LICENSE", "reveal.js/LICENSE"),
    ("requirejs/require.js", "require.js"),
    ("jquery/dist/jquery.min.js", "jquery.min.js"),
    ("jquery/LICENSE.txt", "jquery.LICENSE.txt"),
    ("mathjax/MathJax.js", "mathjax/MathJax.js"),
    ("mathjax/LICENSE", "mathjax/LICENSE"),
    ("mathjax/config/TeX-AMS_CHTML-full.js", "mathjax/config/TeX-AMS_CHTML-full.js"),
    ("mathjax/config/Safe.js", "mathjax/config/Safe.js"),
    ("mathjax/jax/input/TeX", "mathjax/jax/input/TeX"),
    ("mathjax/jax/output/CommonHTML", "mathjax/jax/output/CommonHTML"),
    ("mathjax/jax/element", "mathjax/jax/element"),
    ("mathjax/extensions/TeX", "mathjax/extensions/TeX"),
    ("mathjax/fonts/HTML-CSS/TeX/woff", "mathjax/fonts/HTML-CSS/TeX/woff"),
    ("mathjax/localization/en", "mathjax/localization/en"),
]
# MathJax's top-level extensions (Safe, the menu, zoom, tex2jax, ...), without its large a11y tree.
MATHJAX_EXTENSIONS = "mathjax/extensions"

VENDOR = "vendor"
URLS = {
    "reveal_url_prefix": f"{VENDOR}/reveal.js",
    "require_js_url": f"{VENDOR}/require.js",
    "jquery_url": f"{VENDOR}/jquery.min.js",
    "mathjax_url": f"{VENDOR}/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe",
    # Not used by the reveal template; set so that no CDN default is left anywhere.
    "font_awesome_url": "",
    "mermaid_js_url": "",
    "mermaid_layout_elk_js_url": "",
    "jupyter_widgets_base_url": "",
}

INSTALL = (
    "install Node.js 18+ and npm (https://nodejs.org/, or your system's `nodejs` and `npm` "
    "packages), then `make decks` (or `make course`), which runs `npm ci` in {root} first"
)


class MissingTool(RuntimeError):
    """The decks' browser assets (reveal.js, require.js, jQuery, MathJax) are not installed and
    cannot be: the message says what is missing and how to install it."""


def chapters(notebooks: Path = NOTEBOOKS) -> list[Path]:
    """The chapter notebooks (``NN_name.ipynb``) in reading order."""
    return sorted(p for p in Path(notebooks).glob("*.ipynb") if CHAPTER.match(p.name))


def select(names, notebooks: Path = NOTEBOOKS) -> list[Path]:
    """The chapters named by number (``01``, ``1``), stem (``01_caches``), file name or path."""
    every = chapters(notebooks)
    if names is None:
        return every
    if isinstance(names, (str, Path)):
        names = [names]
    chosen = []
    for name in names:
        key = Path(str(name)).name.removesuffix(".ipynb")
        found = [p for p in every if p.stem == key or (key.isdigit() and int(p.stem[:2]) == int(key))]
        if len(found) != 1:
            known = ", ".join(p.stem for p in every)
            raise ValueError(f"chapters: no chapter {name!r} (known: {known})")
        if found[0] not in chosen:
            chosen.append(found[0])
    return chosen


def _missing(node_modules: Path) -> list[str]:
    return [src for src, _ in ASSETS if not (node_modules / src).exists()]


def _wrong_versions(node_modules: Path) -> list[str]:
    wrong = []
    for package, major in MAJOR.items():
        meta = node_modules / package / "package.json"
        version = json.loads(meta.read_text(encoding="utf-8")).get("version", "?")
        if not version.startswith(f"{major}."):
            wrong.append(f"{package} {version} (the decks need {package} {major}.x)")
    return wrong


def ensure_assets(node_modules: Path | None = None) -> Path:
    """Return the node_modules directory holding every asset a deck needs, running ``npm ci`` (in
    the directory with package.json) once if some are missing; raise :class:`MissingTool` if they
    are missing and npm is not on PATH, or ``npm ci`` failed or did not bring them."""
    node_modules = Path(node_modules or NODE_MODULES)
    project = node_modules.parent
    install = INSTALL.format(root=project)
    missing = _missing(node_modules)
    if missing:
        npm = shutil.which("npm")
        if npm is None:
            raise MissingTool(
                f"The offline decks need reveal.js 4, require.js, jQuery and MathJax 2 from the npm "
                f"registry, and {node_modules} does not have them (missing: {', '.join(missing[:3])}"
                f"{', ...' if len(missing) > 3 else ''}); npm is not on PATH: {install}."
            )
        print(f"build_decks: {node_modules} lacks the deck assets; running `npm ci` in {project} ...",
              flush=True)
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=project, capture_output=True, text=True,
        )
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()
            raise MissingTool(
                f"`npm ci` in {project} failed (exit {done.returncode}), so the offline decks cannot "
                f"be built: {output[-800:]}\nFix that (is the npm registry reachable? are "
                f"package.json and package-lock.json there?), or {install}."
            )
        missing = _missing(node_modules)
        if missing:
            raise MissingTool(
                f"`npm ci` in {project} ran but {node_modules} still lacks {', '.join(missing)}; "
                f"check that package.json pins reveal.js 4.x, requirejs, jquery and mathjax 2.x."
            )
    wrong = _wrong_versions(node_modules)
    if wrong:
        raise MissingTool(f"wrong versions in {node_modules}: {'; '.join(wrong)}; run `npm ci` in {project}.")
    return node_modules


def copy_vendor(node_modules: Path, out: Path) -> Path:
    """Copy what the decks load into ``out/vendor/`` (replaced if present); return that directory."""
    vendor = out / VENDOR
    if vendor.exists():
        shutil.rmtree(vendor)
    for src, dest in ASSETS:
        source, target = node_modules / src, vendor / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    extensions = node_modules / MATHJAX_EXTENSIONS
    for script in sorted(extensions.glob("*.js")):
        shutil.copy2(script, vendor / "mathjax" / "extensions" / script.name)
    return vendor


def exporter():
    """nbconvert's SlidesExporter with the offline template and every URL pointing into vendor/."""
    from nbconvert import SlidesExporter

    return SlidesExporter(
        extra_template_basedirs=[str(TEMPLATE.parent)],
        template_name=TEMPLATE.name,
        reveal_theme=THEME,
        reveal_transition=TRANSITION,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        **SIZE,
        **URLS,
    )


def deck_notebook(path: Path):
    """A chapter as its deck shows it: without the ``nav`` cells, titled by its ``# `` heading."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if "nav" not in c.get("metadata", {}).get("tags", [])]
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heading = next((ln[2:].strip() for ln in cell.source.splitlines() if ln.startswith("# ")), None)
            if heading:
                nb.metadata["title"] = heading
                break
    return nb


def build(out: Path | None = None, chapters=None) -> list[Path]:
    """Write one offline deck per chapter (or per chapter named) into ``out`` (``_build/decks/``),
    with the assets they load in ``out/vendor/``; return the decks' paths in chapter order."""
    out = Path(out) if out is not None else DECKS
    notebooks = select(chapters)
    node_modules = ensure_assets()
    out.mkdir(parents=True, exist_ok=True)
    if chapters is None:  # a full build leaves no deck of a renamed or removed chapter behind
        for old in out.glob("*.slides.html"):
            old.unlink()
    copy_vendor(node_modules, out)
    slides = exporter()
    decks = []
    for path in notebooks:
        body, _ = slides.from_notebook_node(deck_notebook(path), resources={"metadata": {"name": path.stem}})
        deck = out / f"{path.stem}.slides.html"
        deck.write_text(body, encoding="utf-8")
        decks.append(deck)
    return decks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help=f"output directory (default {DECKS})")
    parser.add_argument("chapters", nargs="*", help="chapters to build (01, 01_caches, ...); default all")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        decks = build(args.out, args.chapters or None)
    except MissingTool as missing:
        print(f"build_decks: skipped, {missing}", file=sys.stderr)
        return 1
    except ValueError as bad:
        parser.error(str(bad))
    took = time.perf_counter() - start
    for deck in decks:
        print(f"  {deck}")
    print(f"build_decks: {len(decks)} deck(s) in {took:.1f} s; open one in a browser, `s` for the speaker notes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
