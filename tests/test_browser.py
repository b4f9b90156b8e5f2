"""Issue 14 in a real browser: the offline decks, the book and the live RISE slides, opened in a
headless Chromium (Debian's ``chromium``, driven by Playwright for Python: no browser download).

Every request that would leave this machine is blocked and recorded, and none may be attempted:
pages from the file system may load only files of this machine (and inline ``data:``/``blob:``
URLs), the RISE page only the JupyterLab server the test started on 127.0.0.1. Chromium also
resolves no host name (``--host-resolver-rules``), so nothing it does by itself reaches out either.

Screenshots of one deck, one book page and the RISE slide go to ``_build/screenshots/`` (deck.png,
book.png, rise.png). Without Chromium or Playwright these tests skip and say how to install them.
One browser serves the whole module; the decks and the book are built once per session by the
fixtures of conftest.py (tools/build_decks.py, tools/build_book.py).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import psutil
import pytest

from conftest import ROOT, load_tool

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright
except ImportError:  # the tests skip, saying how to install it
    sync_playwright = None

slides = load_tool("slides")

SCREENSHOTS = ROOT / "_build" / "screenshots"
CHAPTERS = [p.stem for p in slides.chapters()]
# The chapter whose deck, book page and RISE slide are photographed (the first with figures).
SHOWN = next((c for c in CHAPTERS if c.startswith("01_")), CHAPTERS[0])

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # Belt and braces: no host name resolves, so even a request the routes below never see (one
    # Chromium makes by itself) cannot leave the machine. The RISE server is reached by IP.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
# What a page opened from the file system may load: files of this machine (``file:///...``; a
# protocol-relative ``//cdn.host/x.js`` in such a page becomes ``file://cdn.host/x.js``, a remote
# reference, so a file URL with a host is not one of them) and inline data.
LOCAL_PREFIXES = ("file:///", "data:", "blob:", "about:")
# nbconvert's and myst-nb's choice among an output's formats: a PNG or JPEG is shown as an <img>
# unless the output also has one of these, which they prefer.
FIGURE_TYPES = ("image/png", "image/jpeg")
PREFERRED_TYPES = ("text/html", "image/svg+xml", "application/pdf")


# ---------------------------------------------------------------------------------------------
# What the notebooks say a page should show.

def notebook(stem: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)


def slide_type(cell) -> str:
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type", "-")


def deck_cells(nb) -> list:
    """The cells a deck is made of: tools/build_decks.py leaves out the ``nav`` cells."""
    return [c for c in nb.cells if "nav" not in c.get("metadata", {}).get("tags", [])]


def expected_slides(cells) -> int:
    """Reveal.js slides (vertical ones included) that nbconvert makes of ``cells``: the first
    cell that is neither ``skip`` nor ``notes`` opens one, then every ``slide`` and ``subslide``."""
    types = [slide_type(c) for c in cells]
    first = next(i for i, t in enumerate(types) if t not in ("skip", "notes"))
    return 1 + sum(t in ("slide", "subslide") for t in types[first + 1:])


def figures(cells) -> int:
    """Outputs shown as an image (a plot): a PNG or JPEG with no format preferred over it."""
    return sum(
        1
        for cell in cells if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if any(t in out.get("data", {}) for t in FIGURE_TYPES)
        and not any(t in out.get("data", {}) for t in PREFERRED_TYPES)
    )


def title(nb) -> str:
    return next(line[2:].strip() for c in nb.cells if c.cell_type == "markdown"
                for line in c.source.splitlines() if line.startswith("# "))


def plain_phrase(markdown: str) -> str:
    """The longest run of plain words in a markdown text: what its rendering shows verbatim."""
    return max(re.findall(r"[A-Za-z][A-Za-z ,;]+[A-Za-z]", markdown), key=len)


def squeeze(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------
# The browser, and contexts that block and record every request off the machine.

@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module; skips, saying how to install, when one is missing."""
    if sync_playwright is None:
        pytest.skip("the browser tests need Playwright for Python: `pip install playwright` "
                    "(`make setup` installs it); it drives the system's Chromium, no browser download")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("the browser tests need Chromium: `apt-get install chromium` (Debian, Ubuntu; "
                    ".ci/run installs it), or put another Chromium on PATH as `chromium`")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Offline:
    """A browser context where only URLs that ``allowed`` accepts load: every other request (and
    web socket) is aborted and its URL kept in :attr:`attempted`. Uncaught page errors are kept in
    :attr:`errors`."""

    def __init__(self, browser, allowed):
        self.allowed = allowed
        self.attempted: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 800},
                                           service_workers="block")
        self.context.route("**/*", self._request)
        self.context.route_web_socket(re.compile(".*"), self._socket)

    def _request(self, route):
        url = route.request.url
        if self.allowed(url):
            route.continue_()
        else:
            self.attempted.append(url)
            route.abort("blockedbyclient")

    def _socket(self, ws):
        if self.allowed(ws.url):
            ws.connect_to_server()
        else:
            self.attempted.append(ws.url)
            ws.close()

    def page(self):
        page = self.context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        return page

    def assert_offline(self, what: str):
        assert self.attempted == [], f"{what} tried to reach the network: {self.attempted}"


