"""Run a server so that it cannot outlive the Python process that started it (chapter 05).

``python -m leaklab._watchdog PARENT_PID [--remove DIR] -- server args...`` starts the server as
its child and stays beside it. It stops the server (SIGTERM, then SIGKILL after two seconds) and
exits when:

- the parent process is gone (killed with SIGKILL, a crashed kernel): checked every 0.2 s; then it
  also removes ``DIR`` (the server's private directory), which the parent can no longer do;
- the watchdog itself gets SIGTERM or SIGINT (how :mod:`leaklab.remote` stops a server).

On Linux the server is also given PR_SET_PDEATHSIG, so that it gets SIGKILL if the watchdog is
killed outright. The watchdog is single-threaded, which is what makes that ``preexec_fn`` safe
(it is not safe in a process with threads, such as a Jupyter kernel: hence this extra process).
Its exit code is the server's.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the polling below still stops the server
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str]) -> int:
    remove = None
    if len(argv) > 2 and argv[1] == "--remove":
        remove, argv = argv[2], [argv[0], *argv[3:]]
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m leaklab._watchdog PARENT_PID [--remove DIR] -- command [args...]",
              file=sys.stderr)
        return 2
    parent = int(argv[0])
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    server = subprocess.Popen(argv[2:], stdin=subprocess.DEVNULL, preexec_fn=preexec)
    orphaned = False
    while server.poll() is None:
        orphaned = os.getppid() != parent or not _alive(parent)
        if stop or orphaned:
            server.terminate()
            try:
                server.wait(2)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            break
        time.sleep(0.2)
    if orphaned and remove:
        shutil.rmtree(remove, ignore_errors=True)
    return server.returncode if server.returncode is not None else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
