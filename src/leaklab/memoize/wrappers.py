"""The generated wrappers: memoize's hit path, made fast (chapter 02's speed-up, not its idea).

``decorator.py`` holds the algorithm, and in :func:`~leaklab.memoize.decorator.reference_call`
its plain form: look the key up, return a hit, or call, store and bound on a miss. The wrappers
made here do exactly that (the tests check them against the reference call by call), with three
speed-ups that make a hit several times faster than the reference's, and close to the speed of
the C ``functools.lru_cache`` (``bench/bench_memoize.py`` measures it):

- **The function's own parameters.** The wrapper's source is generated from a template with the
  memoized function's signature (``def fib(n)`` rather than ``def fib(*args, **kwargs)``):
  packing ``*args`` and ``**kwargs`` alone costs more than the rest of a hit. The key is built
  inline (``keys.py`` says how); functions with ``*args`` or ``**kwargs``, and every ``key=``,
  get a generic wrapper and a key built like ``functools.lru_cache``'s.
- **The lookup inlined, without the lock.** The built-in store's dict (or a ``cache=`` object's
  bound ``get``) is a cell of the wrapper, and a hit looks the key up there directly, without the
  lock and without a call into memoize's own Python code (``store.py`` says why that is safe);
  only a miss calls ``Memo.miss``.
- **Two codes, adapting to the keys** (class :class:`Adaptive`). Telling a plain key costs a type
  check per argument (a sixth of a hit, for one); so each wrapper has two codes, and adapts, as the
  interpreter's own specializing does: it runs its *checked* code (which finds each key's slot)
  until its first miss; if that key was plain, it switches to its *plain* code (the dict
  subscript alone, no check) until a key that is not plain comes, which then switches it back to
  the checked code for good (that call hashes its key twice, once). A wrapper that is only ever
  given ints and str runs as fast as if there were no slots; one given objects hashes each exactly
  once per call.
"""

from __future__ import annotations

import functools
import inspect
import keyword
import types
import weakref
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, cast

from leaklab.memoize.inflight import NOTHING, Memo
from leaklab.memoize.keys import (
    _DEFAULT,
    HASHED,
    SCALARS,
    UNKNOWN,
    is_constant,
    make_key,
    slot_function,
    store_error_check,
    unhashable_error,
)
from leaklab.memoize.store import BoundedMemo

if TYPE_CHECKING:
    from leaklab.memoize.decorator import Options

# The builtins that memoized calls use, bound once (see keys.py).
_hash, _tuple, _type = hash, tuple, type


class Adaptive:
    """Which code a built-in store's wrapper runs, as its keys show (see "Two codes" in the
    module's docstring): its checked code until its first miss; then, if that key was plain, its
    plain code, until a key that is not plain comes; then its checked code for good."""

    __slots__ = ("checked", "plain", "slot_of", "state", "wrapper")

    def __init__(
        self,
        wrapper: types.FunctionType,
        plain: types.CodeType,
        slot_of: Callable[[Hashable], Hashable],
    ) -> None:
        self.wrapper = weakref.ref(wrapper)  # (the wrapper refers to the memo that refers to this)
        self.checked = wrapper.__code__
        self.plain = plain
        self.slot_of = slot_of
        self.state = "undecided"

    def adapt(self, plain: bool) -> None:
        """After a miss, under the memo's lock: ``plain`` if its key was its own slot."""
        state = self.state
        if state == "checked" or (plain and state == "plain"):
            return
        self.state = "plain" if plain and state == "undecided" else "checked"
        wrapper = self.wrapper()
        if wrapper is not None:
            wrapper.__code__ = self.plain if self.state == "plain" else self.checked


