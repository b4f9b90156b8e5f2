"""Tests for chapter 03's scenarios: module state, listeners, loggers, registries, tracebacks.

For each trap, ``leak_rate`` must call the leaky variant leaking and the fixed one not, and the
module's reset function must leave the process clean. Counts and bounds only, no timings.
"""

from __future__ import annotations

import gc
import logging
import sys
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from leaklab.measure import LeakRate, leak_rate
from leaklab.scenarios import listeners, loggers, module_state, registry, tracebacks
from leaklab.state import GlobalsWatch

SCENARIOS = (module_state, listeners, loggers, registry, tracebacks)

# (leaky, fixed, calls): calls are fewer for the handler leak, whose cost per call grows with
# the number of calls (every record goes to every handler).
PAIRS = [
    pytest.param(module_state.handle_request_leaky, module_state.handle_request_bounded, 1000,
                 id="module_state"),
    pytest.param(listeners.subscribe_leaky, listeners.subscribe_weak, 1000, id="listeners"),
    pytest.param(registry.register_leaky, registry.register_weak, 1000, id="registry"),
    # 2,000 calls: in one full run, a one-off allocation of a few KiB during the window (not the
    # scenario's: alone it measures 3-7 B/call) read as 32.04 B/call over 500 calls.
    pytest.param(tracebacks.record_error_leaky, tracebacks.record_error_summary, 2000,
                 id="tracebacks"),
    pytest.param(loggers.log_request_leaky_logger, loggers.log_request_adapter, 1000,
                 id="loggers-per-request"),
    pytest.param(loggers.log_request_leaky_handler, loggers.log_request_one_handler, 300,
                 id="loggers-handler-per-call"),
]


@pytest.fixture(autouse=True)
def _clean_scenarios() -> Iterator[None]:
    for scenario in SCENARIOS:
        scenario.reset()
    yield
    for scenario in SCENARIOS:
        scenario.reset()


def _detach_pytest_capture() -> None:
    """Take pytest's log-capture handlers off the scenario logger, for this test phase.

    pytest attaches them to every non-propagating logger when a test phase starts, and they keep
    every record: the scenario's fixed logging variants would look leaky because of them.
    """
    for handler in loggers.log.handlers.copy():
        if not isinstance(handler, loggers.CountingHandler):
            loggers.log.removeHandler(handler)


def _rate(fn: Callable[..., Any], calls: int) -> LeakRate:
    """``leak_rate`` with tracemalloc already tracing during the warm-up.

    A bounded structure that is full after the warm-up keeps replacing its items; if tracing
    starts after the warm-up, the replacements are traced and the items they replace were not,
    so the whole bounded structure would be counted as growth once. Tracing from before the
    warm-up counts only what each measured call keeps.
    """
    _detach_pytest_capture()
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start(1)
    try:
        return leak_rate(fn, calls=calls, warmup=100)
    finally:
        if started_here:
            tracemalloc.stop()


@pytest.mark.parametrize(("leaky", "fixed", "calls"), PAIRS)
def test_leaky_variant_keeps_memory_per_call_and_fixed_variant_does_not(leaky, fixed, calls):
    fixed_rate = _rate(fixed, calls)
    leaky_rate = _rate(leaky, calls)
    assert not fixed_rate.leaking, fixed_rate
    assert fixed_rate.bytes_per_call < 32, fixed_rate
    assert leaky_rate.leaking, leaky_rate
    assert leaky_rate.bytes_per_call > 400, leaky_rate  # a payload, logger or handler per call


def _alive(cls: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is cls)


# --------------------------------------------------------------------------- module state


def test_module_state_keeps_every_payload_until_drained():
    for i in range(50):
        module_state.handle_request_leaky(i)
    assert len(module_state.leak_array) == 50
    assert all(len(p) == module_state.PAYLOAD_BYTES for p in module_state.leak_array)
    # The module is cached in sys.modules, and the module holds the list: dropping every name
    # the caller had frees nothing.
    assert sys.modules["leaklab.scenarios.module_state"].leak_array is module_state.leak_array
    drained = module_state.drain()
    assert len(drained) == 50 and drained[0].startswith(b"request 0 ")
    assert module_state.leak_array == [] and module_state.drain() == []


def test_module_state_drain_keeps_memory_flat_for_a_caller_that_uses_it():
    def handle_and_flush_every_50() -> None:
        module_state.handle_request_leaky()
        if len(module_state.leak_array) >= 50:
            module_state.drain()

    assert not _rate(handle_and_flush_every_50, 1000).leaking


