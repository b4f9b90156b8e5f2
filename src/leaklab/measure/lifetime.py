"""Helper processes that end with the process that started them (plumbing for every chapter).

Neither the sampler (memory_profiler forks one per :func:`~leaklab.measure.track` run) nor the
child of :func:`~leaklab.measure.track_isolated` may outlive the process that started it: killed
kernels and interrupted runs left them behind. :func:`end_with_parent` is the rule both follow;
the fork hook below applies it to the sampler, which leaklab does not start itself.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

_PR_SET_PDEATHSIG = 1
_prctl: Any = None  # libc's prctl once loaded; False where there is none


def _load_prctl() -> Any:
    """libc's ``prctl`` on Linux (loaded once, before any fork that needs it), else None."""
    global _prctl
    if _prctl is None:
        _prctl = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                fn = ctypes.CDLL(None, use_errno=True).prctl
                fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                               ctypes.c_ulong]
                fn.restype = ctypes.c_int
                _prctl = fn
            except (OSError, AttributeError):
                pass
    return _prctl or None


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGKILL)


def end_with_parent(parent_pid: int) -> None:
    """Make this process end (SIGKILL) as soon as ``parent_pid``, its parent, ends.

    On Linux the kernel does it (``prctl(PR_SET_PDEATHSIG)``), even while this process runs C
    code; elsewhere a daemon thread checks ``os.getppid()`` five times a second.
    """
    prctl = _load_prctl()
    if prctl is not None and prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
        if os.getppid() != parent_pid:  # the parent ended before the request was made
            os.kill(os.getpid(), signal.SIGKILL)
        return
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True,
                     name="leaklab-parent-watch").start()


# Threads (by ident) about to fork memory_profiler's sampler, with the pid of their process.
_sampler_forks: dict[int, int] = {}


def _after_fork() -> None:
    """In a new child: if it is the sampler (forked by a thread that is starting one), it ends
    with its parent, and ignores Ctrl-C: a terminal sends SIGINT to the whole process group,
    and a sampler killed by it left its parent waiting forever for the samples. The parent gets
    the KeyboardInterrupt and stops the sampler itself."""
    parent = _sampler_forks.get(threading.get_ident())
    _sampler_forks.clear()
    if parent is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        end_with_parent(parent)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
