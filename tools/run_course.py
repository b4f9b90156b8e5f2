"""Run the whole course: `make course`.

Executes every chapter notebook in a fresh kernel into ``_build/notebooks/`` (the committed
notebooks are never touched), exports each executed chapter to a self-contained HTML page with
its figures under ``_build/html/``, writes ``_build/index.html``, shows progress cell by cell,
prints a summary table (chapter, seconds, peak RSS, cells, asserts, budget) and exits 1 if any
chapter fails or breaks its memory budget.

A chapter's budget is in its notebook metadata: ``{"leaklab": {"budget_seconds": 30,
"budget_mib": 600}}``; peak RSS is the highest RSS of the kernel or of any one process it started
(isolated runs), sampled every 50 ms. Peak RSS is stable from run to run, so going over it fails
the run; time depends on the machine and its load, so going over it is only a WARNING.

With ``--deliver`` (what ``make course`` passes) it then builds, from the committed notebooks,
the three ways the course is used and prints where each is and how long it took: the book
(``_build/book/``, tools/build_book.py), the offline workshop decks (``_build/decks/``,
tools/build_decks.py; skipped, saying why, on a machine without Node.js and npm) and the student
workbook (``_build/exercises/``, tools/build_exercises.py).

Chapters are chosen by their two-digit number or their name (``00``, ``00_measuring_memory``);
an unknown one is an error. Ctrl-C (SIGINT) or SIGTERM stops the whole run at once: the kernel
and everything it started are ended, "interrupted" is printed, and the exit status is 130 for
SIGINT, 143 for SIGTERM (128 + the signal number, as a shell reports it).
"""

from __future__ import annotations

import argparse
import ast
import html
import importlib.util
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
BUILD = ROOT / "_build"
CHAPTER = re.compile(r"^\d\d_.+\.ipynb$")


@dataclass
class Result:
    name: str
    seconds: float
    peak_mib: float
    cells: int
    asserts: int
    error: str | None
    budget_seconds: float | None
    budget_mib: float | None

    @property
    def over_budget(self) -> list[str]:
        """Memory over budget: fails the run (peak RSS barely moves from one run to the next)."""
        over = []
        if self.budget_mib and self.peak_mib > self.budget_mib:
            over.append(f"{self.peak_mib:.0f} MiB > {self.budget_mib:.0f} MiB")
        return over

    @property
    def over_time(self) -> list[str]:
        """Time over budget: a warning only (it depends on the machine and its load)."""
        if self.budget_seconds and self.seconds > self.budget_seconds:
            return [f"{self.seconds:.1f} s > {self.budget_seconds:g} s"]
        return []


def count_asserts(nb: nbformat.NotebookNode) -> int:
    """Number of ``assert`` statements in the notebook's code cells (magics are skipped)."""
    total = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(
            line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))
        )
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        total += sum(isinstance(node, ast.Assert) for node in ast.walk(tree))
    return total


