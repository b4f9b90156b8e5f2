"""Tests for leaklab.scenarios.module_state_runs, the fresh-process workloads of chapter 03."""

import pytest

from leaklab.measure import track
from leaklab.scenarios import module_state, module_state_runs


@pytest.fixture(autouse=True)
def _reset():
    yield
    module_state_runs.reset()


@pytest.mark.parametrize("variant, kept", [("leaky", 300), ("drained", 0), ("bounded", None)])
def test_serve_keeps_what_each_variant_should(variant, kept):
    result = module_state_runs.serve(variant, batches=3, per_batch=100, pause=0)
    assert result["calls"] == 300
    if kept is None:  # bounded: the deque's maxlen, whatever it is, and less than the calls
        assert 0 < result["kept"] == module_state.recent.maxlen < 300
    else:
        assert result["kept"] == kept


def test_serve_starts_from_a_clean_module():
    module_state.handle_request_leaky()
    assert module_state_runs.serve("leaky", batches=1, per_batch=5, pause=0)["kept"] == 5


def test_serve_reports_its_progress_so_a_trace_has_requests_on_x():
    trace = track(module_state_runs.serve, "drained", batches=4, per_batch=50, pause=0.02)
    done = trace.frame["done"]
    assert done.is_monotonic_increasing and done.iloc[-1] == 200


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"variant": "forgetful"}, ValueError),
    ({"variant": "leaky", "batches": 0}, ValueError),
    ({"variant": "leaky", "per_batch": 2.0}, TypeError),
    ({"variant": "leaky", "per_batch": True}, TypeError),
])
def test_serve_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        module_state_runs.serve(**kwargs)
