"""Why RSS can stay high after objects are freed (chapter 00).

Small objects (512 bytes or less) come from pymalloc, which carves 1 MiB arenas (64-bit builds)
into pools and gives an arena back to the system only when every object in it is gone. Larger
objects come from the C library's malloc, which keeps freed memory in its heap unless asked to
give it back (``malloc_trim(0)`` on glibc, the GNU C library most Linux distributions use). Each
function here runs in a fresh process under ``track_isolated`` and returns the RSS after each
step, in MiB above the starting point.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import platform
import time
from collections.abc import Callable
from typing import Any

from leaklab.measure import rss_mib

SMALL = 300_000  # small dicts, about 70 MiB in all
LARGE = 100_000  # 1 KiB bytes objects, about 100 MiB in all


#: What a run keeps alive after it returns, so the RSS trace ends where the run left it.
KEPT: list[object] = []


def has_malloc_trim() -> bool:
    """True on glibc, where ``malloc_trim`` exists."""
    return platform.libc_ver()[0] == "glibc"


def _pause() -> None:
    time.sleep(0.05)  # lets the sampler see each step as a plateau


def _trim(base: float) -> float:
    """Ask glibc's malloc to give its free pages back; return RSS above ``base`` after it."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc_trim(0)
    _pause()
    return rss_mib() - base


def _allocate_and_free(make: Callable[[], list[Any]], keep_every: int,
                       trim: bool) -> dict[str, float | None]:
    """Allocate ``make()``, then free it all, or all but one object in ``keep_every``; with
    ``trim``, call ``malloc_trim(0)`` after. The steps both functions below measure."""
    base = rss_mib()
    objs = make()
    _pause()
    allocated = rss_mib() - base
    KEPT[:] = objs[::keep_every] if keep_every else []
    del objs
    gc.collect()
    _pause()
    after_free = rss_mib() - base
    after_trim = _trim(base) if trim else None
    return {"allocated": allocated, "after_free": after_free, "after_trim": after_trim}


def small_objects(keep_every: int = 0, trim: bool = False,
                  count: int = SMALL) -> dict[str, float | None]:
    """Allocate ``count`` small dicts, then free them all, or all but one in ``keep_every``;
    with ``trim``, call ``malloc_trim(0)`` after (it cannot give back pymalloc's arenas).

    Returns ``allocated``, ``after_free`` and ``after_trim`` (None without ``trim``), MiB.
    """
    return _allocate_and_free(lambda: [{"i": i} for i in range(count)], keep_every, trim)


def large_objects(trim: bool = True, count: int = LARGE) -> dict[str, float | None]:
    """Allocate ``count`` 1 KiB objects (from malloc), free all but one in 64, then, with
    ``trim``, call ``malloc_trim(0)``.

    Returns ``allocated``, ``after_free`` and ``after_trim`` (None without ``trim``), MiB.
    """
    # distinct objects, pages written
    return _allocate_and_free(lambda: [bytes([i % 251]) * 1024 for i in range(count)], 64, trim)
