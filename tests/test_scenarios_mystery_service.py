"""Tests for chapter 06's case: leaklab.scenarios.mystery_service (a service with two planted
leaks and its fixed version) and leaklab.scenarios.hunting (the chapter's helpers)."""

from __future__ import annotations

import gc
import inspect
import os
import weakref

import objgraph
import pytest

from leaklab.measure import leak_rate, track
from leaklab.scenarios import mystery_service as service
from leaklab.scenarios.hunting import line_of, path_steps, reference_path, run_pytest
from leaklab.testing import LeakError, assert_no_leak, leak_report


@pytest.fixture(autouse=True)
def _fresh_service():
    service.reset()
    yield
    service.reset()


def _line_of(function, text: str) -> int:
    """The line number of the first line of ``function`` that contains ``text``."""
    lines, first = inspect.getsourcelines(function)
    return first + next(i for i, line in enumerate(lines) if text in line)


BODY_LINE = _line_of(service.Request.__init__, "self.body =")
PAGE_LINE = _line_of(service._render, "return ")


# --------------------------------------------------------------------------- the planted leaks


def test_the_service_as_written_leaks_and_the_fixed_one_does_not():
    leaky = leak_rate(service.handle_request)
    service.reset()
    fixed = leak_rate(service.handle_request_fixed)
    assert leaky.leaking and "tracemalloc" in leaky.fired_by
    # a body and a page per request, and some change: both leaks together
    assert service.BODY_BYTES + service.PAGE_BYTES < leaky.bytes_per_call < 2 * (
        service.BODY_BYTES + service.PAGE_BYTES)
    assert not fixed.leaking and abs(fixed.bytes_per_call) < 16


def test_the_page_cache_grows_by_one_entry_per_request():
    for request_id in range(1, 301):
        service.handle_request(request_id)
    assert len(service.page_cache) == 300  # the cache-buster makes every URL new
    assert service.render_page(service.Request(7)) is service.page_cache["/report/7?t=7"]


def test_the_bus_keeps_every_request_alive_and_the_weak_subscription_does_not():
    kept = []
    for handle in (service.handle_request, service.handle_request_fixed):
        service.reset()
        handle(41)
        gc.collect()
        kept.append(any(r.id == 41 for r in objgraph.by_type("Request")))
    assert kept == [True, False]
    assert sum(map(len, service.bus._handlers.values())) == 0  # the dead weak entry removed itself


def test_each_planted_leak_alone_is_caught_and_its_fix_alone_is_not():
    def cache_leak(request_id=[0]):  # noqa: B006 (a counter for fresh ids)
        request_id[0] += 1
        service.render_page(service.Request(request_id[0]))

    def listener_leak(request_id=[0]):  # noqa: B006
        request_id[0] += 1
        request = service.Request(request_id[0])
        service.bus.subscribe("config_changed", request.on_config_changed)

    def listener_fixed(request_id=[0]):  # noqa: B006
        request_id[0] += 1
        request = service.Request(request_id[0])
        service.bus.subscribe("config_changed", request.on_config_changed, weak=True)

    def cache_fixed(request_id=[0]):  # noqa: B006
        request_id[0] += 1
        service.render_page_fixed(service.Request(request_id[0]))

    rates = {fn.__name__: leak_rate(fn) for fn in (cache_leak, listener_leak, listener_fixed,
                                                    cache_fixed)}
    assert rates["cache_leak"].leaking and rates["listener_leak"].leaking
    assert rates["listener_leak"].bytes_per_call > service.BODY_BYTES  # the whole request stays
    assert service.PAGE_BYTES < rates["cache_leak"].bytes_per_call < service.BODY_BYTES
    assert not rates["listener_fixed"].leaking and not rates["cache_fixed"].leaking


def test_a_weak_listener_still_hears_events_while_its_request_lives():
    request = service.Request(1)
    service.bus.subscribe("config_changed", request.on_config_changed, weak=True)
    assert service.bus.publish("config_changed", {"locale": "fr"}) == 1
    assert request.locale == "fr"
    del request
    gc.collect()
    assert service.bus.publish("config_changed", {"locale": "de"}) == 0


def test_strong_listeners_can_unsubscribe():
    request = service.Request(1)
    service.bus.subscribe("config_changed", request.on_config_changed)
    service.bus.unsubscribe("config_changed", request.on_config_changed)  # an equal bound method
    assert service.bus.publish("config_changed", {}) == 0


def test_the_fixed_cache_keeps_one_page_per_path_within_its_bound():
    for request_id in range(1, 1001):
        service.handle_request_fixed(request_id)
    assert len(service.pages) == service.PATHS <= service.PAGES_KEPT
    assert service.page_cache == {}


def test_the_outbox_is_shipped_every_batch_so_it_rises_and_falls():
    for request_id in range(1, 2 * service.AUDIT_BATCH + 51):
        service.handle_request_fixed(request_id)
    assert len(service.outbox) == 50 and service.shipped == 2 * service.AUDIT_BATCH


def test_release_drops_pages_and_listeners():
    for request_id in range(1, 101):
        service.handle_request(request_id)
    service.release()
    assert service.page_cache == {} and service.bus.publish("config_changed", {}) == 0
    assert not any(True for _ in objgraph.by_type("Request"))


# --------------------------------------------------------------------------- leaklab.testing


def test_assert_no_leak_passes_the_fixed_service():
    report = assert_no_leak(service.handle_request_fixed)
    assert not report.leaking


