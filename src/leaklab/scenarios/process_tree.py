"""The tree of processes chapter 05 starts (workers, cache servers, their watchdogs), seen from
the process that started them.

- :class:`TreeMemory` keeps the peak of the summed RSS of a process and all its descendants: the
  chapter's memory budget is for all of them together.
- :func:`server_processes` lists the cache servers still running below a process; the chapter and
  the tests end by checking that it is empty, so no server outlives the code that started it.
"""

from __future__ import annotations

import os
import threading

import psutil

from leaklab.measure import MIB

__all__ = ["SERVER_NAMES", "TreeMemory", "server_processes"]


class TreeMemory:
    """Samples, in a background thread, the summed RSS of a process and all its descendants every
    ``period`` s, and keeps the highest sum (``peak_mib``). RSS counts pages shared between
    processes once per process, so the sum over-estimates what they hold together.

    >>> with TreeMemory() as tree:                      # doctest: +SKIP
    ...     run_workers("in-process")
    >>> tree.peak_mib                                   # doctest: +SKIP
    """

    def __init__(self, pid: int | None = None, period: float = 0.05) -> None:
        self.process = psutil.Process(pid)
        self.period = period
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> float:
        """The summed RSS now, MiB (processes that end meanwhile are skipped)."""
        total = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        self.peak_mib = max(self.peak_mib, total / MIB)
        return total / MIB

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def start(self) -> TreeMemory:
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def __enter__(self) -> TreeMemory:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: Names of the server processes the chapter starts.
SERVER_NAMES = ("valkey-server", "memcached")


def server_processes(pid: int | None = None) -> list[str]:
    """Names of the cache servers (and the watchdogs that run them) still alive below process
    ``pid`` (default: this one): empty once every server has been stopped."""
    found = []
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            name, cmdline = proc.name(), proc.cmdline()
        except psutil.Error:
            continue
        program = os.path.basename(cmdline[0]) if cmdline else ""
        if name in SERVER_NAMES or program in SERVER_NAMES or "leaklab._watchdog" in cmdline:
            found.append(name)
    return found
