"""A server that leaks 1 KiB per request, and the same server fixed (chapter 00).

``handle_leaky`` keeps every request body in a module-level list, as a forgotten "history" does;
``handle_fixed`` keeps only the last 100. Chapter 00 uses the pair four ways:

- :func:`run_with_limit` serves requests in a child process whose address space is capped with
  ``resource.setrlimit(RLIMIT_AS, ...)``: the leaky server dies with ``MemoryError`` once its
  bodies fill the limit, the fixed one serves on. This is the symptom, for real and in a second
  (Linux enforces ``RLIMIT_AS``; macOS does not, and there the leaky child simply finishes).
- :func:`serve` serves requests and reports :func:`leaklab.measure.progress`, so that
  ``track_isolated(serve, ...)`` draws RSS per request in a fresh process.
- tracemalloc snapshots taken around :func:`serve` name the line that allocated the kept bodies.
- ``serve(..., freed_first_mib=32)`` first leaves 32 MiB of freed chunks in malloc's heap, which the
  leak then reuses: RSS stays flat until that free memory is used up.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from leaklab.measure import progress

MIB = 1024 * 1024

#: Every body the leaky handler has seen: it only grows.
HISTORY: list[bytes] = []
#: The last 100 bodies the fixed handler has seen.
RECENT: deque[bytes] = deque(maxlen=100)
#: What :func:`serve` keeps so that the heap cannot shrink under the chunks it freed.
PINNED: list[bytes] = []


def handle_leaky() -> int:
    """Serve one request and keep its 1 KiB body for ever."""
    body = bytes(1024)  # the request's body
    HISTORY.append(body)  # kept "for debugging": the leak
    return len(body)


def handle_fixed() -> int:
    """Serve one request and keep only the last 100 bodies."""
    body = bytes(1024)  # the request's body
    RECENT.append(body)  # a deque with maxlen=100 drops the oldest
    return len(body)


HANDLERS: dict[str, Callable[[], int]] = {"leaky": handle_leaky, "fixed": handle_fixed}


def _handler(name: str) -> Callable[[], int]:
    if name not in HANDLERS:
        raise ValueError(f"handler must be one of {sorted(HANDLERS)}, got {name!r}")
    return HANDLERS[name]


def reset() -> None:
    """Drop every body the handlers and :func:`serve` kept."""
    HISTORY.clear()
    RECENT.clear()
    PINNED.clear()


def leave_free_heap(mib: float) -> None:
    """Allocate ``mib`` MiB of 1 KiB objects and free all but one in 64.

    The survivors pin the heap, so the freed chunks stay in the process as free memory that
    malloc hands out again to the next allocations of that size.
    """
    blocks = [bytes([i % 251]) * 1024 for i in range(int(mib * 1024))]
    PINNED.extend(blocks[::64])
    del blocks


def serve(requests: int, handler: str = "leaky", *, freed_first_mib: float = 0.0,
          pause: float = 0.005, every: int = 1000) -> int:
    """Serve ``requests`` requests with the named handler; return how many bodies are kept.

    Every ``every`` requests it reports :func:`~leaklab.measure.progress` and sleeps ``pause``
    seconds, so an RSS sampler sees the curve. ``freed_first_mib`` first calls
    :func:`leave_free_heap`.
    """
    handle = _handler(handler)
    if freed_first_mib:
        leave_free_heap(freed_first_mib)
        progress(0)
    for done in range(1, requests + 1):
        handle()
        if done % every == 0:
            progress(done)
            if pause:
                time.sleep(pause)
    return len(HISTORY) + len(RECENT)


# --------------------------------------------------------------------------- a capped process


@dataclass(frozen=True)
class Outcome:
    """How a server run by :func:`run_with_limit` ended."""

    handler: str
    limit_mib: float
    returncode: int
    served: int  #: requests served, as the child reported (to within :data:`REPORT_EVERY`)
    error: str | None  #: the exception that ended it (the last line of its traceback), if any

    @property
    def died(self) -> bool:
        """True when the process ended with an error or a signal, not by finishing its work."""
        return self.returncode != 0

    @property
    def kept_mib(self) -> float:
        """MiB of request bodies the handler had received when it ended."""
        return self.served * 1024 / MIB


REPORT_EVERY = 256


def serve_capped(handler: str, limit_mib: float, requests: int) -> None:
    """Child side of :func:`run_with_limit`: cap this process's address space at ``limit_mib``
    MiB above what it uses now, then serve, printing the count every ``REPORT_EVERY`` requests
    and once more at the end."""
    handle = _handler(handler)
    soft = psutil.Process().memory_info().vms + int(limit_mib * MIB)
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    for done in range(1, requests + 1):
        handle()
        if done % REPORT_EVERY == 0:
            print(done, flush=True)
    print(requests, flush=True)


def run_with_limit(handler: str = "leaky", *, limit_mib: float = 64, requests: int | None = None,
                   timeout: float = 20.0) -> Outcome:
    """Serve ``requests`` requests (default: twice what ``limit_mib`` holds at 1 KiB each) in a
    child process whose address space may grow by only ``limit_mib`` MiB.

    The child is waited for (and killed after ``timeout`` seconds), so none is left behind.
    """
    _handler(handler)
    if isinstance(limit_mib, bool) or not isinstance(limit_mib, (int, float)):
        raise TypeError(f"limit_mib must be a number of MiB, got {limit_mib!r}")
    if not 0 < limit_mib < 1 << 20:
        raise ValueError(f"limit_mib must be > 0 (and below a TiB), got {limit_mib!r}")
    if requests is None:
        requests = int(2 * limit_mib * 1024)
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise ValueError(f"requests must be a positive int, got {requests!r}")
    code = ("from leaklab.scenarios.oom import serve_capped; "
            f"serve_capped({handler!r}, {limit_mib!r}, {requests!r})")
    proc = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, check=False)
    counts = proc.stdout.split()
    served = int(counts[-1]) if counts else 0
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    error = (last.split(":")[0].strip() or None) if proc.returncode else None
    return Outcome(handler=handler, limit_mib=limit_mib, returncode=proc.returncode, served=served,
                   error=error)
