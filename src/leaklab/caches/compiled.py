"""The optional compiled core of LRUCache (chapter 01): whether it is there, and what it holds.

``_core.c`` beside this file is built as ``leaklab.caches._core`` when a C compiler is there at
install time. Its ``CacheCore`` type is then the base class of :class:`LRUCache` and holds, in C
slots, the attributes its code reads. It does only what an exact LRU cache cannot do without, in
one C call instead of a Python frame around a few C calls: ``get`` for a plain hit or miss, and
``set`` for a new key in the two commonest configurations (``fast.py`` puts them in place). Every
other case it hands to the Python methods (``_get_slow``, ``_set_slow``), which are the whole
implementation where it is missing.

:data:`COMPILED` tells which is in use; the environment variable ``LEAKLAB_PURE_PYTHON=1`` turns
the core off, and the tests run every behaviour both ways.
"""

from __future__ import annotations

import os
from typing import Any

from .locking import _READS_TAKE_LOCK


def _load_core() -> Any:
    """The compiled core (``leaklab.caches._core``), or None to run everything in Python.

    None when the extension was not built (no C compiler at install time), on a free-threaded
    build (its reads are lock-free, which is only safe under the GIL), or when the environment
    variable ``LEAKLAB_PURE_PYTHON`` is set to a non-empty value (the tests run both paths).
    """
    if _READS_TAKE_LOCK or os.environ.get("LEAKLAB_PURE_PYTHON"):
        return None
    try:
        from . import _core
    except ImportError:
        return None
    return _core


_core = _load_core()
COMPILED: bool = _core is not None
"""Whether :class:`LRUCache` reads through the compiled ``get`` of ``leaklab.caches._core``."""

_CORE_BASES: tuple[type, ...] = (_core.CacheCore,) if _core is not None else ()


def _slots_beside_core(names: tuple[str, ...]) -> tuple[str, ...]:
    """The ``__slots__`` LRUCache declares: ``names`` less those its compiled base holds."""
    return tuple(name for name in names if not any(hasattr(b, name) for b in _CORE_BASES))
