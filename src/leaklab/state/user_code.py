"""Which modules are user code: what :class:`~leaklab.state.GlobalsWatch` watches by default.

Chapter 03's watch looks for the global that grows in *your* modules, not in the standard library
or in site-packages. :func:`is_user_module` decides, reading each module's ``__dict__`` through the
module type's own descriptor, so that deciding never imports, never calls a module's
``__getattr__`` and never loads a lazy module.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
import types
from importlib.machinery import ModuleSpec
from typing import Any

# Read straight from the type, so that a module's own __getattribute__ / __getattr__ (lazy
# modules, PEP 562) never runs.
_MODULE_DICT = types.ModuleType.__dict__["__dict__"]

_USER_PACKAGES = frozenset({"leaklab"})  # always user code, even if installed non-editable
_STDLIB_NAMES = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names)


def _is(obj: object, cls: type | tuple[type, ...]) -> bool:
    """``isinstance`` by the real type only.

    ``isinstance`` itself falls back to reading ``obj.__class__`` when the type does not match,
    and on a lazy module that attribute access is what loads it.
    """
    return issubclass(type(obj), cls)


def _excluded_roots() -> tuple[str, ...]:
    """Directories whose modules are not user code: the standard library and site-packages."""
    paths: set[str] = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            paths.add(path)
    for getter in ("getsitepackages", "getusersitepackages"):
        fn = getattr(site, getter, None)  # absent in some embedded or virtualenv builds
        if fn is None:
            continue
        try:
            found = fn()
        except Exception:
            continue
        paths.update([found] if isinstance(found, str) else found)
    for entry in sys.path:  # conda, distro pythons, pip --target: by convention of the name
        if isinstance(entry, str) and os.path.basename(entry) in ("site-packages", "dist-packages"):
            paths.add(entry)
    roots: set[str] = set()
    for path in paths:
        for variant in (os.path.abspath(path), os.path.realpath(path)):
            roots.add(os.path.join(os.path.normcase(variant), ""))  # trailing separator
    return tuple(sorted(roots))


def _module_paths(namespace: dict[str, Any]) -> list[str]:
    """Where a module was loaded from, read from its namespace without triggering anything."""
    file = namespace.get("__file__")
    if _is(file, str):
        return [file]
    spec = namespace.get("__spec__")
    if not issubclass(type(spec), ModuleSpec):
        return []
    try:
        origin = spec.origin
        locations = spec.submodule_search_locations
    except Exception:
        return []
    if _is(origin, str) and os.path.isabs(origin):
        return [origin]
    if locations is not None and not _is(locations, list):
        # A namespace package's _NamespacePath recomputes itself when iterated; read its
        # last computed value instead (a private attribute, so be ready for it to be missing).
        try:
            locations = vars(locations).get("_path")
        except Exception:
            return []
    if not _is(locations, list):
        return []
    return [p for p in locations if _is(p, str)]


def is_user_module(name: str, module: types.ModuleType,
                   roots: tuple[str, ...] | None = None) -> bool:
    """True if ``module``, registered in ``sys.modules`` as ``name``, is user code.

    Not user code: a top-level name in ``sys.stdlib_module_names`` or
    ``sys.builtin_module_names`` (``builtins`` included), and modules whose files all lie under
    the standard library or a site-packages directory (``roots``, computed when not given: the
    ``sysconfig`` paths, ``site``'s directories, and ``sys.path`` entries named site-packages or
    dist-packages). ``leaklab`` counts as user code wherever it is installed. A module with no
    file belongs where its top-level package does; without one (``__main__`` in a REPL or a
    notebook, a ``types.ModuleType`` built at run time) it is user code, except Cython's runtime
    modules (``cython_runtime``, ``_cython_*``).
    """
    top = name.partition(".")[0]
    if top in _USER_PACKAGES:
        return True
    if top in _STDLIB_NAMES:
        return False
    if roots is None:
        roots = _excluded_roots()
    try:
        namespace = _MODULE_DICT.__get__(module)
    except Exception:
        return False
    if not _is(namespace, dict):
        return False
    paths = _module_paths(namespace)
    if paths:
        return not all(os.path.normcase(p).startswith(roots) for p in paths)
    # No file: a submodule made at run time belongs where its top-level package does
    # (six.moves...); Cython's runtime modules belong to the compiled library that made them.
    if top != name:
        parent = sys.modules.get(top)
        if _is(parent, types.ModuleType):
            return is_user_module(top, parent, roots)
    return not (name == "cython_runtime" or name.startswith("_cython_"))
