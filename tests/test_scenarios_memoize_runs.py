"""Tests for leaklab.scenarios.memoize_runs, the workloads of chapter 02."""

import gc
import itertools
import weakref

import pytest

from leaklab.measure import leak_rate, track
from leaklab.scenarios import memoize_runs as runs


@pytest.fixture(autouse=True)
def _reset():
    runs.reset()
    yield
    runs.reset()


# naive_memoize: the port of the chapter's memoize


def test_naive_memoize_computes_once_per_argument_and_keeps_everything():
    calls = []

    @runs.naive_memoize
    def square(x):
        calls.append(x)
        return x * x

    assert [square(3), square(3), square(4)] == [9, 9, 16]
    assert calls == [3, 4] and square.memo == {3: 9, 4: 16}
    assert square.__name__ == "square" and square.__wrapped__ is not None


def test_naive_memoize_keys_by_all_arguments_or_by_the_hasher():
    add = runs.naive_memoize(lambda a, b: a + b)
    assert (add(1, 2), add(1, 3)) == (3, 4) and set(add.memo) == {(1, 2), (1, 3)}
    first_only = runs.naive_memoize(lambda a, b: a + b, hasher=lambda a, b: a)
    assert (first_only(1, 2), first_only(1, 3)) == (3, 3)  # what a careless hasher does


# The memoized render of serve_diverse


@pytest.mark.parametrize("variant", runs.DIVERSE_VARIANTS)
def test_memoized_render_returns_what_render_item_returns(variant):
    render = runs.memoized_render(variant)
    assert render(5) == render(5) == runs.render_item(5)
    assert len(runs.render_item(5)) == runs.ITEM_BYTES and runs.currsize(render) == 1


def test_memoized_render_rejects_unknown_variants():
    with pytest.raises(ValueError, match="variant"):
        runs.memoized_render("forgetful")


@pytest.mark.parametrize("variant, currsize", [
    ("naive memoize", 3000), ("functools.cache", 3000),
    (runs.DIVERSE_VARIANTS[2], runs.BOUND), (runs.DIVERSE_VARIANTS[3], runs.BOUND),
    (runs.DIVERSE_VARIANTS[4], runs.BOUND),
])
def test_serve_diverse_grows_only_the_unbounded_caches(variant, currsize):
    result = runs.serve_diverse(variant, batches=3, per_batch=1000, pause=0)
    assert result["calls"] == 3000 and result["currsize"] == currsize
    expected = [min(n, currsize) for n in (1000, 2000, 3000)]
    assert result["sizes"] == expected
    assert runs.currsize(runs.renderers[variant]) == currsize  # kept after the call, like a service


def test_serve_diverse_reports_its_progress_per_batch():
    trace = track(runs.serve_diverse, "functools.cache", batches=4, per_batch=500, pause=0.02)
    assert trace.has_progress and trace.frame["done"].iloc[-1] == 2000
    assert trace.frame["done"].is_monotonic_increasing


def test_serve_requests_reports_its_progress_per_batch():
    trace = track(runs.serve_requests, "leaklab.memoize", batches=4, per_batch=100, pause=0.02)
    assert trace.has_progress and trace.frame["done"].iloc[-1] == 400
    assert trace.result == {"requests": 400, "alive": 0}


def test_currsize_counts_every_kind_of_store():
    for variant in runs.DIVERSE_VARIANTS:
        render = runs.memoized_render(variant, bound=2)
        for item in (1, 2, 3, 1):
            render(item)
        assert runs.currsize(render) == (3 if variant in runs.DIVERSE_VARIANTS[:2] else 2), variant


def test_serve_diverse_with_few_distinct_arguments_stays_small():
    result = runs.serve_diverse("functools.cache", distinct=10, batches=3, per_batch=1000, pause=0)
    assert result == {"calls": 3000, "currsize": 10, "sizes": [10, 10, 10]}
    with pytest.raises(ValueError, match="distinct"):
        runs.serve_diverse("functools.cache", distinct=0)


@pytest.mark.parametrize("variant, leaking", [
    ("naive memoize", True), ("functools.cache", True),
    (runs.DIVERSE_VARIANTS[2], False), (runs.DIVERSE_VARIANTS[3], False),
    (runs.DIVERSE_VARIANTS[4], False),
])
def test_unbounded_memoize_keeps_memory_per_new_argument(variant, leaking):
    render = runs.memoized_render(variant, bound=50)
    ids = itertools.count()
    rate = leak_rate(lambda: render(next(ids)), calls=300, warmup=100)
    assert rate.leaking is leaking
    if leaking:
        assert rate.bytes_per_call > runs.ITEM_BYTES


# Request-scoped objects with a cached method


@pytest.mark.parametrize(
    "variant, alive", [("functools.cache", 300), ("lru_cache", 128), ("leaklab.memoize", 0)]
)
def test_serve_requests_keeps_the_instances_each_cache_holds(variant, alive):
    gc.collect()
    result = runs.serve_requests(variant, batches=3, per_batch=100, pause=0)
    gc.collect()
    assert result == {"requests": 300, "alive": alive}
    runs.reset()
    gc.collect()
    assert runs.Quote.alive == 0


def test_a_deleted_quote_lives_on_in_lru_cache_and_dies_with_memoize():
    refs = {}
    for variant, cls in runs.REQUEST_VARIANTS.items():
        quote = cls(1)
        assert quote.total(0.2) == quote.total(0.2) == 121.2
        refs[variant] = weakref.ref(quote)
        del quote
    gc.collect()
    assert {variant: ref() is not None for variant, ref in refs.items()} == {
        "functools.cache": True, "lru_cache": True, "leaklab.memoize": False}


@pytest.mark.parametrize("variant, leaking", [("functools.cache", True), ("lru_cache", False),
                                              ("leaklab.memoize", False)])
def test_handle_request_keeps_memory_only_with_an_unbounded_method_cache(variant, leaking):
    ids = itertools.count()
    rate = leak_rate(lambda: runs.handle_request(variant, next(ids)), calls=300, warmup=200)
    assert rate.leaking is leaking
    if leaking:
        assert rate.bytes_per_call > runs.PAYLOAD_BYTES


def test_handle_request_rejects_unknown_variants():
    with pytest.raises(ValueError, match="variant"):
        runs.handle_request("forgetful")
    with pytest.raises(ValueError, match="variant"):
        runs.quote_class("forgetful")
    assert runs.quote_class("lru_cache") is runs.QuoteLRU


def test_reset_frees_what_the_caches_kept():
    result = runs.serve_diverse("functools.cache", batches=1, per_batch=10, pause=0)
    assert result["currsize"] == 10 and runs.renderers
    for variant in ("functools.cache", "lru_cache"):
        runs.handle_request(variant, 1)
    gc.collect()
    assert runs.Quote.alive == 2
    runs.reset()
    gc.collect()
    assert runs.Quote.alive == 0 and runs.renderers == {}
