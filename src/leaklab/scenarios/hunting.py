"""Helpers for chapter 06's hunt: a chain of references read as a path, the line a piece of
code is on, and a regression test run by pytest in a fresh process.

**Reading a chain.** ``objgraph.find_backref_chain(obj, objgraph.is_proper_module)`` returns
the shortest chain of references from a module to ``obj``: a list that starts with the module, in which each object
refers to the next. Printed as it is, it is a list of reprs, long and full of addresses.
:func:`path_steps` names each hop instead (``.bus``, ``['config_changed']``, ``[41]``,
``.__self__``), so the chain reads as the expression that reaches the object::

    leaklab.scenarios.mystery_service.bus._handlers['config_changed'][41].__self__

A namespace in the chain (a module's or an instance's ``__dict__``) is folded into the attribute
it holds, so the text does not depend on whether this Python version keeps an instance's
attributes in a separate dict (3.11-3.13 differ).

**Where a line is.** :func:`line_of` finds the line of a function that contains some text, so
that a chapter can check that a report names the line it should, whatever the line's number.

**Running a test file.** :func:`run_pytest` writes test files to a temporary folder of their own
and runs ``python -m pytest`` on them in a fresh process, with leaklab's pytest plugin; it returns
each file's outcome and, for a test marked ``no_leak``, the bytes per call that the plugin
recorded.

**A picture.** :func:`draw_chain` draws a chain with graphviz where it is installed.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import tempfile
import types
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["path_steps", "reference_path", "line_of", "TestFileResult", "run_pytest", "draw_chain"]


def _namespace_of(obj: Any) -> Any:
    """``obj.__dict__`` if it has one, read without triggering anything; else None."""
    try:
        return object.__getattribute__(obj, "__dict__")
    except (AttributeError, TypeError):
        return None


def _key_of(mapping: Any, child: Any) -> Any:
    for key, value in list(mapping.items()):
        if value is child:
            return key
    raise LookupError


def _hop(parent: Any, child: Any, namespace: bool) -> str:
    """How ``parent`` refers to ``child``, as a piece of a Python expression."""
    try:
        if namespace:  # parent is the __dict__ of the object before it
            return f".{_key_of(parent, child)}"
        if isinstance(parent, dict):
            return f"[{_key_of(parent, child)!r}]"
        if isinstance(parent, (list, tuple)):
            return f"[{next(i for i, item in enumerate(parent) if item is child)}]"
        if isinstance(parent, types.MethodType):
            return ".__self__" if parent.__self__ is child else ".__func__"
        if isinstance(parent, types.CellType):
            return ".cell_contents"
        if isinstance(parent, types.FunctionType) and parent.__closure__ is child:
            return ".__closure__"
        attrs = _namespace_of(parent)
        if isinstance(attrs, dict):  # an instance whose attributes are not a separate object here
            return f".{_key_of(attrs, child)}"
    except (LookupError, StopIteration):
        pass
    return f" -> <{type(child).__name__}>"


def path_steps(chain: Sequence[Any]) -> list[tuple[str, str]]:
    """``[(hop, type name), ...]`` for a chain that starts at a module: the module's name first,
    then how each object is reached from the one before, namespaces (``__dict__``) folded in."""
    if not chain or not isinstance(chain[0], types.ModuleType):
        raise ValueError("chain must start with a module (objgraph.find_backref_chain with "
                         "objgraph.is_proper_module)")
    steps = [(chain[0].__name__, "module")]
    namespace = False
    for parent, child in zip(chain, chain[1:]):
        if _namespace_of(parent) is child and isinstance(child, dict):
            namespace = True  # read the next hop as an attribute of parent
            continue
        steps.append((_hop(parent, child, namespace), type(child).__name__))
        namespace = False
    return steps


def reference_path(chain: Sequence[Any]) -> str:
    """The chain as one expression: ``module.attr[key][index].__self__``."""
    return "".join(hop for hop, _ in path_steps(chain))


# --------------------------------------------------------------------------- where a line is


def line_of(function: Callable[..., Any], text: str) -> tuple[str, int]:
    """``(file name, line number)`` of the first line of ``function``'s source that contains
    ``text``; ValueError when none does."""
    lines, first = inspect.getsourcelines(function)
    for i, line in enumerate(lines):
        if text in line:
            return inspect.getsourcefile(function) or "", first + i
    raise ValueError(f"no line of {function.__qualname__} contains {text!r}")


# --------------------------------------------------------------------------- running a test file


class TestFileResult(NamedTuple):
    """What pytest said about one test file (of one test)."""

    outcome: str  # "passed", "failed" or "skipped"
    bytes_per_call: float | None  # recorded by the no_leak marker; None without it
    message: str  # the failure's message ("" when it passed)

    __test__ = False  # not a test class, whatever pytest thinks of its name


def _plugin_args() -> list[str]:
    """Installing leaklab registers its plugin (entry point ``leaklab``); an install made before
    the entry point existed lacks it, and then the plugin is named on the command line."""
    registered = any(ep.name == "leaklab" for ep in entry_points(group="pytest11"))
    return [] if registered else ["-p", "leaklab.pytest_plugin"]


def run_pytest(tests: Mapping[str, str], *, timeout: float = 300) -> dict[str, TestFileResult]:
    """Write ``{file name: source}`` to a temporary folder with an empty ``pytest.ini`` (so no
    settings of the surrounding project apply), run ``python -m pytest`` there in a fresh process
    and return each file's :class:`TestFileResult`, in the order given. RuntimeError when pytest
    could not run the tests (an exit code other than 0, all passed, or 1, some failed)."""
    if not tests or not all(isinstance(n, str) and n.startswith("test_") and n.endswith(".py")
                            for n in tests):
        raise ValueError(f"tests must map file names test_*.py to sources, got {list(tests)!r}")
    with tempfile.TemporaryDirectory() as folder:
        for name, source in tests.items():
            Path(folder, name).write_text(source)
        Path(folder, "pytest.ini").write_text("[pytest]\n")
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *_plugin_args(),
             "--junitxml=results.xml"],
            cwd=folder, capture_output=True, text=True, timeout=timeout,
        )
        if run.returncode not in (0, 1):
            raise RuntimeError(f"pytest exited with code {run.returncode}:\n{run.stdout[-3000:]}"
                               f"{run.stderr[-3000:]}")
        found: dict[str, TestFileResult] = {}
        for case in ET.parse(Path(folder, "results.xml")).iter("testcase"):
            failure = case.find("failure")
            if failure is None:
                failure = case.find("error")
            skipped = case.find("skipped") is not None
            kept = [float(p.get("value", "nan")) for p in case.iter("property")
                    if p.get("name") == "leak_bytes_per_call"]
            outcome = "failed" if failure is not None else "skipped" if skipped else "passed"
            found[case.get("classname", "").rpartition(".")[2] + ".py"] = TestFileResult(
                outcome, kept[0] if kept else None,
                "" if failure is None else failure.get("message", ""))
    return {name: found[name] for name in tests if name in found}


# --------------------------------------------------------------------------- a picture of a chain


def draw_chain(chain: Sequence[Any]) -> Any:
    """The chain as a graphviz picture (``objgraph.show_chain``), or None where graphviz (the
    ``dot`` program and the ``graphviz`` Python package) is not installed."""
    import importlib.util
    import io
    import shutil

    if not (shutil.which("dot") and importlib.util.find_spec("graphviz")):
        return None
    import graphviz
    import objgraph

    dot = io.StringIO()
    objgraph.show_chain(list(chain), output=dot)
    return graphviz.Source(dot.getvalue())
