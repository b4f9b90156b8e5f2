"""The generated wrappers of ``leaklab.memoize`` against the plain algorithm they speed up.

``leaklab.memoize.decorator.reference_call`` is the algorithm chapter 02 shows (look up, hit,
or call, store and bound); ``wrappers.py`` generates the fast wrappers that ``memoize`` returns.
With one thread, the two must agree call by call: the same results, the same calls of the
function, the same ``cache_info()``, for any sequence of calls, clock moves and clears.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from leaklab.clock import FakeClock
from leaklab.memoize import memoize
from leaklab.memoize.decorator import Options, reference_wrapper
from leaklab.memoize.keys import make_key


class Obj:
    """An argument that is not a builtin scalar, with a chosen hash (so that keys collide)."""

    def __init__(self, value: int, hash_value: int) -> None:
        self.value, self.hash_value = value, hash_value

    def __hash__(self) -> int:
        return self.hash_value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Obj) and other.value == self.value

    def __repr__(self) -> str:
        return f"Obj({self.value}, {self.hash_value})"


class FifoStore:
    """A tiny ``cache=`` store: at most ``maxsize`` keys, the oldest dropped first."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize, self.data = maxsize, {}

    def get(self, key: Any, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: Any, value: Any) -> None:
        self.data.pop(key, None)
        if len(self.data) >= self.maxsize:
            del self.data[next(iter(self.data))]
        self.data[key] = value

    def clear(self) -> None:
        self.data.clear()

    def __len__(self) -> int:
        return len(self.data)


# Arguments: small ints (and floats and bools equal to them), str, tuples of scalars, objects
# with colliding hashes, and one that makes the function raise (never cached).
ARGUMENTS = st.one_of(
    st.integers(-2, 6),
    st.integers(0, 3).map(float),
    st.booleans(),
    st.sampled_from(["a", "b", "boom"]),
    st.tuples(st.integers(0, 2), st.sampled_from(["x", "y"])),
    st.builds(Obj, st.integers(0, 3), st.integers(0, 1)),
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("call"), ARGUMENTS, ARGUMENTS),
        st.tuples(st.just("advance"), st.sampled_from([1.0, 5.0, 10.0])),
        st.tuples(st.just("info")),
        st.tuples(st.just("clear")),
    ),
    min_size=4,
    max_size=40,
)

# Each kind of generated wrapper: a function of that shape over `fn` (memoize reads its
# parameters), how a step calls it with two arguments, and the key the reference gives that call.
SHAPES: dict[str, tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]] = {
    "one parameter": (
        lambda fn: lambda x: fn(x),
        lambda f, a, b: f(a),
        lambda args, kwargs: args[0],
    ),
    "two parameters": (
        lambda fn: lambda x, y: fn(x, y),
        lambda f, a, b: f(a, b),
        lambda args, kwargs: args,
    ),
    "generic": (
        lambda fn: lambda *args, **kwargs: fn(*args, **kwargs),
        lambda f, a, b: f(a, y=b),
        lambda args, kwargs: make_key(args, kwargs, False),
    ),
}
# memoize's arguments for each store (a new store each time: one for each side).
STORES: dict[str, Callable[[FakeClock], dict[str, Any]]] = {
    "maxsize=3": lambda clock: {"maxsize": 3},
    "maxsize=3, ttl=10": lambda clock: {"maxsize": 3, "ttl": 10.0, "clock": clock},
    "cache=FifoStore(3)": lambda clock: {"cache": FifoStore(3)},
}


def _outcome(call: Callable[..., Any], *args: Any) -> Any:
    """What ``call(*args)`` returns, or the error it raises."""
    try:
        return call(*args)
    except ValueError as exc:
        return ("raised", str(exc))


@pytest.mark.parametrize("store", list(STORES))
@pytest.mark.parametrize("shape", list(SHAPES))
@settings(max_examples=80, deadline=None)
@given(steps=STEPS)
# Unequal keys with equal hashes are two entries; a result is stale from the very moment its ttl
# has passed, with a plain key and with an object (the wrapper's two codes, see wrappers.py).
@example(steps=[("call", Obj(1, 1), "x"), ("call", Obj(2, 1), "x"), ("call", Obj(1, 1), "x")])
@example(steps=[("call", 1, "x"), ("advance", 10.0), ("call", 1, "x")])
@example(steps=[("call", Obj(1, 1), "x"), ("advance", 10.0), ("call", Obj(1, 1), "x")])
def test_the_generated_wrappers_do_what_the_reference_does(shape, store, steps):
    shaped, call, key_of = SHAPES[shape]
    clock = FakeClock()
    calls: dict[str, list[Any]] = {"generated": [], "reference": []}

    def computed_by(side: str) -> Callable[..., Any]:
        def fn(*args: Any, **kwargs: Any) -> Any:
            calls[side].append((args, kwargs))
            if "boom" in (*args, *kwargs.values()):
                raise ValueError("boom")
            return ("result", args, kwargs)

        return fn

    generated = memoize(**STORES[store](clock))(shaped(computed_by("generated")))
    arguments = {"maxsize": 128, "ttl": None, "typed": False, "key": None, "cache": None,
                 "clock": clock, **STORES[store](clock)}  # fmt: skip
    memo = Options(arguments, async_=False).new_memo(computed_by("reference"))
    reference = reference_wrapper(memo, key_of)

    for step in steps:
        if step[0] == "call":
            _, a, b = step
            assert _outcome(call, generated, a, b) == _outcome(call, reference, a, b), step
        elif step[0] == "advance":
            clock.advance(step[1])
        elif step[0] == "info":
            assert generated.cache_info() == reference.cache_info()
        else:
            generated.cache_clear()
            reference.cache_clear()
        assert calls["generated"] == calls["reference"], step
    assert generated.cache_info() == reference.cache_info()
