"""Per-instance caches for memoized methods: the fix of chapter 02's method trap (ruff B019).

``functools.lru_cache`` on a method keys every call by ``self``, so its one cache keeps every
instance alive. :class:`MemoizedMethod` keeps one cache per instance instead, in a table on the
class attribute keyed by ``id(instance)`` and guarded by a *weak* reference, whose callback drops
the instance's cache when the instance dies: no cache ever refers to its instance, so an instance
is collected as if it were never memoized. ``obj.method`` is a bound method, which holds ``obj``
like any other: for the call, and no longer. Each cache is an ordinary memoized function
(``wrappers.py``) that takes the instance first, like the method itself.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import threading
import types
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from leaklab.memoize.inflight import Memo
from leaklab.memoize.store import CacheInfo, clear_store, store_bounds
from leaklab.memoize.wrappers import Recipe, memoize_function

if TYPE_CHECKING:
    from leaklab.memoize.decorator import Options

# The builtins that memoized calls use, bound once (see keys.py).
_id, _next = id, next
_MethodType = types.MethodType


# A number per instance cache, never reused (unlike id()): with cache=, the instances of a
# method share one store, and their keys start with it.
_instance_tokens = itertools.count()


class _InstanceRef(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to an instance that remembers the instance's key in the table."""

    __slots__ = ("address",)
    address: int  # id() of the instance


class MemoizedMethod:
    """What ``memoize`` returns for a function defined in a class body.

    As a method (it was set on a class, or its first parameter is ``self``), it keeps one cache
    per instance, made on first use, in a table keyed by ``id(instance)`` and guarded by a weak
    reference whose callback removes the entry when the instance dies. The cache never refers to
    the instance, so the instance is collected as usual. Each cache has its own memoized function,
    which takes the instance first, like the method itself; ``instance.method`` returns it bound
    to the instance, a plain bound method (with that cache's ``cache_info``/``cache_clear``),
    which holds the instance as long as it lives: for the call, in ``Parser(text).words()``,
    where nothing else holds the instance. ``Class.method`` returns this object, whose
    ``cache_info()`` sums over the live instances and whose ``cache_clear()`` clears them all.
    The instances' caches share one lock, taken on misses only.

    Otherwise (for instance under ``@staticmethod``), it behaves as a plain memoized function.
    """

    def __init__(self, fn: types.FunctionType, options: Options) -> None:
        functools.update_wrapper(self, fn)
        self._qualname: str = fn.__qualname__
        self._fn = fn
        self._options = options
        code = fn.__code__
        self._is_method = code.co_argcount > 0 and code.co_varnames[0] == "self"
        self._recipe = Recipe(fn, options, method=True)
        # id(instance) -> (weak reference, its cache's memoized function, its memo)
        self._instances: dict[int, tuple[_InstanceRef, Callable[..., Any], Memo]] = {}
        self._lock = threading.RLock()
        self._forget = self._make_forget(self._instances)
        self._function: Callable[..., Any] | None = None  # made when used as a plain function
        if options.async_ and hasattr(inspect, "markcoroutinefunction"):  # 3.12+
            inspect.markcoroutinefunction(self)

    @staticmethod
    def _make_forget(instances: dict[int, Any]) -> Callable[[_InstanceRef], None]:
        def forget(ref: _InstanceRef) -> None:  # the weak references' callback: no `self` in it
            entry = instances.get(ref.address)
            if entry is not None and entry[0] is ref:
                del instances[ref.address]

        return forget

    def __set_name__(self, owner: type, name: str) -> None:
        self._is_method = True

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        entry = self._instances.get(_id(instance))
        if entry is not None and entry[0]() is instance:
            return _MethodType(entry[1], instance)
        if not self._is_method:
            return _MethodType(self, instance)
        return _MethodType(self._bind(instance), instance)

    def __call__(self, *args: Any, **kwds: Any) -> Any:
        if not self._is_method:
            return self._plain()(*args, **kwds)
        if not args:
            raise TypeError(f"{self._qualname}() missing the instance argument")
        instance = args[0]
        entry = self._instances.get(_id(instance))
        if entry is not None and entry[0]() is instance:
            return entry[1](*args, **kwds)
        return self._bind(instance)(*args, **kwds)

    def _plain(self) -> Callable[..., Any]:
        function = self._function
        if function is None:
            with self._lock:
                if self._function is None:
                    self._function = memoize_function(self._fn, self._options)
                function = self._function
        return function

    def _bind(self, instance: Any) -> Callable[..., Any]:
        """The memoized function of ``instance``'s cache (made on first use)."""
        try:
            ref = _InstanceRef(instance, self._forget)
        except TypeError:
            raise TypeError(
                f"memoize keeps one cache per instance for {self._qualname} and refers to "
                f"the instance only weakly, so that instances are still collected; but "
                f"{type(instance).__qualname__} objects do not support weak references (a class "
                "that defines __slots__ must list '__weakref__' in them; a dataclass with "
                "slots=True needs weakref_slot=True)"
            ) from None
        address = ref.address = _id(instance)
        with self._lock:
            entry = self._instances.get(address)
            if entry is not None and entry[0]() is instance:
                return entry[1]
            memo = self._options.new_memo(self._fn, self._lock)
            function = self._recipe.make(memo, _next(_instance_tokens))
            function.__module__ = self.__module__
            function.__qualname__ = self._qualname
            function.__doc__ = self.__doc__
            function.__wrapped__ = self._fn  # type: ignore[attr-defined]  # for inspect.signature
            self._instances[address] = (ref, function, memo)
        return function

    def _memos(self) -> list[Memo]:
        return [entry[2] for entry in list(self._instances.values())]

    def cache_info(self) -> CacheInfo:
        """The sum over the live instances' caches (``maxsize`` is per instance); with
        ``cache=``, the bound and size of that one shared store."""
        if not self._is_method:
            return self._plain().cache_info()  # type: ignore[attr-defined, no-any-return]
        hits = misses = size = 0
        for memo in self._memos():
            info = memo.info()  # type: ignore[attr-defined]
            hits += info.hits
            misses += info.misses
            size += info.currsize or 0
        if self._options.cache is not None:
            maxsize, store_size = store_bounds(self._options.cache)
            return CacheInfo(hits, misses, maxsize, store_size)
        return CacheInfo(hits, misses, self._options.maxsize, size)

    def cache_clear(self) -> None:
        """Clear every live instance's cache (with ``cache=``, that one shared store)."""
        if not self._is_method:
            self._plain().cache_clear()  # type: ignore[attr-defined]
            return
        if self._options.cache is not None:
            clear_store(self._options.cache)
            for memo in self._memos():
                memo.reset()  # type: ignore[attr-defined]
            return
        for memo in self._memos():
            memo.clear()  # type: ignore[attr-defined]

    def cache_parameters(self) -> dict[str, Any]:
        return self._options.parameters()

    def __repr__(self) -> str:
        kind = "method" if self._is_method else "function"
        return f"<memoized {kind} {self._qualname}>"


def defined_in_class_body(fn: object) -> bool:
    if not isinstance(fn, types.FunctionType):
        return False
    scope, _, _ = fn.__qualname__.rpartition(".")
    return bool(scope) and not scope.endswith("<locals>")