@pytest.fixture
def offline(browser):
    """Make :class:`Offline` contexts (``offline(allowed)``, default: the file system only);
    closed at the end of the test."""
    made = []

    def make(allowed=lambda url: url.startswith(LOCAL_PREFIXES)):
        made.append(Offline(browser, allowed))
        return made[-1]

    yield make
    for context in made:
        context.context.close()


# Every <img> of the page (or of `selector`), loaded eagerly and decoded: a broken one has no width.
IMAGES_JS = """async (selector) => Promise.all([...document.querySelectorAll(selector)].map(async (img) => {
    img.loading = "eager";
    try { await img.decode(); } catch (error) {}
    return {src: img.getAttribute("src").slice(0, 60), width: img.naturalWidth};
}))"""


def assert_images_loaded(page, selector: str, expected: int, where: str):
    images = page.evaluate(IMAGES_JS, selector)
    assert len(images) == expected, f"{where}: {len(images)} images, the notebook has {expected} figures"
    broken = [image["src"] for image in images if image["width"] == 0]
    assert broken == [], f"{where}: images that did not load: {broken}"


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path))
    return path


# ---------------------------------------------------------------------------------------------
# The offline decks.

# The first chapter with speaker notes: its deck's speaker view is opened (a popup window).
NOTED = next((s for s in CHAPTERS if any(slide_type(c) == "notes" for c in deck_cells(notebook(s)))), None)


def test_the_shown_chapter_has_a_next_one():
    """The book test follows "next" from SHOWN, so SHOWN must not be the last chapter."""
    assert SHOWN in CHAPTERS[:-1], CHAPTERS