class KernelPeak:
    """Samples, in a background thread, the RSS of every process below this one (the kernel and
    whatever it starts) and keeps the highest RSS any one of them reached."""

    def __init__(self, period: float = 0.05) -> None:
        self.period = period
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            for child in me.children(recursive=True):
                try:
                    self.peak_mib = max(self.peak_mib, child.memory_info().rss / 2**20)
                except psutil.Error:
                    pass
            self._stop.wait(self.period)

    def __enter__(self) -> KernelPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_chapter(path: Path, timeout: int | None) -> Result:
    nb = nbformat.read(path, as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    meta = nb.metadata.get("leaklab", {})
    done = [0]
    tty = sys.stdout.isatty()

    def progress(cell: nbformat.NotebookNode, cell_index: int, **_: object) -> None:
        if cell.cell_type != "code":
            return
        done[0] += 1
        line = f"  {path.stem}: cell {done[0]}/{len(code_cells)}"
        if tty:
            print("\r" + line, end="", flush=True)
        elif done[0] % 10 == 0 or done[0] == len(code_cells):
            print(line, flush=True)

    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
        on_cell_executed=progress,
        # The kernel warns on stderr that it talks over unencrypted local TCP; only errors matter here.
        extra_arguments=["--log-level=ERROR"],
    )
    errors: list[str] = []

    def execute() -> None:
        try:
            client.execute()
        except CellExecutionError as exc:
            errors.append(str(exc).strip().splitlines()[-1] if str(exc).strip() else "cell failed")
        except BaseException as exc:  # a dead kernel, a timeout
            errors.append(f"{type(exc).__name__}: {exc}")

    # The notebook runs in a worker thread, so that signals stay with the main thread: there
    # nbclient installs no handler of its own (its handler shut the kernel down quietly, the
    # chapter was then reported as failed and the run went on), and ours raises Interrupted out
    # of the join below at once.
    start = time.perf_counter()
    with KernelPeak() as peak:
        worker = threading.Thread(target=execute, name=f"run {path.stem}", daemon=True)
        worker.start()
        worker.join()
    seconds = time.perf_counter() - start
    error = errors[0] if errors else None
    if tty:
        print()
    out_nb = BUILD / "notebooks" / path.name
    nbformat.write(nb, out_nb)
    body, _ = HTMLExporter(embed_images=True).from_notebook_node(nb)
    # In the HTML book, chapter links point at the exported pages and "Contents" at the index.
    body = re.sub(r'href="(\d\d_[^"/]+)\.ipynb"', r'href="\1.html"', body)
    body = body.replace('href="../README.md#chapters"', 'href="../index.html"')
    (BUILD / "html" / f"{path.stem}.html").write_text(body, encoding="utf-8")
    return Result(
        name=path.stem,
        seconds=seconds,
        peak_mib=peak.peak_mib,
        cells=len(code_cells),
        asserts=count_asserts(nb),
        error=error,
        budget_seconds=meta.get("budget_seconds"),
        budget_mib=meta.get("budget_mib"),
    )


def write_index(results: list[Result]) -> None:
    rows = "\n".join(
        f'<li><a href="html/{r.name}.html">{html.escape(r.name)}</a>'
        f"{' (failed)' if r.error else ''}</li>"
        for r in results
    )
    (BUILD / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>leaklab</title>"
        "<h1>leaklab: memory leaks in long-running Python processes</h1>"
        f"<ol>{rows}</ol>\n",
        encoding="utf-8",
    )


