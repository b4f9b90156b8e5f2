"""Sphinx configuration of the course book (``make book``, run by tools/build_book.py).

The book is the course as executable documentation: every chapter from its committed notebook,
with the outputs and figures that strict nbval checks (not executed again), a landing page, and
an API reference generated from leaklab's docstrings. It must build and read with no network:
no CDN scripts, no web fonts, no buttons that reach a service; any warning fails the build.

tools/build_book.py copies this directory and the chapter notebooks into
``_build/book-work/source/`` and builds from there, so nothing is written into the repository.
"""

from __future__ import annotations

import inspect

project = "leaklab"
author = "the leaklab authors"
copyright = "the leaklab authors"
html_title = "leaklab: memory leaks in long-running Python"

extensions = [
    "myst_nb",  # notebooks and Markdown pages (it sets up myst_parser itself)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # leaklab's docstrings use Google-style sections (Args:, Raises:)
    "sphinx.ext.viewcode",  # each documented name links to its source, a page of the book
]

root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# --- Chapters: rendered from their committed outputs, never executed again ------------------
nb_execution_mode = "off"
nb_merge_streams = True  # one block per cell for its printed output, as Jupyter shows it
nb_ipywidgets_js = {}  # its default loads require.js and the widget manager from CDNs
myst_heading_anchors = 2  # so that the chapters' link index.md#chapters finds its heading

# --- API reference ------------------------------------------------------------------------
# Each module is documented by its public name with :members:, which follows the module's
# __all__, so a module that becomes a package re-exporting its names keeps the same page.
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"  # each module's own order: the data structure, then its API
autodoc_typehints = "description"
autodoc_inherit_docstrings = False  # leaklab's own words, not those of the classes it extends
autosummary_generate = False  # the summary table links to the entries on the same page
add_module_names = False
napoleon_numpy_docstring = False
napoleon_custom_sections = [("Behaviour", "notes_style")]


def _public_and_own(app, what, name, obj, skip, options):
    """Which members the reference shows.

    - Every function and class in a module's ``__all__`` (the only members autodoc offers for a
      module that has one), even one without a docstring. A constant needs a ``#:`` comment or a
      docstring under it in the public module itself (a package's ``__init__.py``): that is
      where autodoc reads it, and without one Sphinx cannot show it at all.
    - Only what leaklab defines: not, say, the ``set`` that matplotlib generates on every Artist
      subclass (``leaklab.plot.CourseFigure``), written in matplotlib's own roles. A type alias
      (``leaklab.caches.DisposeReason``) counts as defined where it is named.
    """
    if inspect.isroutine(obj) or inspect.isclass(obj):
        module = getattr(obj, "__module__", None)
        if isinstance(module, str) and module.partition(".")[0] != "leaklab":
            return True
    return False if what == "module" else None


def setup(app):
    app.connect("autodoc-skip-member", _public_and_own)


# --- HTML, offline ------------------------------------------------------------------------
# The theme's scripts, styles and icon font are files in _static/. There are no maths in the
# chapters, so Sphinx emits no MathJax (which it would load from a CDN, on a page with an
# equation): a page that gains one fails tools/build_book.py's offline check, naming the URL.
html_theme = "sphinx_book_theme"
# Search results list page titles only: the summaries are fetched per page, which the
# browser blocks from file:// and which would print errors in the console.
html_show_search_summary = False
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,  # the API reference lists its modules in the page's contents
    "use_download_button": True,  # the page's source, a file in _sources/
    "use_fullscreen_button": True,
    # Everything that would reach a service stays off: no launch (Binder, Colab) buttons, no
    # repository, issue, edit or source buttons.
    "launch_buttons": {},
    "use_repository_button": False,
    "use_issues_button": False,
    "use_edit_page_button": False,
    "use_source_button": False,
}
html_show_sourcelink = False
