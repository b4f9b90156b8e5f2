"""Child side of :func:`leaklab.measure.track_isolated` (run as ``python -m leaklab._isolated``).

``python -m leaklab._isolated RESPONSE_FD PARENT_PID``: it reads ``(target, args, kwargs,
interval)`` as a pickle from stdin, runs ``track`` on the target in this fresh interpreter, and
writes to the file descriptor ``RESPONSE_FD`` a pickled dict: ``{"frame", "result"}``, or
``{"error"}`` (the exception, pickled on its own, with its type, text and traceback for when it
cannot be unpickled), or ``{"ended"}`` when the target ended the process instead
(``sys.exit()``, a KeyboardInterrupt raised in it). It ends with ``PARENT_PID`` if that dies first.
The parent's side is :mod:`leaklab.measure.isolated`.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback


def _exit_call(exc: SystemExit) -> str:
    return "sys.exit()" if exc.code is None else f"sys.exit({exc.code!r})"


def _error(exc: BaseException) -> dict[str, object]:
    text = "".join(traceback.format_exception(exc))
    pickled: bytes | None
    try:
        pickled = pickle.dumps(exc)
        pickle.loads(pickled)  # some exceptions pickle but cannot be rebuilt (a required argument)
    except Exception:
        pickled = None  # the parent explains with the type, the text and the traceback
    return {
        "error": pickled,
        "error_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "error_text": str(exc),
        "traceback": text,
    }


def main(argv: list[str]) -> int:
    response_fd, parent_pid = int(argv[0]), int(argv[1])
    from leaklab.measure.isolated import resolve_target
    from leaklab.measure.lifetime import end_with_parent
    from leaklab.measure.sampling import sample_rss

    end_with_parent(parent_pid)
    name, args, kwargs, interval = pickle.load(sys.stdin.buffer)
    devnull = os.open(os.devnull, os.O_RDONLY)  # the workload sees an empty stdin, as before
    os.dup2(devnull, 0)
    os.close(devnull)
    try:
        fn = resolve_target(name)
        columns, result = sample_rss(fn, args, kwargs, interval)
        payload = pickle.dumps({"frame": columns, "result": result})
    except SystemExit as exc:  # a main() or an argparse error: report it, do not exit silently
        payload = pickle.dumps({"ended": f"called {_exit_call(exc)}"})
    except Exception as exc:  # sent back to the parent, which raises it again
        payload = pickle.dumps(_error(exc))
    except BaseException as exc:  # KeyboardInterrupt raised in the target, GeneratorExit, ...
        detail = f": {exc}" if str(exc) else ""
        payload = pickle.dumps({"ended": f"raised {type(exc).__name__}{detail}"})
    with os.fdopen(response_fd, "wb") as fh:
        fh.write(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
