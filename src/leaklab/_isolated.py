"""Child side of :func:`leaklab.measure.track_isolated` (run as ``python -m leaklab._isolated``).

It reads ``(target, args, kwargs, interval)`` from a pickle file, runs ``track`` on the target
in this fresh interpreter, and writes the samples and the result (or the exception) back.
"""

from __future__ import annotations

import pickle
import sys
import traceback


def main(request_path: str, response_path: str) -> int:
    from leaklab.measure import resolve_target, sample_rss

    with open(request_path, "rb") as fh:
        name, args, kwargs, interval = pickle.load(fh)
    try:
        fn = resolve_target(name)
        columns, result = sample_rss(fn, args, kwargs, interval)
        outcome = {"frame": columns, "result": result}
        payload = pickle.dumps(outcome)
    except Exception as exc:  # sent back to the parent, which raises it again
        try:
            payload = pickle.dumps({"error": exc})
        except Exception:
            text = "".join(traceback.format_exception(exc))
            payload = pickle.dumps({"error": RuntimeError(f"{name} raised:\n{text}")})
    with open(response_path, "wb") as fh:
        fh.write(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
