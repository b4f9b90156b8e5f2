"""pyproject.toml is the one list of dependencies; environment.yml must install the same; the
C extension stays optional."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    name = re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _constraint(requirement: str) -> str:
    return re.sub(r"^[A-Za-z0-9_.-]+", "", requirement)


def _pyproject() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {_name(r): r.replace(" ", "") for r in data["project"]["dependencies"]}


def _environment() -> tuple[dict[str, str], list[str]]:
    conda, pip, in_pip = {}, [], False
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("\ndependencies:", 1)[1].splitlines():
        stripped = line.strip()
        if stripped.startswith("- pip:"):
            in_pip = True
            continue
        if not stripped.startswith("- "):
            continue
        item = stripped[2:].strip()
        if in_pip:
            pip.append(item)
        elif _name(item) not in ("python", "pip"):
            conda[_name(item)] = item.replace(" ", "")
    return conda, pip


# conda-forge's names for packages whose PyPI name differs.
CONDA_NAMES = {"redis-py": "redis"}


def test_environment_yml_lists_the_same_packages_and_versions_as_pyproject():
    conda, pip = _environment()
    assert pip[-1] == "-e ."
    # Packages conda-forge does not carry come from PyPI, in environment.yml's pip section.
    from_pip = {_name(item): item.replace(" ", "") for item in pip[:-1]}
    listed = {CONDA_NAMES.get(name, name): spec for name, spec in conda.items()} | from_pip
    assert listed.keys() == _pyproject().keys()
    for name, spec in _pyproject().items():
        # Same version constraint (conda-forge spells some names with '_', e.g. memory_profiler).
        assert _constraint(listed[name]) == _constraint(spec), (name, listed[name], spec)


def test_supported_pythons_agree():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["project"]["requires-python"] == ">=3.11,<3.14"
    assert "python>=3.11,<3.14" in (ROOT / "environment.yml").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make course" in readme
    assert "make test" in ci


def _wheel_files(tmp_path: Path, env: dict[str, str]) -> list[str]:
    """Build leaklab's wheel from a copy of the sources (no stale build/ around) and list it."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(src)],
        check=True, env=env, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = out.glob("leaklab-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_install_without_a_c_compiler_still_works(tmp_path: Path) -> None:
    """The compiled LRUCache paths are optional: a failing compiler must not fail the install."""
    env = {**os.environ, "CC": "false", "LDSHARED": "false"}
    files = _wheel_files(tmp_path, env)
    assert {"leaklab/caches/__init__.py", "leaklab/caches/lru.py"} <= set(files)
    assert not [f for f in files if f.endswith(".so")], files