@pytest.mark.parametrize("stem", CHAPTERS)
def test_deck_works_from_the_file_system(stem, built_decks, offline):
    deck = next((d for d in built_decks if d.name == f"{stem}.slides.html"), None)
    assert deck is not None, f"no deck for {stem} among {[d.name for d in built_decks]}"
    cells = deck_cells(notebook(stem))
    ctx = offline()
    page = ctx.page()
    page.goto(deck.as_uri())
    try:
        page.wait_for_function("() => window.Reveal && Reveal.isReady()", timeout=30_000)
    except PlaywrightTimeout:
        pytest.fail(f"reveal.js did not start in {deck.name} within 30 s; page errors: "
                    f"{ctx.errors}; blocked requests: {ctx.attempted}")

    assert page.evaluate("Reveal.getTotalSlides()") == expected_slides(cells)
    assert_images_loaded(page, "img", figures(cells), deck.name)

    # Speaker notes: one <aside class="notes"> per notes cell, shown by the notes plugin (the `s`
    # key's speaker view reads them with Reveal.getSlideNotes()) on the slide they belong to.
    notes = [c.source for c in cells if slide_type(c) == "notes"]
    assert page.evaluate("document.querySelectorAll('.reveal aside.notes').length") == len(notes)
    assert page.evaluate("Reveal.hasPlugin('notes')"), f"{deck.name}: no speaker view (notes plugin)"
    if notes:
        shown = page.evaluate("""() => {
            const slide = document.querySelector('.reveal aside.notes').closest('section');
            const at = Reveal.getIndices(slide);
            Reveal.slide(at.h, at.v);
            const notes = document.createElement('div');
            notes.innerHTML = Reveal.getSlideNotes() || '';
            return notes.textContent;
        }""")
        assert squeeze(plain_phrase(notes[0])) in squeeze(shown)
    if stem == NOTED:  # the `s` key opens the speaker view, which shows the notes of the slide
        with page.expect_popup() as opened:
            page.keyboard.press("s")
        speaker = opened.value
        speaker.wait_for_function("() => (document.querySelector('.speaker-controls-notes .value')"
                                  " || {}).textContent", timeout=15_000)
        notes_box = speaker.locator(".speaker-controls-notes .value")
        assert squeeze(plain_phrase(notes[0])) in squeeze(notes_box.text_content())
        speaker.close()

    if stem == SHOWN:  # the slide with the chapter's first figure
        page.evaluate("""() => {
            const at = Reveal.getIndices(document.querySelector('.reveal img').closest('section'));
            Reveal.slide(at.h, at.v);
        }""")
        page.wait_for_timeout(800)  # the slide transition
        screenshot(page, "deck.png")
    assert ctx.errors == [], ctx.errors
    ctx.assert_offline(deck.name)


def test_some_deck_has_speaker_notes():
    """The notes checks above are vacuous for a chapter without ``notes`` cells; the course as a
    whole must have some, or the speaker view is never tested."""
    assert NOTED is not None, "no chapter has a `notes` cell"


# ---------------------------------------------------------------------------------------------
# The book.

def test_book_landing_page_leads_to_a_chapter_and_the_next(built_book, offline):
    ctx = offline()
    page = ctx.page()
    page.goto((built_book / "index.html").as_uri())
    article = page.locator("article")
    for stem in CHAPTERS:
        assert article.locator(f'a[href="{stem}.html"]').count() > 0, f"no link to {stem} on the landing page"

    article.locator(f'a[href="{SHOWN}.html"]').first.click()
    page.wait_for_url(f"**/{SHOWN}.html")
    nb = notebook(SHOWN)
    assert title(nb) in page.locator("article h1").first.text_content()
    assert_images_loaded(page, "article img", figures(nb.cells), f"{SHOWN}.html")
    page.locator("article img").first.scroll_into_view_if_needed()
    screenshot(page, "book.png")

    following = CHAPTERS[CHAPTERS.index(SHOWN) + 1]
    page.locator("a.right-next").click()
    page.wait_for_url(f"**/{following}.html")
    assert title(notebook(following)) in page.locator("article h1").first.text_content()
    assert ctx.errors == [], ctx.errors
    ctx.assert_offline("the book")


def test_book_api_reference_documents_leaklab(built_book, offline):
    ctx = offline()
    page = ctx.page()
    page.goto((built_book / "index.html").as_uri())
    page.locator('a[href="api.html"]').first.click()
    page.wait_for_url("**/api.html")
    entry = page.locator('[id="leaklab.caches.LRUCache"]')
    assert entry.is_visible()
    # its docstring, rendered next to the signature
    assert len(squeeze(entry.locator("xpath=following-sibling::dd[1]").text_content())) > 40
    assert ctx.errors == [], ctx.errors
    ctx.assert_offline("the API reference")


