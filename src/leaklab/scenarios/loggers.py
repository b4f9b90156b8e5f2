"""Loggers and handlers made per request live forever in the logging module (chapter 03).

``logging`` is module state of the standard library: ``logging.getLogger(name)`` stores every
logger it creates in ``logging.Logger.manager.loggerDict`` and never removes one, because any
later ``getLogger(name)`` must return the same object. So a logger per request,
:func:`log_request_leaky_logger` (``getLogger(f"...request.{id}")``, to get the id into the
log lines), keeps one logger per request for the life of the process. The fix,
:func:`log_request_adapter`, uses one logger and puts the id into each record instead, with a
:class:`logging.LoggerAdapter` and its ``extra`` mapping (a formatter can show it as
``%(request_id)s``); the adapter is a small object that dies with the request.

The second trap: configuring logging inside the request. :func:`log_request_leaky_handler` adds
a new handler to the logger on every call; the logger keeps them all (``logger.handlers``, plus
a weak reference each in ``logging._handlerList``), and every record is then handled by every
one of them: memory and time per record both grow with the number of calls. The fix,
:func:`log_request_one_handler`, adds its handler once.

The scenario logs under its own logger, :data:`LOGGER_NAME`, which does not propagate to the
root logger and has one :class:`CountingHandler` (:data:`sink`): records never reach the root
logger's handlers and nothing is printed. (pytest's logging plugin is the exception: at the
start of every test phase it attaches its capture handlers to every non-propagating logger too,
and they keep every record, which a measurement would count as memory kept per call; a test
detaches them from :data:`log` first.) :func:`reset` removes the per-request loggers from the
manager and the handlers the scenario added, so tests and notebooks can undo the damage;
:func:`request_logger_names` lists what the manager still holds. Every ``log_request_*``
function takes an optional ``request_id`` (a fresh one by default).
"""

from __future__ import annotations

import contextlib
import itertools
import logging

__all__ = [
    "LOGGER_NAME",
    "REQUEST_LOGGER_PREFIX",
    "CountingHandler",
    "log",
    "sink",
    "request_handler",
    "log_request_leaky_logger",
    "log_request_adapter",
    "log_request_leaky_handler",
    "log_request_one_handler",
    "request_logger_names",
    "reset",
]

#: The scenario's one logger.
LOGGER_NAME = "leaklab.scenarios.loggers"
#: Where the leaky variant makes its per-request loggers: ``f"{REQUEST_LOGGER_PREFIX}.{id}"``.
REQUEST_LOGGER_PREFIX = f"{LOGGER_NAME}.request"


class CountingHandler(logging.Handler):
    """A handler that counts the records it is given and drops them.

    It stands in for a file or a socket handler: the same per-handler state (a lock, filters, a
    formatter slot, an entry in ``logging._handlerList``) without writing anywhere.
    """

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.handled = 0
        #: ``request_id`` of the last record (None if it had none); the record itself is not kept.
        self.last_request_id: object = None

    def emit(self, record: logging.LogRecord) -> None:
        """Count the record and note its ``request_id`` attribute, if any."""
        self.handled += 1
        self.last_request_id = getattr(record, "request_id", None)


#: The scenario's logger: INFO and up, not propagated to the root logger.
log = logging.getLogger(LOGGER_NAME)
log.setLevel(logging.INFO)
log.propagate = False
#: The logger's own handler, always attached.
sink = CountingHandler()
log.addHandler(sink)
#: The handler :func:`log_request_one_handler` attaches, once.
request_handler = CountingHandler()

_request_ids = itertools.count(1)


def _id(request_id: int | None) -> int:
    return next(_request_ids) if request_id is None else request_id


def log_request_leaky_logger(request_id: int | None = None) -> None:
    """Handle one request, logging through a logger named after it: the manager keeps it."""
    request_id = _id(request_id)
    logging.getLogger(f"{REQUEST_LOGGER_PREFIX}.{request_id}").info("handling the request")


def log_request_adapter(request_id: int | None = None) -> None:
    """Handle one request, logging through the one logger with the id in each record."""
    request_id = _id(request_id)
    logging.LoggerAdapter(log, {"request_id": request_id}).info("handling the request")


def log_request_leaky_handler(request_id: int | None = None) -> None:
    """Handle one request after adding a new handler to the logger, as if configuring it."""
    request_id = _id(request_id)
    log.addHandler(CountingHandler())
    log.info("handling request %d", request_id)


def log_request_one_handler(request_id: int | None = None) -> None:
    """Handle one request; adding a handler that is already attached does nothing."""
    request_id = _id(request_id)
    log.addHandler(request_handler)
    log.info("handling request %d", request_id)


def _is_request_logger(name: object) -> bool:
    return isinstance(name, str) and (
        name == REQUEST_LOGGER_PREFIX or name.startswith(REQUEST_LOGGER_PREFIX + ".")
    )


def _logging_lock() -> contextlib.AbstractContextManager[object]:
    # The module lock that getLogger takes (private, but present in 3.11 to 3.13).
    lock = getattr(logging, "_lock", None)
    return lock if lock is not None else contextlib.nullcontext()


def request_logger_names() -> list[str]:
    """The names, sorted, of the per-request loggers the logging manager still holds."""
    with _logging_lock():
        names = list(logging.Logger.manager.loggerDict)
    return sorted(n for n in names if _is_request_logger(n) and n != REQUEST_LOGGER_PREFIX)


def reset() -> None:
    """Undo the scenario's damage to the logging module.

    Removes every per-request logger (and the placeholder the manager made for their common
    parent) from ``logging.Logger.manager.loggerDict``, detaches the handlers the scenario added
    (closing the per-call ones; handlers of other classes are left alone), puts the scenario
    logger's level, ``propagate`` and ``disabled`` back as they were at import, and sets the
    counters back to 0.
    """
    manager = logging.Logger.manager
    with _logging_lock():
        for name in [n for n in manager.loggerDict if _is_request_logger(n)]:
            del manager.loggerDict[name]
    for handler in log.handlers.copy():
        if type(handler) is CountingHandler and handler is not sink:
            log.removeHandler(handler)
            if handler is not request_handler:
                handler.close()
    log.addHandler(sink)  # does nothing if attached
    log.setLevel(logging.INFO)
    log.propagate = False
    log.disabled = False
    for handler in (sink, request_handler):
        handler.handled = 0
        handler.last_request_id = None
