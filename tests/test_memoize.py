"""Tests for leaklab.memoize: a bounded, method-safe, async-aware memoize (chapter 02).

Counts and bounds only, never timings. The concurrency tests make the memoized function slow
(a sleep) so that every caller arrives while the one call is still running.
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import copy
import functools
import gc
import inspect
import math
import pickle
import threading
import time
import traceback
import weakref
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leaklab.memoize import CacheInfo, memoize

N_WORKERS = 8
SLOW = 0.3  # seconds the deduplicated call takes: every worker arrives while it runs


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class DictStore:
    """The smallest object memoize(cache=...) accepts: get(key, default) and set(key, value)."""

    def __init__(self) -> None:
        self.data: dict = {}
        self.sets = 0

    def get(self, key, default=None):
        return self.data.get(key, default)

    def set(self, key, value) -> None:
        self.sets += 1
        self.data[key] = value


def counted(fn):
    """Wrap the one-parameter ``fn``; ``wrapper.calls`` counts the calls per argument.

    The wrapper keeps a one-parameter signature, so memoize generates its fast wrapper for it.
    """
    calls: Counter = Counter()

    def one(x):
        calls[x] += 1
        return fn(x)

    one.calls = calls
    return one


# --------------------------------------------------------------------------------------------
# Bad configuration fails at once, naming the argument


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"maxsize": True}, TypeError, "maxsize.*bool"),
        ({"maxsize": False}, TypeError, "maxsize.*bool"),
        ({"maxsize": 1.5}, TypeError, "maxsize"),
        ({"maxsize": "10"}, TypeError, "maxsize"),
        ({"maxsize": 0}, ValueError, "functools.cache"),
        ({"maxsize": -1}, ValueError, "functools.cache"),
        ({"maxsize": None}, ValueError, "functools.cache"),
        ({"ttl": True}, TypeError, "ttl"),
        ({"ttl": "10"}, TypeError, "ttl"),
        ({"ttl": [1]}, TypeError, "ttl"),
        ({"ttl": 0}, ValueError, "ttl"),
        ({"ttl": -1.0}, ValueError, "ttl"),
        ({"ttl": math.inf}, ValueError, "ttl"),
        ({"ttl": math.nan}, ValueError, "ttl"),
        ({"typed": 1}, TypeError, "typed"),
        ({"typed": None}, TypeError, "typed"),
        ({"key": "id"}, TypeError, "key must be callable"),
        ({"clock": 5}, TypeError, "clock must be callable"),
        ({"cache": object()}, TypeError, "cache must be an object with get"),
        ({"cache": {}}, TypeError, r"cache must .*lacks set\(\).*LimitableMap"),
        ({"cache": DictStore(), "maxsize": 10}, ValueError, "maxsize=10 cannot be combined"),
        ({"cache": DictStore(), "maxsize": 128}, ValueError, "maxsize=128 cannot be combined"),
        ({"cache": DictStore(), "ttl": 5}, ValueError, "ttl=5 cannot be combined"),
        ({"typed": True, "key": repr}, ValueError, "typed"),
    ],
)
def test_bad_configuration_fails_when_memoize_is_called(kwargs, error, match):
    with pytest.raises(error, match=match):
        memoize(**kwargs)  # no function yet: the decorator factory itself refuses


def test_accepted_configuration_edges():
    np = pytest.importorskip("numpy")
    tiny = memoize(maxsize=1, ttl=0.001, typed=True)(lambda x: x)
    assert tiny(1) == 1 and tiny.cache_info().maxsize == 1
    numpy_size = memoize(maxsize=np.int64(5))(lambda x: x)  # an int-like, as operator.index says
    assert type(numpy_size.cache_info().maxsize) is int
    assert memoize(ttl=10**9)(lambda x: x)(2) == 2
    keyed = memoize(cache=DictStore(), key=repr)(lambda x: x)
    assert keyed([1]) == [1]  # key= makes an unhashable argument usable


@pytest.mark.parametrize("bad", [10, "f", object()])
def test_fn_must_be_callable(bad):
    with pytest.raises(TypeError, match="memoize expects a function"):
        memoize(bad)
    with pytest.raises(TypeError, match="memoize expects a function"):
        memoize(maxsize=2)(bad)


def test_size_passed_positionally_gets_a_hint():
    with pytest.raises(TypeError, match=r"@memoize\(maxsize=10\)"):
        memoize(10)


def test_generator_functions_are_refused():
    def numbers():
        yield 1

    async def anumbers():
        yield 1

    for fn in (numbers, anumbers):
        with pytest.raises(TypeError, match="generator"):
            memoize(fn)


# --------------------------------------------------------------------------------------------
# Decorator forms, metadata, statistics


def test_decorator_with_and_without_arguments():
    @memoize
    def a(x):
        return x + 1

    @memoize()
    def b(x):
        return x + 2

    @memoize(maxsize=3)
    def c(x):
        return x + 3

    def d(x):
        return x + 4

    d = memoize(d, maxsize=5)
    assert (a(1), b(1), c(1), d(1)) == (2, 3, 4, 5)
    assert [f.cache_info().maxsize for f in (a, b, c, d)] == [128, 128, 3, 5]


def test_wraps_metadata_and_signature():
    def area(width: int, height: int = 2) -> int:
        """Multiply."""
        return width * height

    area.custom = "kept"
    wrapped = memoize(area)
    assert wrapped.__wrapped__ is area
    assert wrapped.__name__ == "area"
    assert wrapped.__qualname__ == area.__qualname__
    assert wrapped.__doc__ == "Multiply."
    assert wrapped.__module__ == __name__
    assert wrapped.__annotations__ == area.__annotations__
    assert wrapped.custom == "kept"
    assert inspect.signature(wrapped) == inspect.signature(area)
    assert wrapped(3) == 6 and wrapped(3, height=3) == 9


def test_cache_info_after_a_known_sequence_and_cache_clear():
    f = counted(lambda x: x * 10)
    m = memoize(maxsize=10)(f)
    assert isinstance(m.cache_info(), CacheInfo)
    assert m.cache_info() == (0, 0, 10, 0)
    for x in (1, 1, 2, 1, 3, 2):
        assert m(x) == x * 10
    assert m.cache_info() == CacheInfo(hits=3, misses=3, maxsize=10, currsize=3)
    m.cache_clear()
    assert m.cache_info() == (0, 0, 10, 0)
    m(1)
    assert sum(f.calls.values()) == 4  # recomputed after cache_clear
    assert m.cache_parameters() == {
        "maxsize": 10,
        "ttl": None,
        "typed": False,
        "key": None,
        "cache": None,
    }


def test_counts_match_functools_lru_cache_on_recursion():
    def fib_of(memo):
        @memo
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        return fib

    ours, theirs = fib_of(memoize(maxsize=1000)), fib_of(functools.lru_cache(maxsize=1000))
    assert ours(80) == theirs(80) == 23416728348467685
    assert ours.cache_info()[:2] == theirs.cache_info()[:2] == (78, 81)


def test_exceptions_are_not_cached():
    outcomes = iter([ValueError("first call fails"), 42])
    calls = []

    @memoize
    def flaky(x):
        calls.append(x)
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    with pytest.raises(ValueError, match="first call fails"):
        flaky(1)
    assert flaky(1) == 42 and flaky(1) == 42
    assert calls == [1, 1]
    assert flaky.cache_info() == (1, 2, 128, 1)


def test_a_coroutine_from_a_sync_function_is_refused_not_cached():
    async def work():
        return 1

    m = memoize(lambda x: work())  # returns a coroutine, but is not an async def
    for _ in range(2):
        with pytest.raises(TypeError, match="returned a coroutine"):
            m(1)
    assert m.cache_info() == (0, 2, 128, 0)


def test_a_failing_cache_set_does_not_strand_the_key():
    class Broken(DictStore):
        fail = True

        def set(self, key, value):
            if self.fail:
                raise OSError("cache down")
            super().set(key, value)

    store = Broken()
    m = memoize(cache=store)(lambda x: x + 1)
    with pytest.raises(OSError, match="cache down"):
        m(1)
    store.fail = False
    assert m(1) == 2 and m(1) == 2  # not stuck waiting for the first call
    assert m.cache_info()[:2] == (1, 2)


def test_memoized_functions_pickle_by_reference():
    assert pickle.loads(pickle.dumps(_module_level_square)) is _module_level_square


@memoize
def _module_level_square(x):
    return x * x


# --------------------------------------------------------------------------------------------
# Keys


def test_unhashable_arguments_raise_a_clear_type_error():
    m = memoize(lambda items: len(items))
    unhashable = r"cannot be used as a cache key \(unhashable type: 'list'\).*key="
    with pytest.raises(TypeError, match=unhashable):
        m([1, 2])
    generic = memoize(lambda *items: len(items))
    with pytest.raises(TypeError, match=r"hashable.*key="):
        generic({"a": 1}, 2)


def test_key_function_builds_the_key():
    calls = []

    def total(items, scale=1):
        calls.append(items)
        return sum(items) * scale

    m = memoize(key=lambda items, scale=1: (tuple(items), scale))(total)
    assert m([1, 2], scale=2) == 6
    assert m([1, 2], scale=2) == 6
    assert m([1, 2]) == 3
    assert len(calls) == 2
    assert m.cache_info()[:2] == (1, 2)


def test_key_function_returning_unhashable_is_named():
    m = memoize(key=lambda x: [x])(lambda x: x)
    with pytest.raises(TypeError, match=r"key= function.*returned a key"):
        m(1)


def test_typed_keeps_int_and_float_apart():
    untyped = counted(lambda x: type(x).__name__)
    typed = counted(lambda x: type(x).__name__)
    mu, mt = memoize(untyped), memoize(typed=True)(typed)
    assert mu(3) == "int" and mu(3.0) == "int"  # 3 == 3.0: one entry, like lru_cache
    assert mt(3) == "int" and mt(3.0) == "float"
    assert mu.cache_info().currsize == 1 and mt.cache_info().currsize == 2

    @memoize(typed=True)
    def generic(*args, **kwargs):
        return [type(a).__name__ for a in args]

    assert generic(3) == ["int"] and generic(3.0) == ["float"]


def test_positional_keyword_and_default_spellings_share_an_entry():
    calls = []

    def f(x, y=2):
        calls.append((x, y))
        return x * y

    m = memoize(f)
    assert m(3) == m(3, 2) == m(x=3) == m(3, y=2) == m(y=2, x=3) == 6
    assert calls == [(3, 2)]
    assert m.cache_info()[:2] == (4, 1)


def test_all_parameter_kinds():
    @memoize
    def f(a, b=2, /, c=3, *, d, e=5):
        return (a, b, c, d, e)

    assert f(1, d=4) == f(1, 2, 3, d=4, e=5) == (1, 2, 3, 4, 5)
    assert f(1, 9, c=8, d=7) == (1, 9, 8, 7, 5)
    assert f.cache_info()[:2] == (1, 2)
    with pytest.raises(TypeError):
        f(a=1, d=4)  # positional-only stays positional-only
    with pytest.raises(TypeError):
        f(1)  # missing keyword-only argument, as the plain function would say

    @memoize
    def nothing():
        return object()

    assert nothing() is nothing()


def test_generic_functions_key_like_lru_cache():
    @memoize
    def m(*args, **kwargs):
        return (args, kwargs)

    m(1)
    m(1)
    m((1,))  # not the same key as m(1)
    m(1, 2, a=3)
    m(1, 2, a=3)
    assert m.cache_info()[:2] == (2, 3)


def test_names_that_clash_with_the_generated_code_still_work():
    @memoize
    def f(__cache, TypeError, KeyError, type=int):  # noqa: A002, N803
        return (__cache, TypeError, KeyError, type)

    assert f(1, 2, 3) == (1, 2, 3, int) and f(1, 2, 3) == (1, 2, 3, int)
    assert f.cache_info()[:2] == (1, 1)


class HashCounter:
    """A key that counts its ``__hash__`` calls, as in CPython's ``test_lru_hash_only_once``."""

    def __init__(self, value, hash_value=None) -> None:
        self.value = value
        self.hash_value = hash(value) if hash_value is None else hash_value
        self.hashes = 0

    def __hash__(self) -> int:
        self.hashes += 1
        return self.hash_value

    def __eq__(self, other):
        return isinstance(other, HashCounter) and other.value == self.value

    def __repr__(self) -> str:
        return f"HashCounter({self.value!r})"


