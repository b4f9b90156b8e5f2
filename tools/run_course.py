"""Run the whole course: `make course`.

Executes every chapter notebook in a fresh kernel into ``_build/notebooks/`` (the committed
notebooks are never touched), exports each executed chapter to a self-contained HTML page with
its figures under ``_build/html/``, writes ``_build/index.html``, shows progress cell by cell,
prints a summary table (chapter, seconds, peak RSS, cells, asserts, budget) and exits non-zero if
any chapter fails or breaks its budget.

A chapter's budget is in its notebook metadata: ``{"leaklab": {"budget_seconds": 30,
"budget_mib": 600}}``; peak RSS is the highest RSS of the kernel or of any one process it started
(isolated runs), sampled every 50 ms.
"""

from __future__ import annotations

import argparse
import ast
import html
import re
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
        over = []
        if self.budget_seconds and self.seconds > self.budget_seconds:
            over.append(f"{self.seconds:.0f} s > {self.budget_seconds:.0f} s")
        if self.budget_mib and self.peak_mib > self.budget_mib:
            over.append(f"{self.peak_mib:.0f} MiB > {self.budget_mib:.0f} MiB")
        return over


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


def run_chapter(path: Path, timeout: int) -> Result:
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
    error = None
    start = time.perf_counter()
    with KernelPeak() as peak:
        try:
            client.execute()
        except CellExecutionError as exc:
            error = str(exc).strip().splitlines()[-1] if str(exc).strip() else "cell failed"
        except Exception as exc:  # a dead kernel, a timeout
            error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapter numbers or names (default: all)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds allowed per cell")
    args = parser.parse_args(argv)

    paths = sorted(p for p in NOTEBOOKS.glob("*.ipynb") if CHAPTER.match(p.name))
    if args.chapters:
        paths = [p for p in paths if any(p.name.startswith(c) or p.stem == c for c in args.chapters)]
        if not paths:
            parser.error(f"no chapter matches {args.chapters}")
    (BUILD / "notebooks").mkdir(parents=True, exist_ok=True)
    (BUILD / "html").mkdir(parents=True, exist_ok=True)

    print(f"Running {len(paths)} chapter(s) into {BUILD.relative_to(ROOT)}/")
    results = [run_chapter(p, args.timeout) for p in paths]
    write_index(results)

    header = f"{'chapter':<28}{'seconds':>9}{'peak MiB':>10}{'cells':>7}{'asserts':>9}  status"
    print("\n" + header + "\n" + "-" * len(header))
    failed = False
    for r in results:
        status = "ok"
        if r.error:
            status, failed = f"FAILED: {r.error}", True
        elif r.over_budget:
            status, failed = "OVER BUDGET: " + "; ".join(r.over_budget), True
        print(f"{r.name:<28}{r.seconds:>9.1f}{r.peak_mib:>10.0f}{r.cells:>7}{r.asserts:>9}  {status}")
    print(f"\nHTML: {(BUILD / 'index.html').relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