def test_module_state_bounded_variant_keeps_only_the_last_items():
    for i in range(module_state.RECENT_LIMIT * 3):
        module_state.handle_request_bounded(i)
    assert len(module_state.recent) == module_state.RECENT_LIMIT
    assert module_state.recent[-1].startswith(b"request %d " % (module_state.RECENT_LIMIT * 3 - 1))
    module_state.reset()
    assert len(module_state.recent) == 0 and module_state.leak_array == []


def test_globals_watch_names_the_growing_global_of_the_scenario():
    watch = GlobalsWatch([module_state, registry, listeners])
    before = watch.snapshot()
    for _ in range(40):
        module_state.handle_request_leaky()
        module_state.handle_request_bounded()
        registry.register_leaky()
        registry.register_weak()
        listeners.subscribe_leaky()
        listeners.subscribe_weak()
    report = watch.grown(before, watch.snapshot())
    grown = {(row.module.rsplit(".", 1)[-1], row.name): row.growth
             for row in report.itertuples(index=False)}
    assert grown == {
        ("module_state", "leak_array"): 40,
        ("module_state", "recent"): 40,  # grows up to its bound, RECENT_LIMIT
        ("registry", "registry"): 40,
        ("listeners", "listeners"): 40,
    }
    for _ in range(module_state.RECENT_LIMIT):
        module_state.handle_request_bounded()
    before = watch.snapshot()
    for _ in range(40):
        module_state.handle_request_bounded()
    assert watch.grown(before, watch.snapshot()).empty  # full: it stays at its bound


# --------------------------------------------------------------------------- listeners


def test_strong_listeners_keep_sessions_alive_until_reset():
    for i in range(20):
        listeners.subscribe_leaky(i)
    assert _alive(listeners.Session) == 20
    assert listeners.emit("config changed") == 20
    assert listeners.listeners[0].__self__.events_seen == 1
    listeners.reset()
    assert _alive(listeners.Session) == 0


def test_weak_listeners_work_while_the_object_lives_and_then_remove_themselves():
    for i in range(20):
        listeners.subscribe_weak(i)
    assert _alive(listeners.Session) == 0 and listeners.weak_listeners == []
    kept = listeners.Session(99)
    listeners.add_listener(kept.on_event, weak=True)
    seen: list[Any] = []

    def on_event(event: Any) -> None:
        seen.append(event)

    listeners.add_listener(on_event, weak=True)  # a function: held with weakref.ref
    assert listeners.emit("ping") == 2 and kept.events_seen == 1 and seen == ["ping"]
    del kept, on_event
    gc.collect()
    assert listeners.weak_listeners == [] and listeners.emit("ping") == 0


def test_unsubscribing_when_the_request_ends_frees_the_session():
    session = listeners.Session(1)
    listeners.add_listener(session.on_event)
    assert listeners.emit("ping") == 1 and session.events_seen == 1
    listeners.remove_listener(session.on_event)  # a fresh bound method, equal to the kept one
    assert listeners.listeners == [] and listeners.emit("ping") == 0
    ref = weakref.ref(session)
    del session
    assert ref() is None
    with pytest.raises(ValueError, match="not subscribed"):
        listeners.remove_listener(listeners.Session(2).on_event)