def _hash_once_subject(kind):
    """A memoized function of one kind of wrapper (maxsize=1), and how to call it with a key."""
    if kind == "method":

        class Holder:
            @memoize(maxsize=1)
            def get(self, x):
                return 1

        m = Holder().get
        return m, m
    one = memoize(maxsize=1)
    made = {
        "one parameter": (one(lambda x: 1), lambda m, k: m(k)),
        "two parameters": (one(lambda x, y: 1), lambda m, k: m(k, 1)),
        "keyword-only": (one(lambda x, *, y: 1), lambda m, k: m(1, y=k)),
        "typed": (memoize(maxsize=1, typed=True)(lambda x, y: 1), lambda m, k: m(k, 1)),
        "generic": (one(lambda *a, **kw: 1), lambda m, k: m(k, y=1)),
        "ttl": (memoize(maxsize=1, ttl=60, clock=FakeClock())(lambda x: 1), lambda m, k: m(k)),
    }
    m, call = made[kind]
    return m, functools.partial(call, m)


@pytest.mark.parametrize(
    "kind",
    ["one parameter", "two parameters", "keyword-only", "typed", "generic", "ttl", "method"],
)
def test_a_key_is_hashed_once_per_call_and_never_on_eviction(kind):
    # issue 10: CPython's test_lru_hash_only_once. memoize hashed a key 7 times on a miss and 3
    # more times when it was evicted (functools: once per call, never on eviction).
    m, f = _hash_once_subject(kind)
    key = HashCounter(5)
    assert f(key) == 1
    assert key.hashes == 1  # a miss: one hash
    assert f(key) == 1
    assert key.hashes == 2  # a hit: one more
    other = HashCounter(6)
    assert f(other) == 1
    assert key.hashes == 2 and other.hashes == 1  # evicting `key`: no hash of it
    assert f(key) == 1
    assert key.hashes == 3 and other.hashes == 1  # evicting `other` in turn
    info = m.cache_info()
    assert (info.hits, info.misses, info.currsize) == (1, 3, 1)


