"""Why RSS can stay high after objects are freed (chapter 00).

Small objects (512 bytes or less) come from pymalloc, which carves 1 MiB arenas (64-bit builds)
into pools and gives an arena back to the system only when every object in it is gone. Larger
objects come from the C library's malloc, which keeps freed memory in its heap unless asked to
give it back (``malloc_trim(0)`` on glibc). Each function here runs in a fresh process under
``track_isolated`` and returns the RSS at each step, in MiB above the starting point.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import platform
import time

from leaklab.measure import rss_mib

SMALL = 1_000_000  # small dicts, about 250 MiB in all
LARGE = 300_000  # 1 KiB bytes objects, about 300 MiB in all


#: What a run keeps alive after it returns, so the RSS trace ends where the run left it.
KEPT: list[object] = []


def has_malloc_trim() -> bool:
    """True on glibc, where ``malloc_trim`` exists."""
    return platform.libc_ver()[0] == "glibc"


def _pause() -> None:
    time.sleep(0.05)  # lets the sampler see each step as a plateau


def small_objects(keep_every: int = 0) -> dict[str, float]:
    """Allocate ``SMALL`` small dicts, then free them all, or all but one in ``keep_every``."""
    base = rss_mib()
    objs = [{"i": i} for i in range(SMALL)]
    _pause()
    allocated = rss_mib() - base
    KEPT[:] = objs[::keep_every] if keep_every else []
    del objs
    gc.collect()
    _pause()
    after_free = rss_mib() - base
    return {"allocated": allocated, "after_free": after_free, "kept_objects": len(KEPT)}


def large_objects(trim: bool) -> dict[str, float]:
    """Allocate ``LARGE`` 1 KiB objects (from malloc), free all but one in 64, maybe trim."""
    base = rss_mib()
    objs = [bytes([i % 251]) * 1024 for i in range(LARGE)]  # distinct objects, pages written
    _pause()
    allocated = rss_mib() - base
    KEPT[:] = objs[::64]
    del objs
    gc.collect()
    _pause()
    after_free = rss_mib() - base
    after_trim = after_free
    if trim:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.malloc_trim(0)
        _pause()
        after_trim = rss_mib() - base
    return {"allocated": allocated, "after_free": after_free, "after_trim": after_trim,
            "kept_objects": len(KEPT)}