def test_assert_no_leak_fails_the_leaky_service_and_names_the_planted_lines():
    with pytest.raises(LeakError) as caught:
        assert_no_leak(service.handle_request)
    top = caught.value.report.top
    here = os.path.normcase(os.path.abspath(service.__file__))
    assert [os.path.normcase(os.path.abspath(t.filename)) for t in top[:2]] == [here, here]
    assert [t.lineno for t in top[:2]] == [BODY_LINE, PAGE_LINE]
    assert f"mystery_service.py:{BODY_LINE}" in str(caught.value)


def test_leak_report_charges_about_a_body_and_a_page_per_call_to_their_lines():
    report = leak_report(service.handle_request, calls=500)
    body, page = report.top[:2]
    assert 0.95 < body.bytes / (500 * service.BODY_BYTES) < 1.1
    assert 0.95 < page.bytes / (500 * service.PAGE_BYTES) < 1.2


# --------------------------------------------------------------------------- runs


@pytest.mark.parametrize(("variant", "pages", "listeners"), [
    ("leaky", 600, 600),
    ("fixed", service.PATHS, 0),
    ("fixed midway", service.PATHS, 0),
])
def test_serve_ends_with_what_each_variant_keeps(variant, pages, listeners):
    result = service.serve(variant, 600, every=100, pause=0)
    assert result == {"requests": 600, "pages": pages, "listeners": listeners,
                      "reached": listeners}


def test_serve_starts_from_a_fresh_service():
    service.handle_request()
    assert service.serve("leaky", 10, every=5, pause=0)["pages"] == 10


def test_serve_reports_progress_so_a_trace_has_requests_on_x():
    trace = track(service.serve, "fixed", 2000, every=500, pause=0.02)
    done = trace.frame["done"]
    assert done.is_monotonic_increasing and done.iloc[-1] == 2000


def test_serve_fixed_midway_frees_the_traced_memory_of_the_first_half():
    traced = service.serve("fixed midway", 2000, every=500, pause=0, trace=True)["traced_mib"]
    kept = traced["before release"] - traced["start"]
    assert kept > 0.9 * 1000 * (service.BODY_BYTES + service.PAGE_BYTES) / 2**20
    assert traced["after release"] - traced["start"] < 0.02 * kept
    assert traced["end"] - traced["start"] < 0.05 * kept


@pytest.mark.parametrize(("args", "kwargs", "error"), [
    (("forgetful",), {}, ValueError),
    (("leaky", 0), {}, ValueError),
    (("leaky", 10.0), {}, TypeError),
    (("leaky", True), {}, TypeError),
    (("leaky", 10), {"every": 0}, ValueError),
    (("leaky", 10), {"trace": True}, ValueError),
])
def test_serve_rejects_bad_arguments(args, kwargs, error):
    with pytest.raises(error):
        service.serve(*args, **kwargs)


# --------------------------------------------------------------------------- owners


def test_the_chain_from_the_module_to_a_kept_request_reads_as_a_path():
    for request_id in range(1, 101):
        service.handle_request(request_id)
    ref = weakref.ref(next(r for r in objgraph.by_type("Request") if r.id == 42))
    chain = objgraph.find_backref_chain(ref(), objgraph.is_proper_module)
    assert reference_path(chain) == (
        "leaklab.scenarios.mystery_service.bus._handlers['config_changed'][41].__self__")
    assert [kind for _, kind in path_steps(chain)] == [
        "module", "EventBus", "dict", "list", "method", "Request"]


def test_path_steps_names_closures_cells_and_instance_attributes():
    class Holder:
        pass

    holder = Holder()
    target = object()
    holder.fn = (lambda: target)
    module = type(service)("owners_demo")
    module.holder = holder
    cell = holder.fn.__closure__[0]
    chain = [module, vars(module), holder, holder.fn, holder.fn.__closure__, cell, target]
    assert reference_path(chain) == "owners_demo.holder.fn.__closure__[0].cell_contents"


def test_path_steps_needs_a_module_first():
    with pytest.raises(ValueError):
        path_steps([{}, 1])


def test_line_of_finds_the_line_or_says_it_cannot():
    filename, lineno = line_of(service.Request.__init__, "self.body =")
    assert filename == service.__file__ and "self.body =" in open(filename).read().splitlines()[lineno - 1]
    with pytest.raises(ValueError):
        line_of(service.Request.__init__, "no such text")


REGRESSION_TEST = """
import pytest
from leaklab.scenarios.mystery_service import {handler} as handle_request

@pytest.mark.no_leak(calls=500, warmup=100, max_bytes_per_call=64)
def test_a_request_keeps_nothing():
    handle_request()
"""


def test_the_no_leak_marker_fails_the_service_as_written_and_passes_the_fixed_one():
    results = run_pytest({
        "test_as_written.py": REGRESSION_TEST.format(handler="handle_request"),
        "test_fixed.py": REGRESSION_TEST.format(handler="handle_request_fixed"),
        "test_plain.py": "def test_nothing():\n    pass\n",
    })
    assert list(results) == ["test_as_written.py", "test_fixed.py", "test_plain.py"]
    as_written, fixed, plain = results.values()
    assert as_written.outcome == "failed" and as_written.bytes_per_call > service.BODY_BYTES
    assert f"mystery_service.py:{BODY_LINE}" in as_written.message
    assert fixed.outcome == "passed" and abs(fixed.bytes_per_call) < 64 and fixed.message == ""
    assert plain == ("passed", None, "")  # no marker, no measurement


def test_run_pytest_refuses_what_is_not_a_test_file_and_reports_a_broken_run():
    with pytest.raises(ValueError):
        run_pytest({"helper.py": ""})
    with pytest.raises(RuntimeError):
        run_pytest({"test_broken.py": "import no_such_module_here\n"})  # a collection error