def test_keys_with_equal_hashes_are_kept_apart():
    # Keys are found by their hash, then compared: unequal keys sharing a hash are both kept.
    m = memoize(maxsize=4)(lambda x: repr(x))
    assert hash(-1) == hash(-2)
    a, b, c = HashCounter("a", 7), HashCounter("b", 7), HashCounter("c", 7)
    for _ in range(3):
        assert [m(-1), m(-2), m(a), m(b)] == ["-1", "-2", "HashCounter('a')", "HashCounter('b')"]
    assert m.cache_info() == (8, 4, 4, 4)
    assert m(c) == "HashCounter('c')"  # evicts one of them
    assert m.cache_info().currsize == 4
    for _ in range(2):
        assert [m(-1), m(-2), m(a), m(b), m(c)] == [
            "-1", "-2", "HashCounter('a')", "HashCounter('b')", "HashCounter('c')"
        ]
    assert m.cache_info().currsize == 4


def test_a_wrapper_given_scalars_then_objects_hashes_each_once_after_the_switch():
    # A wrapper whose first miss is an int runs its plain code (no check); the first object key
    # switches it back to its checked code for good: that one call hashes its key twice.
    m = memoize(maxsize=2)(lambda x: repr(x))
    plain_code = m.__code__
    assert m(1) == "1" and m.__code__ is not plain_code  # now the plain code
    key = HashCounter("k")
    assert m(key) == "HashCounter('k')" and key.hashes == 2  # the switch, once
    checked_code = m.__code__
    assert m(key) == "HashCounter('k')" and key.hashes == 3  # then once per call
    other = HashCounter("o")
    assert m(other) == "HashCounter('o')" and m(2) == "2"  # evicts key (and 1)
    assert key.hashes == 3 and other.hashes == 1
    assert m(1) == "1" and m.__code__ is checked_code  # for good
    assert m.cache_info().currsize == 2


def test_a_raw_key_never_matches_a_hashed_slot():
    # A lone argument that is not plain has the slot (marker, hash): no argument, not even the
    # tuple (marker-less) of that hash, finds its entry; nor does an int equal to the hash.
    m = memoize(lambda x: ("value of", x))
    a = HashCounter("a", 5)
    assert m(a) == ("value of", a)
    for other in (5, (5,), (5, 5)):
        assert m(other) == ("value of", other)
    assert m(5.0) == ("value of", 5)  # equal to 5: the same entry, as ever
    assert m(a) == ("value of", a) and m.cache_info() == (2, 4, 128, 4)
    pairs = memoize(lambda x, y: (x, y))
    assert pairs(a, 1) == (a, 1)
    assert pairs(hash((a, 1)), 1) == (hash((a, 1)), 1)  # the slot of (a, 1) is an int
    assert pairs(a, 1) == (a, 1) and pairs.cache_info() == (1, 2, 128, 2)


def test_defaults_the_caller_leaves_out_are_not_part_of_the_key():
    # issue 10: a list default made every call that left it out fail as "unhashable arguments",
    # where functools.lru_cache works (it keys only the arguments passed).
    got = []

    @memoize
    def g(x, cols=["a", "b"]):  # noqa: B006  # the point of the test
        got.append(cols)
        return (x, len(cols))

    assert g(1) == (1, 2) and g(1) == (1, 2) and g(x=1) == (1, 2)
    assert g.cache_info()[:2] == (2, 1)
    assert got == [["a", "b"]] and got[0] is g.__wrapped__.__defaults__[0]  # its own default
    with pytest.raises(TypeError, match="cannot be used as a cache key"):
        g(1, cols=["a", "b"])  # passed, a list is unhashable: as with functools
    assert g(1, ("a",)) == (1, 1)  # a tuple passed is a key like any other

    @memoize
    def h(a, b={}, /, c=2, *, d=[3], e=4):  # noqa: B006
        return (a, b, c, d, e)

    assert h(1) == h(1, c=2) == h(1, e=4) == (1, {}, 2, [3], 4)  # constants still share
    assert h.cache_info()[:2] == (2, 1)
    assert h(1, d=(5,)) == (1, {}, 2, (5,), 4)

    class Table:
        @memoize
        def select(self, where, cols=["*"]):  # noqa: B006
            return (where, cols)

    t = Table()
    assert t.select("x") == t.select("x") == ("x", ["*"])
    assert t.select.cache_info()[:2] == (1, 1)
    assert inspect.signature(g) == inspect.signature(g.__wrapped__)
    assert str(inspect.signature(t.select)) == "(where, cols=['*'])"