# The hit path of one cache. `__cache` (the built-in store's dict, or a cache= object's bound
# `get`), `__miss`, `__hits` (the hit counter of a cache= store) and `__token` (the number of an
# instance's cache, for a store shared by instances) are cells, one set per cache; the other `__`
# names are globals shared by all the caches of one memoized function. The factory makes the
# wrapper twice over the same cells: with its _PLAIN code (the key is its own slot, looked up
# with a subscript, the cheapest lookup the interpreter has) and with its _CHECKED code (the key's
# slot is found first, hashing the key once if it is not plain); it returns the second, and the
# code of the first, for Adaptive. A cache= store has one code (its get hashes as it likes).
# Only hashing is inside `except TypeError` (or checked by __check_key): any other TypeError (a
# store's, a key's __eq__, a key= function's) propagates as it is.
_WRAPPER_TEMPLATE = """\
def __factory(__cache, __miss, __hits, __token):
    {async_}def {name}({params}):
{prelude}{plain}
    __plain = {name}.__code__
    {async_}def {name}({params}):
{prelude}{checked}
    return {name}, __plain
"""
_PLAIN = {
    "builtin": """\
        try:
            __e = __cache[{key}]
            __e[1] = __e[1] + 1
            return __e[0]
        except __KeyError:
            pass
        except __TypeError:
            __check_key({key})  # raises the clear error if the key is unhashable
            raise  # else a key's own __eq__ failed
        return {await_}__miss(__UNKNOWN, {call})""",
    "builtin_ttl": """\
        try:
            __e = __cache[{key}]
        except __KeyError:
            __e = None
        except __TypeError:
            __check_key({key})
            raise
        if __e is not None and __e[3] > __clock():
            __e[1] = __e[1] + 1
            return __e[0]
        return {await_}__miss(__UNKNOWN, {call})""",
}
_FIND_SLOT = """\
        try:
            __s = __slot_of({key})
        except __TypeError as __exc:
            raise __unhashable(__exc) from __exc
"""
# The same for a lone argument, with slot_function's two usual cases inline.
_FIND_LONE_SLOT = """\
        __t = __type({key})
        if __t in __SCALARS:
            __s = {key}
        else:
            try:
                __s = __slot_of({key}) if __t is __tuple else (__HASHED, __hash({key}))
            except __TypeError as __exc:
                raise __unhashable(__exc) from __exc
"""
_CHECKED = {
    "builtin": """\
        try:
            __e = __cache[__s]
        except __KeyError:
            pass
        else:
            if __e[4] is {key} or __e[4] == {key}:
                __e[1] = __e[1] + 1
                return __e[0]
        return {await_}__miss(__s, {call})""",
    "builtin_ttl": """\
        try:
            __e = __cache[__s]
        except __KeyError:
            pass
        else:
            if (__e[4] is {key} or __e[4] == {key}) and __e[3] > __clock():
                __e[1] = __e[1] + 1
                return __e[0]
        return {await_}__miss(__s, {call})""",
    "external": """\
        try:
            __e = __cache({key}, __NOTHING)
        except __TypeError:
            __check_key({key})  # raises the clear error if the key is unhashable
            raise  # else the store's own error
        if __e is not __NOTHING:
            __hits[0] += 1
            return __e
"""
    + _FIND_SLOT  # for the miss's table of the calls in flight: the store gets the key itself
    + """\
        return {await_}__miss(__s, {call})""",
}
_PLAIN["external"] = _CHECKED["external"]


class _Plan:
    """How to write a wrapper: its parameters, its key (a parameter's name, or ``__k`` built by
    ``prelude``) and whether that may be a ``lone`` argument (see keys.slot_function), and how a
    miss passes the arguments."""

    __slots__ = ("args", "defaults", "key", "kwds", "lone", "params", "prelude")

    def __init__(
        self,
        params: str,
        key: str,
        args: str,
        kwds: str,
        defaults: tuple[Any, ...],
        prelude: str,
        lone: bool,
    ) -> None:
        self.params, self.key, self.args, self.kwds = params, key, args, kwds
        self.defaults, self.prelude, self.lone = defaults, prelude, lone


def _generic_plan(options: Options, method: bool) -> _Plan:
    if options.key is not None:
        key = "__key(*__args, **__kwds)"  # outside the try: a TypeError in key= is its own
    else:
        key = f"__make_key(__args, __kwds, {options.typed})"
    if method and options.cache is not None:
        key = f"(__token, {key})"  # one cache= store shared by the instances: keep them apart
    params = "__self, *__args, **__kwds" if method else "*__args, **__kwds"
    args = "(__self, *__args)" if method else "__args"
    return _Plan(params, "__k", args, "__kwds", (), f"        __k = {key}\n", lone=True)


def _plan(fn: Callable[..., Any], options: Options, method: bool) -> _Plan:
    """A wrapper with ``fn``'s own parameters (for a method, the instance first: the wrapper is
    bound to it like any function) if possible, else the generic ``(*args, **kwargs)`` one.

    The parameters are read from the code object, which is how a call really binds (a
    ``__signature__`` attribute can say otherwise).
    """
    code = getattr(fn, "__code__", None)
    if (
        options.key is not None
        or not isinstance(fn, types.FunctionType)
        or not isinstance(code, types.CodeType)
        or code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS)
        or (method and code.co_argcount == 0)
    ):
        return _generic_plan(options, method)
    n_positional, n_posonly = code.co_argcount, code.co_posonlyargcount
    names = list(code.co_varnames[: n_positional + code.co_kwonlyargcount])
    if any(name.startswith("__") for name in names):
        return _generic_plan(options, method)  # it would shadow a name the template uses
    positional_defaults = fn.__defaults__ or ()
    first_default = n_positional - len(positional_defaults)
    keyword_defaults = fn.__kwdefaults__ or {}
    params: list[str] = []
    defaults: list[Any] = []
    passed: dict[str, str] = {}  # what a miss passes for each parameter
    for index, name in enumerate(names):
        passed[name] = name
        if index == n_positional:
            params.append("*")  # the keyword-only parameters follow
        if index < n_positional:
            has_default = index >= first_default
            default = positional_defaults[index - first_default] if has_default else None
        else:
            has_default = name in keyword_defaults
            default = keyword_defaults.get(name)
        if not has_default:
            params.append(name)
        elif is_constant(default):
            params.append(f"{name}=__d{len(defaults)}")  # keyed by its value
            defaults.append(default)
        else:  # left out of the key when left out of the call (see keys.py)
            params.append(f"{name}=__DEFAULT")
            passed[name] = f"(__d{len(defaults)} if {name} is __DEFAULT else {name})"
            defaults.append(default)
        if index == n_posonly - 1:
            params.append("/")
    used = names[1:] if method else names
    if options.typed:
        key = "(" + ", ".join(used + [f"__type({name})" for name in used]) + ")"
    elif len(used) == 1:
        key = used[0]  # one parameter: the argument is the key (no tuple to build and hash)
    else:
        key = "(" + "".join(f"{name}, " for name in used) + ")"
    if method and options.cache is not None:
        key = f"(__token, {key})"  # one cache= store shared by the instances: keep them apart
    prelude = ""
    if not key.isidentifier():
        prelude, key = f"        __k = {key}\n", "__k"
    args = "(" + "".join(f"{passed[name]}, " for name in names[:n_positional]) + ")"
    keywords = names[n_positional:]
    kwds = "None"
    if keywords:
        kwds = "{" + ", ".join(f"{name!r}: {passed[name]}" for name in keywords) + "}"
    return _Plan(", ".join(params), key, args, kwds, tuple(defaults), prelude, not prelude)


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> types.CodeType:
    return compile(source, "<leaklab.memoize wrapper>", "exec")