def test_add_listener_rejects_bad_arguments():
    with pytest.raises(TypeError, match="listener must be callable, got int"):
        listeners.add_listener(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="weak must be a bool, got int"):
        listeners.add_listener(print, weak=1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- registry


def test_plain_registry_keeps_every_session_and_weak_one_only_live_ones():
    for i in range(30):
        registry.register_leaky(i)
        registry.register_weak(1000 + i)
    assert len(registry.registry) == 30 and _alive(registry.Session) == 30
    assert registry.lookup(7) is registry.registry[7]
    assert len(registry.weak_registry) == 0 and registry.lookup(1007) is None
    held = registry.Session(5000)
    registry.weak_registry[5000] = held
    assert registry.lookup(5000) is held
    del held
    gc.collect()
    assert registry.lookup(5000) is None
    registry.reset()
    assert registry.registry == {} and _alive(registry.Session) == 0


# --------------------------------------------------------------------------- tracebacks


def test_kept_exception_holds_the_failing_frame_and_its_locals():
    tracebacks.record_error_leaky(7)
    (exc,) = tracebacks.errors
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_frame.f_code.co_name == "parse"
    body = tb.tb_frame.f_locals["body"]
    assert len(body) == tracebacks.PAYLOAD_BYTES and body.startswith(b"request 7 ")


def test_summary_keeps_counts_and_text_only():
    for i in range(5):
        tracebacks.record_error_summary(i)
    assert tracebacks.errors == []
    assert tracebacks.error_counts == {"RequestFailed": 5}
    text = tracebacks.last_error
    assert isinstance(text, str)
    assert "RequestFailed: request 4: cannot parse" in text and "in parse" in text
    tracebacks.record_error_leaky()
    tracebacks.reset()
    assert tracebacks.errors == [] and not tracebacks.error_counts
    assert tracebacks.last_error is None


# --------------------------------------------------------------------------- loggers


def _request_loggers_in_manager() -> list[str]:
    return [n for n in logging.Logger.manager.loggerDict
            if n.startswith(loggers.REQUEST_LOGGER_PREFIX)]


def test_per_request_loggers_stay_in_the_manager_until_reset():
    _detach_pytest_capture()
    for i in range(25):
        loggers.log_request_leaky_logger(i)
    names = loggers.request_logger_names()
    assert len(names) == 25 and f"{loggers.REQUEST_LOGGER_PREFIX}.3" in names
    assert loggers.sink.handled == 25
    one = weakref.ref(logging.getLogger(f"{loggers.REQUEST_LOGGER_PREFIX}.3"))
    loggers.reset()
    gc.collect()
    assert loggers.request_logger_names() == [] and _request_loggers_in_manager() == []
    assert one() is None  # nothing else held it: the process is clean again
    assert loggers.sink.handled == 0


def test_adapter_puts_the_id_in_the_record_and_adds_no_logger():
    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    _detach_pytest_capture()
    capture = Capture()
    loggers.log.addHandler(capture)
    try:
        for i in range(10):
            loggers.log_request_adapter(i)
    finally:
        loggers.log.removeHandler(capture)
    assert [r.request_id for r in records] == list(range(10))  # type: ignore[attr-defined]
    assert loggers.request_logger_names() == [] and loggers.sink.handled == 10
    assert loggers.sink.last_request_id == 9
    loggers.log_request_leaky_logger(5)  # its records carry no request_id
    assert loggers.sink.last_request_id is None
    loggers.log_request_adapter(3)
    loggers.reset()
    assert loggers.sink.last_request_id is None and loggers.sink.handled == 0


def test_handler_per_call_piles_up_and_every_record_goes_to_all_of_them():
    _detach_pytest_capture()
    for i in range(10):
        loggers.log_request_leaky_handler(i)
    extra = [h for h in loggers.log.handlers if h is not loggers.sink]  # added by the calls
    assert len(extra) == 10
    # The first handler has seen all 10 records, the last only its own.
    assert [h.handled for h in extra] == list(range(10, 0, -1))
    refs = [weakref.ref(h) for h in extra]
    del extra
    loggers.reset()
    gc.collect()
    assert loggers.log.handlers == [loggers.sink] and all(r() is None for r in refs)


def test_one_handler_is_attached_once():
    _detach_pytest_capture()
    for i in range(10):
        loggers.log_request_one_handler(i)
    assert loggers.log.handlers == [loggers.sink, loggers.request_handler]
    assert loggers.request_handler.handled == 10 and loggers.sink.handled == 10
    loggers.reset()
    assert loggers.log.handlers == [loggers.sink] and loggers.request_handler.handled == 0


def test_scenario_logger_never_reaches_the_root_handlers():
    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    capture = Capture()
    root.addHandler(capture)
    try:
        loggers.log_request_leaky_logger()
        loggers.log_request_adapter()
        loggers.log_request_leaky_handler()
        loggers.log_request_one_handler()
    finally:
        root.removeHandler(capture)
    assert records == [] and loggers.sink.handled == 4


def test_reset_leaves_handlers_it_did_not_add_alone():
    other = logging.NullHandler()
    loggers.log.addHandler(other)
    try:
        loggers.log_request_leaky_handler()
        loggers.reset()
        assert other in loggers.log.handlers
        assert [h for h in loggers.log.handlers if isinstance(h, loggers.CountingHandler)] == [
            loggers.sink
        ]
    finally:
        loggers.log.removeHandler(other)
