"""Session-wide checks: whatever the tests start, they stop."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent

SERVERS = ("valkey-server", "memcached")


@pytest.fixture(scope="session", autouse=True)
def no_server_outlives_the_session():
    """No Valkey or memcached server started by a test is still running when the session ends."""
    yield
    left = [p for p in psutil.Process().children(recursive=True) if p.name() in SERVERS]
    assert left == [], f"servers left running after the tests: {left}"


def load_tool(name: str):
    """Import ``tools/<name>.py`` by path (tools/ is not a package a learner installs)."""
    module_name = f"leaklab_tool_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def built_book() -> Path:
    """The book built once per session from the committed notebooks into _build/book/."""
    return load_tool("build_book").build()


@pytest.fixture(scope="session")
def built_decks() -> list[Path]:
    """The offline reveal.js decks built once per session into _build/decks/; skips (saying how
    to install what is missing) on a machine without the npm assets."""
    decks = load_tool("build_decks")
    try:
        return decks.build()
    except decks.MissingTool as missing:
        pytest.skip(str(missing))