class Recipe:
    """The generated wrapper of one memoized function, ready to be made for each cache."""

    __slots__ = ("_factory", "options", "slot_of")

    def __init__(self, fn: Callable[..., Any], options: Options, method: bool) -> None:
        self.options = options
        plan = _plan(fn, options, method)
        name = getattr(fn, "__name__", "")
        if not (
            isinstance(name, str)
            and name.isidentifier()
            and not keyword.iskeyword(name)
            and not name.startswith("__")
        ):
            name = "memoized"
        if options.cache is not None:
            kind, find_slot = "external", ""  # (_CHECKED["external"] has its own)
        else:
            kind = "builtin_ttl" if options.ttl is not None else "builtin"
            find_slot = _FIND_LONE_SLOT if plan.lone else _FIND_SLOT
        self.slot_of = slot_function(plan.lone)
        parts = {
            "key": plan.key,
            "await_": "await " if options.async_ else "",
            "call": f"{plan.key}, {plan.args}, {plan.kwds}",
        }
        source = _WRAPPER_TEMPLATE.format(
            async_="async " if options.async_ else "",
            name=name,
            params=plan.params,
            prelude=plan.prelude,
            plain=_PLAIN[kind].format(**parts),
            checked=(find_slot + _CHECKED[kind]).format(**parts),
        )
        unhashable = unhashable_error(getattr(fn, "__qualname__", name), options.key is not None)
        namespace: dict[str, Any] = {
            "__clock": options.clock,
            "__unhashable": unhashable,
            "__check_key": store_error_check(unhashable),
            "__slot_of": self.slot_of,
            "__hash": _hash,
            "__type": _type,
            "__tuple": _tuple,
            "__SCALARS": SCALARS,
            "__HASHED": HASHED,
            "__TypeError": TypeError,
            "__KeyError": KeyError,
            "__NOTHING": NOTHING,
            "__UNKNOWN": UNKNOWN,
            "__DEFAULT": _DEFAULT,
            "__make_key": make_key,
            "__key": options.key,
        }
        namespace.update((f"__d{i}", value) for i, value in enumerate(plan.defaults))
        exec(_compile(source), namespace)  # noqa: S102  # only defines __factory
        self._factory = namespace["__factory"]

    def make(self, memo: Memo, token: int | None = None) -> Callable[..., Any]:
        """The hit path of ``memo``, with ``cache_info``, ``cache_clear``, ``cache_parameters``."""
        options = self.options
        miss = memo.amiss if options.async_ else memo.miss
        reader = memo.reader  # type: ignore[attr-defined]
        wrapper, plain = self._factory(reader, miss, getattr(memo, "hits", None), token)
        if isinstance(memo, BoundedMemo):
            memo.adaptive = Adaptive(wrapper, plain, self.slot_of)
        wrapper.cache_info = memo.info  # type: ignore[attr-defined]
        wrapper.cache_clear = memo.clear  # type: ignore[attr-defined]
        wrapper.cache_parameters = options.parameters
        return wrapper  # type: ignore[no-any-return]


def memoize_function(fn: Callable[..., Any], options: Options) -> Callable[..., Any]:
    """A plain memoized function: one cache, keyed by all the arguments."""
    wrapper: Any = Recipe(fn, options, method=False).make(options.new_memo(fn))
    cache_api = (wrapper.cache_info, wrapper.cache_clear, wrapper.cache_parameters)
    functools.update_wrapper(wrapper, fn)  # copies fn.__dict__, which could shadow the API
    wrapper.cache_info, wrapper.cache_clear, wrapper.cache_parameters = cache_api
    return cast("Callable[..., Any]", wrapper)
