"""An exception kept in a global keeps its traceback, its frames and their locals (chapter 03).

An exception object carries ``__traceback__``; the traceback holds every frame the exception
passed through (``tb.tb_frame``), and each frame holds all of its local variables. A module that
keeps failed requests' exceptions "to report them later", like :func:`record_error_leaky`
appending to the module-level :data:`errors`, therefore keeps each failed request's whole
working state alive: here the :data:`PAYLOAD_BYTES` body that :func:`parse` had in a local
variable when it raised, long after the request is over.

The fix, :func:`record_error_summary`, keeps only what the report needs: a count per exception
type in :data:`error_counts` and the last error as formatted text in :data:`last_error`, which
hold no frames. (Where the exception object itself is needed, ``exc.with_traceback(None)`` drops
the frames; ``traceback.TracebackException(..., capture_locals=False)`` keeps the stack as text.)
Both ``record_*`` functions take an optional ``request_id`` (a fresh one by default);
:func:`reset` empties all three globals.
"""

from __future__ import annotations

import itertools
import traceback
from collections import Counter

__all__ = [
    "PAYLOAD_BYTES",
    "RequestFailed",
    "errors",
    "error_counts",
    "last_error",
    "parse",
    "record_error_leaky",
    "record_error_summary",
    "reset",
]

#: Bytes of request body that the failing frame holds in a local variable.
PAYLOAD_BYTES = 1024

#: Every failure's exception, and so its traceback, frames and locals.
errors: list[BaseException] = []
#: The fix: how many failures of each exception type.
error_counts: Counter[str] = Counter()
#: The fix: the last failure, formatted; a string holds no frames.
last_error: str | None = None

_request_ids = itertools.count(1)


class RequestFailed(Exception):
    """The error every request in this scenario ends with."""


def parse(request_id: int) -> None:
    """Read the request's body into a local variable, then fail, as a parser does on bad input."""
    body = (b"request %d " % request_id).ljust(PAYLOAD_BYTES, b".")
    raise RequestFailed(f"request {request_id}: cannot parse {len(body)} bytes")


def record_error_leaky(request_id: int | None = None) -> None:
    """Handle one failing request and keep its exception, to report it later."""
    try:
        parse(next(_request_ids) if request_id is None else request_id)
    except RequestFailed as exc:
        errors.append(exc)  # exc.__traceback__ holds parse's frame, and its local `body`


def record_error_summary(request_id: int | None = None) -> None:
    """Handle one failing request and keep only a count and the formatted text."""
    global last_error
    try:
        parse(next(_request_ids) if request_id is None else request_id)
    except RequestFailed as exc:
        error_counts[type(exc).__name__] += 1
        last_error = "".join(traceback.format_exception(exc))  # a str holds no frame


def reset() -> None:
    """Forget every recorded error, freeing the frames and locals they kept."""
    global last_error
    errors.clear()
    error_counts.clear()
    last_error = None