def test_an_object_default_is_not_hashed_when_left_out():
    # A default that is not a plain constant (a config object, an enum) is hashable but may
    # hash slowly: like functools, a call that leaves it out does not hash it, and a call that
    # passes it is a different entry.
    config = HashCounter("config")
    m = memoize(lambda x, cfg=config: (x, cfg.value))
    assert m(1) == m(1) == m(x=1) == (1, "config")
    assert config.hashes == 0 and m.cache_info()[:2] == (2, 1)
    assert m(1, config) == (1, "config")
    assert config.hashes == 1 and m.cache_info()[:2] == (2, 2)


@pytest.mark.parametrize("name", ["len", "hash", "id", "type"])
def test_a_memoized_builtin_can_replace_that_builtin(name):
    # issue 10: memoize(len) installed as builtins.len recursed forever: the key code, the
    # store and the method table called len() (hash(), id(), type()) at call time.
    original = getattr(builtins, name)
    fast = memoize(maxsize=2)(original)

    class Box:
        @memoize(maxsize=2)
        def get(self, x, y=1):
            return (x, y)

    box = Box()
    plain = memoize(maxsize=2)(lambda x, y=1: (x, y))
    generic = memoize(maxsize=2)(lambda *args, **kwargs: args)
    timed = memoize(maxsize=2, ttl=60)(lambda x: x)
    results = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(builtins, name, fast)
        for x in (1, 2, 3, 1, 1, "abc"):
            results.append(
                (fast("abc"), box.get(x), Box().get(x), plain(x), generic(x, k=1), timed(x))
            )
    abc = ("abc", 1)
    assert results[-1] == (original("abc"), abc, abc, abc, ("abc",), "abc")
    assert fast.cache_info().hits >= 5


def test_a_type_error_from_the_store_is_not_blamed_on_the_arguments():
    # issue 10: any TypeError from a cache= store's get() was reported as "the arguments cannot
    # be used as a cache key"; only a TypeError from hashing the key is that.
    class Picky(DictStore):
        def get(self, key, default=None):
            raise TypeError("the store's own bug")

    m = memoize(cache=Picky())(lambda x: x)
    with pytest.raises(TypeError, match="^the store's own bug$"):
        m(1)
    with pytest.raises(TypeError, match=r"cannot be used as a cache key \(unhashable type"):
        m([1])  # the arguments are at fault: said so, even though the store failed first
    m2 = memoize(cache=DictStore())(lambda x, y: x)
    with pytest.raises(TypeError, match="cannot be used as a cache key"):
        m2([1], 2)

    def broken_key(x):
        raise TypeError("the key function's own bug")

    with pytest.raises(TypeError, match="^the key function's own bug$"):
        memoize(key=broken_key)(lambda x: x)(1)

    class Touchy:
        def __hash__(self):
            return 1

        def __eq__(self, other):
            raise TypeError("cannot compare")

    t = memoize(lambda x: 1)
    assert t(Touchy()) == 1
    with pytest.raises(TypeError, match="^cannot compare$"):
        t(Touchy())  # a key's own __eq__ failing is not "unhashable" either


# --------------------------------------------------------------------------------------------
# The bound: eviction and expiry


def test_size_never_exceeds_maxsize():
    f = counted(lambda x: x)
    m = memoize(maxsize=10)(f)
    for x in range(1000):
        assert m(x) == x
        assert m.cache_info().currsize <= 10
    assert m.cache_info() == (0, 1000, 10, 10)


def test_recently_used_entries_survive_eviction():
    f = counted(lambda x: x)
    m = memoize(maxsize=2)(f)
    m("a")
    m("b")
    m("a")  # a hit: "a" is now more recently used than "b"
    m("c")  # evicts "b"
    m("a")
    assert f.calls["a"] == 1
    m("b")
    assert f.calls["b"] == 2


def test_a_hot_key_survives_a_scan_of_cold_keys():
    f = counted(lambda x: x)
    m = memoize(maxsize=4)(f)
    for cold in range(100):
        m("hot")
        m(cold)
    assert f.calls["hot"] == 1


def test_ttl_with_an_injected_clock():
    clock = FakeClock()
    f = counted(lambda x: (x, clock.now))
    m = memoize(ttl=10, clock=clock)(f)
    first = m(1)
    clock.advance(9.99)
    assert m(1) is first
    clock.advance(0.01)  # exactly ttl seconds later: stale
    second = m(1)
    assert second == (1, clock.now) and second is not first
    assert f.calls[1] == 2
    assert m.cache_info() == (1, 2, 128, 1)
    clock.advance(10)
    assert m.cache_info().currsize == 0  # expired entries are not counted, and dropped


def test_expired_entries_are_dropped_when_new_ones_arrive():
    clock = FakeClock()
    m = memoize(maxsize=100, ttl=5, clock=clock)(lambda x: x)
    for x in range(50):
        m(x)
    clock.advance(6)
    m("new")
    assert len(m.cache_info()) == 4
    assert m.cache_info().currsize == 1


def test_ttl_and_maxsize_together():
    clock = FakeClock()
    f = counted(lambda x: x)
    m = memoize(maxsize=3, ttl=5, clock=clock)(f)
    for x in range(10):
        m(x)
        clock.advance(1)
    assert m.cache_info().currsize == 3
    m(9)
    assert f.calls[9] == 1