def test_book_search_finds_a_class(built_book, offline):
    ctx = offline()
    page = ctx.page()
    page.goto((built_book / "search.html").as_uri() + "?q=LRUCache")
    results = page.locator("#search-results ul.search li a")
    results.first.wait_for(timeout=30_000)
    targets = {Path(href.split("#")[0]).name for href in
               (results.nth(i).get_attribute("href") for i in range(results.count()))}
    assert {"api.html", f"{SHOWN}.html"} <= targets, targets
    # Sphinx fetches each result page for a summary, which a browser refuses from file://.
    assert ctx.errors == [], (f"{ctx.errors[:2]}: the book's conf.py should set "
                              f"html_show_search_summary = False")
    ctx.assert_offline("the book's search")


# ---------------------------------------------------------------------------------------------
# Live slides: `make slides` started headless, RISE showing the chapter's first slide.

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str, timeout: float = 2):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def _stop(server: subprocess.Popen) -> list[psutil.Process]:
    """Stop the server and every process it started (its kernels); return any that survive."""
    try:
        started = psutil.Process(server.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        started = []
    server.terminate()  # JupyterLab shuts its kernels down on SIGTERM
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)
    _, alive = psutil.wait_procs(started, timeout=10)
    for process in alive:
        process.kill()
    _, alive = psutil.wait_procs(alive, timeout=5)
    return alive


@pytest.fixture
def jupyter_server(tmp_path):
    """The command ``make slides CHAPTER=<SHOWN>`` runs, headless on a free port of 127.0.0.1
    with a random token and private Jupyter settings/runtime directories; stopped (with its
    kernels) however the test ends. Yields (base URL, token, chapter path)."""
    if slides.missing_tools():
        pytest.skip(f"live slides need {', '.join(slides.missing_tools())}: run `make setup`")
    chapter = slides.resolve(SHOWN)
    port, token = _free_port(), secrets.token_hex(16)
    extra = ["--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]
    if os.geteuid() == 0:  # CI runs as root; JupyterLab refuses root without this
        extra.append("--allow-root")
    env = dict(os.environ)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR",
                 "JUPYTERLAB_WORKSPACES_DIR"):
        env[name] = str(tmp_path / name.lower())
    log = tmp_path / "jupyter.log"
    with open(log, "w") as out:
        server = subprocess.Popen(slides.command(chapter, extra=extra), stdout=out,
                                  stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited ({server.returncode}):\n{log.read_text()[-3000:]}")
            try:
                _get(f"{base}/api/status", token)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer in 90 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.25)
        yield base, token, chapter
    finally:
        left = _stop(server)
        assert left == [], f"processes of JupyterLab still running: {left}"


def test_rise_shows_the_first_slide_offline(offline, jupyter_server):
    base, token, chapter = jupyter_server
    ctx = offline(lambda url: url.startswith((f"{base}/", f"ws://{base[len('http://'):]}/")))
    page = ctx.page()
    page.goto(f"{base}{slides.rise_path(chapter)}?token={token}")
    present = page.locator(".reveal .slides > section.present")
    present.wait_for(timeout=60_000)
    # the first slide, headed by the chapter's title (textContent: the theme upper-cases it on screen)
    assert page.evaluate("document.querySelector('.reveal .slides > section').classList.contains('present')")
    heading = present.locator("h1").first
    assert heading.is_visible()
    assert title(notebook(SHOWN)) in heading.text_content()
    page.wait_for_timeout(500)  # the slide's layout settles
    screenshot(page, "rise.png")

    # a kernel runs behind the slides, so cells can be run during the talk
    deadline = time.monotonic() + 60
    while True:
        sessions = [s for s in _get(f"{base}/api/sessions", token) if s["path"] == chapter.name]
        state = sessions[0]["kernel"]["execution_state"] if sessions else None
        if state == "idle" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert state == "idle", f"no idle kernel for {chapter.name}: {sessions}"

    hint = ""
    if any("fonts.googleapis" in url for url in ctx.attempted):
        hint = f" ({slides.theme_warning(chapter)})"
    assert ctx.attempted == [], f"RISE tried to reach the network{hint}: {ctx.attempted}"
    assert ctx.errors == [], ctx.errors
