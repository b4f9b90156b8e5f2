"""What the operating system charges the process now: its resident set size (chapter 00).

RSS is every page of the process that sits in RAM (Python objects, C libraries, allocator slack),
the number the out-of-memory killer looks at. Chapter 00 compares it with what tracemalloc and
object counts see; every other measuring tool of :mod:`leaklab.measure` is built on it.
"""

from __future__ import annotations

import os
import resource
import sys

import psutil

MIB = 1024 * 1024
_process_handle: psutil.Process | None = None


def _this_process() -> psutil.Process:
    """psutil's handle on the process running now, made again after a fork (a handle made before
    the fork would go on reading the parent)."""
    global _process_handle
    handle = _process_handle
    if handle is None or handle.pid != os.getpid():
        handle = _process_handle = psutil.Process()
    return handle


def rss_mib() -> float:
    """The current process's resident set size, in MiB."""
    return _this_process().memory_info().rss / MIB


def peak_rss_mib() -> float:
    """The highest RSS this process has had since it started, in MiB (``ru_maxrss``)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return kib / (MIB if sys.platform == "darwin" else 1024)