@settings(max_examples=60, deadline=None)
@given(
    maxsize=st.integers(1, 6),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("call"), st.integers(0, 9)),
            st.tuples(st.just("tick"), st.floats(0, 4)),
        ),
        max_size=80,
    ),
)
def test_property_results_counts_bounds_and_freshness(maxsize, ops):
    """Against the plain function: results are right and never older than ttl; the counts add
    up; the size stays within maxsize; the key just called is always held."""
    ttl = 5.0
    clock = FakeClock(0.0)
    calls = Counter()

    def compute(x):
        calls[x] += 1
        return (x * x, clock.now)

    m = memoize(maxsize=maxsize, ttl=ttl, clock=clock)(compute)
    n_calls = 0
    for op, arg in ops:
        if op == "tick":
            clock.advance(arg)
            continue
        value, computed_at = m(arg)
        n_calls += 1
        assert value == arg * arg
        assert clock.now - computed_at < ttl + 1e-9
        info = m.cache_info()
        assert info.hits + info.misses == n_calls
        assert info.misses == sum(calls.values())
        assert 1 <= info.currsize <= maxsize
        before = sum(calls.values())
        m(arg)
        n_calls += 1
        assert sum(calls.values()) == before  # the key just called is held


# --------------------------------------------------------------------------------------------
# cache=: any store with get(key, default) and set(key, value)


def test_cache_with_a_plain_dict_like_object():
    store = DictStore()
    f = counted(lambda x: x * 2)
    m = memoize(cache=store)(f)
    assert m(1) == 2 and m(1) == 2 and m(2) == 4
    assert store.data == {1: 2, 2: 4}
    assert store.sets == 2
    assert m.cache_info() == (1, 2, None, None)  # no bound nor len() to report
    with pytest.raises(TypeError, match=r"clear\(\)"):
        m.cache_clear()  # DictStore has no clear(): said, not silently ignored
    m2 = memoize(cache=DictStore())(lambda x: None)
    assert m2(1) is None and m2(1) is None
    assert m2.cache_info()[:2] == (1, 1)


def test_cache_with_limitable_map():
    caches = pytest.importorskip("leaklab.caches")
    store = caches.LimitableMap(100)
    f = counted(lambda x: -x)
    m = memoize(cache=store)(f)
    for x in range(1000):
        assert m(x) == -x
    assert len(store) == 100
    assert m.cache_info() == CacheInfo(hits=0, misses=1000, maxsize=100, currsize=100)
    assert m(999) == -999 and f.calls[999] == 1  # the newest are held
    m.cache_clear()
    assert len(store) == 0 and m.cache_info() == (0, 0, 100, 0)


def test_cache_with_lru_cache_and_its_ttl():
    caches = pytest.importorskip("leaklab.caches")
    clock = FakeClock()
    store = caches.LRUCache(2, ttl=10, clock=clock)
    f = counted(lambda x: x)
    m = memoize(cache=store)(f)
    m("a")
    m("b")
    m("a")
    m("c")  # the store evicts "b", its least recently used
    assert sorted(store.keys()) == ["a", "c"]
    clock.advance(10)
    m("a")
    assert f.calls["a"] == 2  # the store's ttl applies
    assert m.cache_info().maxsize == 2