class Interrupted(BaseException):
    """Raised in the main thread by SIGINT or SIGTERM: the run stops."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def stop_children(grace: float = 3.0) -> None:
    """End every process below this one (kernels and whatever they started): SIGTERM, then
    SIGKILL for those still there after ``grace`` seconds."""
    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(children, timeout=grace)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)


def cell_timeout(text: str) -> int | None:
    """``--timeout``: a whole number of seconds > 0, or ``none`` for no limit."""
    if text.strip().lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of seconds (or 'none' for no limit)"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds > 0, got {value} (say --timeout none for no limit)"
        )
    return value


def select_chapters(parser: argparse.ArgumentParser, wanted: list[str]) -> list[Path]:
    """The chapters named in ``wanted`` (numbers such as ``00`` or names), all when it is empty."""
    paths = sorted(p for p in NOTEBOOKS.glob("*.ipynb") if CHAPTER.match(p.name))
    if not wanted:
        return paths

    def names(path: Path) -> set[str]:
        return {path.name.split("_", 1)[0], path.stem, path.name}

    unknown = [w for w in wanted if not any(w in names(p) for p in paths)]
    if unknown:
        parser.error(
            f"unknown chapter {', '.join(map(repr, unknown))}: give a chapter's two-digit number "
            f"or its name; the chapters are {', '.join(p.stem for p in paths) or '(none found)'}"
        )
    return [p for p in paths if any(w in names(p) for w in wanted)]


@dataclass
class Step:
    """One deliverable built after the chapters: where it went, how long it took, how it ended."""
    name: str
    seconds: float
    where: str
    status: str  # "ok", "skipped: ..." or "FAILED: ..."


def load_tool(name: str):
    """Import tools/<name>.py by path (run as a script or imported by the tests alike)."""
    spec = importlib.util.spec_from_file_location(f"leaklab_tool_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _where(built: object) -> str:
    first = built[0].parent if isinstance(built, list) and built else built
    try:
        return str(Path(first).resolve().relative_to(ROOT)) + "/"
    except (TypeError, ValueError):
        return str(first)


def build_deliverables() -> list[Step]:
    """The book, the decks and the workbook, each timed; a missing optional tool skips its step."""
    steps = []
    for name, tool, what in (("book", "build_book", "the book (Sphinx)"),
                             ("decks", "build_decks", "the offline reveal.js decks"),
                             ("exercises", "build_exercises", "the student workbook")):
        print(f"Building {what} ...", flush=True)
        start = time.perf_counter()
        module = load_tool(tool)
        try:
            where, status = _where(module.build()), "ok"
        except Exception as exc:  # noqa: BLE001 - reported in the summary, fails the run
            missing = getattr(module, "MissingTool", None)
            skipped = missing is not None and isinstance(exc, missing)
            where = "-"
            status = f"skipped: {exc}" if skipped else f"FAILED: {type(exc).__name__}: {exc}"
        steps.append(Step(name, time.perf_counter() - start, where, status))
        print(f"  {name}: {status.splitlines()[0]} ({steps[-1].seconds:.1f} s)", flush=True)
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*",
                        help="chapter numbers or names, e.g. 00 or 01_caches (default: all)")
    parser.add_argument("--timeout", type=cell_timeout, default=300,
                        help="seconds allowed per cell (default 300; 'none' for no limit)")
    parser.add_argument("--deliver", action="store_true",
                        help="then build the book, the offline decks and the student workbook")
    args = parser.parse_args(argv)
    paths = select_chapters(parser, args.chapters)
    (BUILD / "notebooks").mkdir(parents=True, exist_ok=True)
    (BUILD / "html").mkdir(parents=True, exist_ok=True)

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, _interrupt) for sig in handled}
    current = "the start"
    try:
        print(f"Running {len(paths)} chapter(s) into {BUILD.relative_to(ROOT)}/", flush=True)
        results = []
        for path in paths:
            current = path.stem
            results.append(run_chapter(path, args.timeout))
        steps = []
        if args.deliver:
            current = "the deliverables"
            steps = build_deliverables()
        current = "the summary"
        return summarize(results, steps)
    except Interrupted as exc:
        for sig in handled:  # a second Ctrl-C must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        stop_children()
        name = signal.Signals(exc.signum).name
        print(f"\ninterrupted by {name} during {current}: the run stopped, no kernel is left "
              f"(exit {128 + exc.signum})", flush=True)
        return 128 + exc.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def summarize(results: list[Result], steps: list[Step] = ()) -> int:
    """Write the index, print the summary tables; 1 if a chapter failed or broke its memory
    budget, or a deliverable failed to build (a skipped one, for want of an optional tool, is
    only reported)."""
    write_index(results)
    header = f"{'chapter':<28}{'seconds':>9}{'peak MiB':>10}{'cells':>7}{'asserts':>9}  status"
    print("\n" + header + "\n" + "-" * len(header))
    failed = False
    for r in results:
        notes = []
        if r.error:
            notes.append(f"FAILED: {r.error}")
            failed = True
        if r.over_budget:
            notes.append("OVER BUDGET: " + "; ".join(r.over_budget))
            failed = True
        if r.over_time:
            notes.append("WARNING: slower than its budget, " + "; ".join(r.over_time)
                         + " (time depends on the machine)")
        status = "; ".join(notes) if notes else "ok"
        print(f"{r.name:<28}{r.seconds:>9.1f}{r.peak_mib:>10.0f}{r.cells:>7}{r.asserts:>9}  {status}")
    print(f"\nExecuted chapters: {(BUILD / 'notebooks').relative_to(ROOT)}/, "
          f"as HTML pages: {(BUILD / 'index.html').relative_to(ROOT)}")
    if steps:
        print(f"\n{'built':<12}{'seconds':>9}  {'where':<22}status")
        for step in steps:
            print(f"{step.name:<12}{step.seconds:>9.1f}  {step.where:<22}{step.status}")
            failed = failed or step.status.startswith("FAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
