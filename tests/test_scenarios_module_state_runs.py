"""Tests for leaklab.scenarios.module_state_runs, the fresh-process workloads of chapter 03."""

import gc

import pytest

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


def test_serve_rejects_unknown_variants():
    with pytest.raises(ValueError, match="variant"):
        module_state_runs.serve("forgetful")


def test_rendered_cache_grows_but_adds_no_tracked_object_per_entry():
    gc.collect()
    before = len(gc.get_objects())
    for i in range(1000):
        module_state_runs.render_page(i)
    gc.collect()
    assert len(module_state_runs.rendered) == 1000
    assert len(gc.get_objects()) - before < 100
    module_state_runs.reset()
    assert module_state_runs.rendered == {}