def test_cache_with_limitable_map_shared_by_threads():
    caches = pytest.importorskip("leaklab.caches")
    store = caches.LimitableMap(50)
    m = memoize(cache=store)(lambda x: x * 3)

    def work(offset):
        for x in range(400):
            assert m((x * 7 + offset) % 120) == ((x * 7 + offset) % 120) * 3

    threads = [threading.Thread(target=work, args=(i,)) for i in range(N_WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store) == 50
    assert all(store.get(k) == k * 3 for k in list(store))


# --------------------------------------------------------------------------------------------
# Methods: one cache per instance, and instances are collected


class Service:
    def __init__(self) -> None:
        self.calls = 0

    @memoize(maxsize=16)
    def price(self, item, qty=1):
        """The price."""
        self.calls += 1
        return (id(self), item, qty)


def test_each_instance_has_its_own_cache():
    a, b = Service(), Service()
    assert a.price("x") == (id(a), "x", 1)
    assert a.price("x") == a.price(item="x", qty=1)
    assert b.price("x") == (id(b), "x", 1)
    assert (a.calls, b.calls) == (1, 1)
    assert a.price.cache_info() == (2, 1, 16, 1)
    assert b.price.cache_info() == (0, 1, 16, 1)
    assert Service.price(a, "x") == (id(a), "x", 1)  # the unbound call uses a's cache
    assert a.calls == 1
    assert a.price == a.price and a.price.__func__ is a.price.__func__  # one per instance
    assert a.price.__self__ is a and a.price.cache_info is not b.price.cache_info
    assert a.price.__name__ == "price" and a.price.__doc__ == "The price."
    assert list(inspect.signature(a.price).parameters) == ["item", "qty"]


def test_copies_and_unpickled_instances_get_their_own_cache():
    original = Service()
    original.price("x")
    for twin in (
        copy.copy(original),
        copy.deepcopy(original),
        pickle.loads(pickle.dumps(original)),
    ):
        assert twin.price("x") == (id(twin), "x", 1)  # computed on the twin, not the original
        assert twin.price.cache_info() == (0, 1, 16, 1)
    assert original.price.cache_info() == (0, 1, 16, 1)


def test_class_level_cache_info_sums_live_instances_and_clear_clears_all():
    class Shop:
        @memoize(maxsize=4)
        def get(self, x):
            return x

    a, b = Shop(), Shop()
    for x in (1, 1, 2):
        a.get(x)
    b.get(1)
    assert Shop.get.cache_info() == (1, 3, 4, 3)
    b.get.cache_clear()
    assert b.get.cache_info() == (0, 0, 4, 0)
    assert Shop.get.cache_info() == (1, 2, 4, 2)
    Shop.get.cache_clear()
    assert Shop.get.cache_info() == (0, 0, 4, 0)
    assert repr(Shop.get).startswith("<memoized method")


def test_instances_are_collected():
    s = Service()
    s.price("x")
    ref = weakref.ref(s)
    del s
    gc.collect()
    assert ref() is None


def test_instances_are_freed_without_the_cycle_collector():
    class Thing:
        @memoize
        def compute(self, x):
            return [x]

    gc.disable()
    try:
        things = [Thing() for _ in range(200)]
        for t in things:
            t.compute(1)
            t.compute(1)
        refs = [weakref.ref(t) for t in things]
        assert Thing.compute.cache_info() == (200, 200, 128, 200)
        del things, t
        assert all(r() is None for r in refs)  # refcounting alone: no cycle was made
        assert Thing.compute.cache_info() == (0, 0, 128, 0)  # their caches went with them
    finally:
        gc.enable()


def test_functools_lru_cache_on_a_method_keeps_instances_alive_for_contrast():
    class Leaky:
        @functools.lru_cache(maxsize=16)  # noqa: B019  # the trap, on purpose
        def compute(self, x):
            return x

    obj = Leaky()
    obj.compute(1)
    ref = weakref.ref(obj)
    del obj
    gc.collect()
    assert ref() is not None


def test_slots_without_weakref_fail_clearly():
    class Slotted:
        __slots__ = ("x",)

        @memoize
        def double(self, y):
            return y * 2

    with pytest.raises(TypeError, match="__weakref__"):
        Slotted().double(1)


def test_slots_with_weakref_work_and_are_collected():
    class Slotted:
        __slots__ = ("__weakref__", "x")

        @memoize
        def double(self, y):
            return y * 2

    obj = Slotted()
    assert obj.double(2) == 4 and obj.double(2) == 4
    assert obj.double.cache_info()[:2] == (1, 1)
    ref = weakref.ref(obj)
    del obj
    gc.collect()
    assert ref() is None


def test_unhashable_instances_work():
    class Record:
        __hash__ = None  # type: ignore[assignment]

        def __eq__(self, other):
            return True

        @memoize
        def value(self, x):
            return (id(self), x)

    a, b = Record(), Record()
    assert a.value(1) != b.value(1)  # equal instances still get their own caches


def test_a_method_on_a_temporary_instance_works():
    # issue 10: in `Parser("a b").words()` nothing else holds the instance, which was freed
    # between the attribute lookup and the call: the miss raised ReferenceError (lru_cache works).
    class Parser:
        def __init__(self, text):
            self.text = text

        @memoize
        def words(self):
            return self.text.split()

        @memoize
        def count(self, *extra, **options):  # the generic wrapper
            return len(self.text.split()) + len(extra)

        @memoize(cache=DictStore())  # one store shared by the instances
        def first(self, n=1):
            return self.text.split()[:n]

        @memoize(ttl=60)
        def last(self, n=1):
            return self.text.split()[-n:]

        @memoize
        async def awords(self):
            await asyncio.sleep(0)
            return self.text.split()

        @property
        @memoize
        def size(self):
            return len(self.text)

    gc.disable()  # freed by reference counting alone, at once
    try:
        # (not inside `assert`, where pytest would keep the temporary for its report)
        got = [
            Parser("a b").words(),
            Parser("a b c").count(1),
            Parser("a b").first(),
            Parser("a b").last(),
            asyncio.run(Parser("x y").awords()),
            Parser("xyz").size,
            Parser.words(Parser("u v")),
        ]
        assert got == [["a", "b"], 4, ["a"], ["b"], ["x", "y"], 3, ["u", "v"]]
        assert Parser.words.cache_info() == (0, 0, 128, 0)  # each cache went with its instance
    finally:
        gc.enable()


def test_the_instance_is_held_for_the_call_only():
    # The bound method holds its instance, like any bound method; the caches never do. So the
    # instance lives as long as the call (or a kept bound method), and not a moment longer.
    refs = []

    class Parser:
        def __init__(self, text):
            self.text = text
            refs.append(weakref.ref(self))

        @memoize
        def words(self):
            return self.text.split()

    gc.disable()  # reference counting alone
    try:
        got = Parser("p q").words()  # (not inside `assert`, which keeps the temporary)
        assert got == ["p", "q"] and refs[-1]() is None  # freed as soon as the call returned
        kept = Parser("r s")
        words = kept.words
        del kept
        assert refs[-1]() is not None  # held by the bound method
        assert words() == ["r", "s"] and words() == ["r", "s"]
        assert words.cache_info()[:2] == (1, 1)
        del words
        assert refs[-1]() is None  # the bound method dropped: freed, and its cache with it
        assert Parser.words.cache_info() == (0, 0, 128, 0)
    finally:
        gc.enable()


def test_a_result_that_refers_to_its_instance_is_released_by_cache_clear():
    class Parent:
        @memoize
        def child(self, name):
            return (name, self)  # refers back to self: documented as not to be memoized

    parent = Parent()
    parent.child("a")
    ref = weakref.ref(parent)
    del parent
    gc.collect()
    assert ref() is not None  # held by its own cached result
    Parent.child.cache_clear()
    gc.collect()
    assert ref() is None


def test_property_over_memoize():
    class Lazy:
        def __init__(self):
            self.calls = 0

        @property
        @memoize
        def value(self):
            self.calls += 1
            return self.calls

    obj = Lazy()
    assert obj.value == 1 and obj.value == 1 and obj.calls == 1
    ref = weakref.ref(obj)
    del obj
    gc.collect()
    assert ref() is None


def test_staticmethod_and_classmethod():
    calls = Counter()

    class Tools:
        @staticmethod
        @memoize
        def static_below(x):
            calls["below", x] += 1
            return x + 1

        @memoize
        @staticmethod
        def static_above(x):
            calls["above", x] += 1
            return x + 2

        @memoize
        @classmethod
        def klass(cls, x):
            calls["class", x] += 1
            return (cls.__name__, x)

        @classmethod
        @memoize
        def klass_below(cls, x):
            calls["class below", x] += 1
            return (cls.__name__, x)

    for _ in range(2):
        assert Tools.static_below(1) == 2 and Tools().static_below(1) == 2
        assert Tools.static_above(1) == 3 and Tools().static_above(1) == 3
        assert Tools.klass(1) == ("Tools", 1) and Tools().klass(1) == ("Tools", 1)
        assert Tools.klass_below(1) == ("Tools", 1) and Tools().klass_below(1) == ("Tools", 1)
    assert set(calls.values()) == {1}
    assert Tools.static_below.cache_info()[:2] == (3, 1)


def test_method_with_a_shared_cache_keeps_instances_apart():
    caches = pytest.importorskip("leaklab.caches")
    store = caches.LimitableMap(10)

    class Account:
        def __init__(self, owner):
            self.owner = owner

        @memoize(cache=store)
        def greet(self, greeting):
            return f"{greeting}, {self.owner}"

    ann, bob = Account("ann"), Account("bob")
    assert ann.greet("hi") == "hi, ann" and bob.greet("hi") == "hi, bob"
    assert ann.greet("hi") == "hi, ann"
    assert Account.greet.cache_info() == (1, 2, 10, 2)
    many = [Account(str(i)) for i in range(50)]
    for account in many:
        assert account.greet("yo") == f"yo, {account.owner}"
    assert len(store) == 10  # one bound for all the instances together
    ref = weakref.ref(ann)
    del ann
    gc.collect()
    assert ref() is None
    Account.greet.cache_clear()
    assert len(store) == 0 and Account.greet.cache_info() == (0, 0, 10, 0)


def test_method_with_key_and_generic_signature():
    class Repo:
        @memoize(key=lambda ids: tuple(sorted(ids)))
        def load(self, ids):
            return len(ids)

        @memoize
        def anything(self, *args, **kwargs):
            return (args, kwargs)

    r = Repo()
    assert r.load([2, 1]) == 2 and r.load([1, 2]) == 2
    assert r.load.cache_info()[:2] == (1, 1)
    assert r.anything(1, a=2) == ((1,), {"a": 2})
    assert r.anything(1, a=2) == ((1,), {"a": 2})
    assert r.anything.cache_info()[:2] == (1, 1)


# --------------------------------------------------------------------------------------------
# Threads: one call per key, exceptions shared and not cached, no deadlock on recursion


def _run_together(target, n=N_WORKERS):
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list = [None] * n

    def worker(i):
        barrier.wait()
        try:
            results[i] = target(i)
        except BaseException as exc:  # noqa: BLE001  # reported to the test
            errors[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive(), "a worker is stuck"
    return results, errors


def test_threads_missing_the_same_key_call_once():
    calls = []

    @memoize
    def slow(x):
        calls.append(x)
        time.sleep(SLOW)
        return object()

    results, errors = _run_together(lambda i: slow("k"))
    assert errors == [None] * N_WORKERS
    assert calls == ["k"]
    assert all(r is results[0] for r in results)
    info = slow.cache_info()
    assert info.hits + info.misses == N_WORKERS and info.currsize == 1


def test_threads_get_the_exception_and_it_is_not_cached():
    calls = []

    @memoize
    def failing(x):
        calls.append(x)
        time.sleep(SLOW)
        if len(calls) == 1:
            raise RuntimeError("backend down")
        return "ok"

    _, errors = _run_together(lambda i: failing("k"))
    assert calls == ["k"]
    assert all(isinstance(e, RuntimeError) and "backend down" in str(e) for e in errors)
    assert failing("k") == "ok" and calls == ["k", "k"]


def test_threads_missing_different_keys_run_concurrently():
    started = threading.Barrier(N_WORKERS, timeout=10)

    @memoize
    def meet(x):
        started.wait()  # only returns once every key's call is running at the same time
        return x

    results, errors = _run_together(meet)
    assert errors == [None] * N_WORKERS and results == list(range(N_WORKERS))


def test_threads_hammering_a_small_cache_stay_consistent():
    calls = Counter()
    lock = threading.Lock()

    @memoize(maxsize=8)
    def square(x):
        with lock:
            calls[x] += 1
        return x * x

    per_thread = 3000

    def work(i):
        for n in range(per_thread):
            x = (n * 7 + i * 13) % 40
            assert square(x) == x * x
        return True

    results, errors = _run_together(work)
    assert errors == [None] * N_WORKERS and all(results)
    info = square.cache_info()
    assert info.currsize <= 8
    assert sum(calls.values()) <= info.misses  # the waiters of a shared call count as misses
    assert info.misses <= info.hits + info.misses <= N_WORKERS * per_thread  # hits may be lost


def test_recursive_functions_do_not_deadlock():
    calls = Counter()

    @memoize(maxsize=1000)
    def fib(n):
        calls[n] += 1
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    results, errors = _run_together(lambda i: fib(150 + i % 2))
    assert errors == [None] * N_WORKERS
    assert set(results) == {fib(150), fib(151)} and fib(151) == 16130531424904581415797907386349
    assert set(calls.values()) == {1}  # every key computed exactly once across the threads


def test_recursion_on_the_same_key_calls_through():
    depth = []

    @memoize
    def again(x):
        depth.append(x)
        if len(depth) < 3:
            return again(x)  # the same key, while its own call runs: no self-deadlock
        return len(depth)

    assert again("k") == 3
    assert again("k") == 3 and depth == ["k", "k", "k"]


@pytest.mark.parametrize("n", [2, 3])
def test_a_cycle_across_threads_does_not_deadlock(n):
    # issue 10: thread A's f(1) needs f(2) while thread B's f(2) needs f(1). Each waited for the
    # other's call forever (lru_cache returns). Now the thread that would close the cycle calls
    # the function itself.
    all_inside = threading.Barrier(n, timeout=5)
    inside = threading.local()

    @memoize
    def f(x):
        if not getattr(inside, "busy", False):
            inside.busy = True
            all_inside.wait()  # every thread is computing its own key
            f(x % n + 1)  # ... and needs the next thread's: a cycle through all of them
        return x * 10

    results: list = [None] * n

    def work(i):
        results[i] = f(i + 1)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads), "deadlocked"
    assert results == [10 * (i + 1) for i in range(n)]
    assert [f(i + 1) for i in range(n)] == results and f.cache_info().currsize == n


def test_each_waiter_gets_its_own_exception_and_traceback():
    # issue 10: the threads waiting for one failing call all raised the same exception object,
    # whose traceback grew with each of them (8 waiters: 40 frames).
    class BackendDown(RuntimeError):
        pass

    calls = []

    @memoize
    def failing(x):
        calls.append(x)
        time.sleep(SLOW)
        raise BackendDown("backend down", 503) from KeyError("node-3")

    _, errors = _run_together(lambda i: failing("k"))
    assert calls == ["k"]
    assert all(type(e) is BackendDown and e.args == ("backend down", 503) for e in errors)
    assert all(isinstance(e.__cause__, KeyError) for e in errors)
    assert len({id(e) for e in errors}) == N_WORKERS  # one each
    frames = [traceback.extract_tb(e.__traceback__) for e in errors]
    assert all(f[-1].name == "failing" for f in frames)  # down to where it was raised
    lengths = sorted(len(f) for f in frames)
    assert lengths[-1] <= 10, lengths  # bounded
    assert len(set(lengths[1:])) == 1, lengths  # the same for every waiter (the caller: fewer)
    assert failing.cache_info().currsize == 0


def test_method_threads_share_one_call_per_instance():
    class Client:
        def __init__(self):
            self.calls = 0

        @memoize
        def fetch(self, x):
            self.calls += 1
            time.sleep(SLOW)
            return x

    client = Client()
    _, errors = _run_together(lambda i: client.fetch("k"))
    assert errors == [None] * N_WORKERS and client.calls == 1


# --------------------------------------------------------------------------------------------
# async def: the awaited result is cached, and concurrent awaits share one call


def test_async_caches_the_result_not_the_coroutine():
    calls = []

    @memoize
    async def fetch(x):
        calls.append(x)
        await asyncio.sleep(0)
        return x * 2

    assert inspect.iscoroutinefunction(fetch)

    async def main():
        return [await fetch(2), await fetch(2), await fetch(x=2)]

    assert asyncio.run(main()) == [4, 4, 4]
    assert asyncio.run(main()) == [4, 4, 4]  # another event loop: the results stay
    assert calls == [2]
    assert fetch.cache_info() == (5, 1, 128, 1)


def test_concurrent_tasks_share_one_call():
    calls = []

    @memoize
    async def slow(x):
        calls.append(x)
        await asyncio.sleep(SLOW)
        return object()

    async def main():
        return await asyncio.gather(*(slow("k") for _ in range(N_WORKERS)))

    results = asyncio.run(main())
    assert calls == ["k"]
    assert all(r is results[0] for r in results)
    assert slow.cache_info() == (0, N_WORKERS, 128, 1)


def test_async_exceptions_reach_every_waiter_and_are_not_cached():
    calls = []

    @memoize
    async def failing(x):
        calls.append(x)
        await asyncio.sleep(SLOW)
        if len(calls) == 1:
            raise RuntimeError("backend down")
        return "ok"

    async def main():
        first = await asyncio.gather(
            *(failing("k") for _ in range(N_WORKERS)), return_exceptions=True
        )
        return first, await failing("k")

    first, second = asyncio.run(main())
    assert all(isinstance(e, RuntimeError) for e in first)
    assert second == "ok" and calls == ["k", "k"]


def test_cancelling_one_waiter_does_not_cancel_the_shared_call():
    calls = []

    @memoize
    async def slow(x):
        calls.append(x)
        await asyncio.sleep(SLOW)
        return "done"

    async def main():
        first = asyncio.create_task(slow("k"))
        second = asyncio.create_task(slow("k"))
        await asyncio.sleep(SLOW / 3)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    assert asyncio.run(main()) == "done"
    assert calls == ["k"] and slow.cache_info().currsize == 1


def test_a_failure_nobody_awaits_is_not_reported_as_unretrieved():
    reported = []

    @memoize
    async def failing(x):
        await asyncio.sleep(SLOW / 3)
        raise RuntimeError("nobody is listening")

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: reported.append(ctx))
        waiter = asyncio.create_task(failing(1))
        await asyncio.sleep(0.01)
        waiter.cancel()
        await asyncio.sleep(SLOW)  # the shared call fails with no one waiting
        gc.collect()

    asyncio.run(main())
    gc.collect()
    assert reported == []
    assert failing.cache_info().currsize == 0


def test_a_cycle_across_tasks_does_not_deadlock():
    # The task computing f(1) awaits f(2) while the task computing f(2) awaits f(1): each waited
    # for the other forever. As with threads, the task that would close the cycle calls through.
    busy = contextvars.ContextVar("busy", default=False)

    async def main():
        arrived: list = []
        all_inside = asyncio.Event()

        @memoize
        async def f(x):
            if not busy.get():
                busy.set(True)
                arrived.append(x)
                if len(arrived) == 2:
                    all_inside.set()
                await all_inside.wait()
                await f(3 - x)
            return x * 10

        return await asyncio.wait_for(asyncio.gather(f(1), f(2)), timeout=5)

    assert asyncio.run(main()) == [10, 20]


def test_async_recursion_and_ttl():
    clock = FakeClock()
    calls = Counter()

    @memoize(ttl=5, clock=clock)
    async def fib(n):
        calls[n] += 1
        return n if n < 2 else await fib(n - 1) + await fib(n - 2)

    assert asyncio.run(fib(60)) == 1548008755920
    assert set(calls.values()) == {1}
    clock.advance(5)
    assert asyncio.run(fib(3)) == 2
    assert calls[3] == 2


def test_async_methods_per_instance_and_collected():
    class Api:
        def __init__(self):
            self.calls = 0

        @memoize
        async def get(self, x):
            self.calls += 1
            await asyncio.sleep(SLOW / 3)
            return x

    api = Api()

    async def main(api):
        return await asyncio.gather(*(api.get(1) for _ in range(N_WORKERS)))

    assert asyncio.run(main(api)) == [1] * N_WORKERS
    assert api.calls == 1
    assert inspect.iscoroutinefunction(api.get)
    ref = weakref.ref(api)
    del api
    gc.collect()
    assert ref() is None
