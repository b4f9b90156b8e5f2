"""How a call becomes a cache key, and where the built-in store files it (chapter 02).

Two calls share a result when they share a key. A wrapper with the memoized function's own
parameters (``wrappers.py``) keys a call by the argument itself for one parameter and by the tuple
of the arguments otherwise, so ``f(1)``, ``f(x=1)`` and ``f(1, y=2)`` share one entry when 2 is
``y``'s default. Only a default that is a plain constant (None, a bool, a number, a str or bytes,
or a tuple of these: :func:`is_constant`) is keyed by its value: any other default (a list, a dict,
an object) is left out of the key when the caller leaves it out (the key holds ``_DEFAULT``
instead), so it is never hashed (it may be unhashable, or slow to hash), and, as with
``functools.lru_cache``, ``g(1)`` and ``g(1, cols=<that default>)`` are then two entries.
Functions with ``*args`` or ``**kwargs`` build their key like ``functools.lru_cache``
(:func:`make_key`); a ``key=`` function builds it itself.

Equal keys, different types
---------------------------
Keys are compared with ``==``, so equal arguments of different types share one entry unless
``typed=True`` keeps them apart (as ``lru_cache(typed=True)`` does): ``f(3.0)`` returns the
result that ``f(3)`` stored. (``functools.lru_cache`` keeps a lone int apart from a float even
untyped, a side effect of its shortcut for a lone int or str; so do memoize's ``*args`` wrappers,
which build their keys the same way.) An equal argument of a type that is not a builtin scalar,
such as ``Fraction(3)``, has a slot of its own (below), so it usually gets an entry of its own;
but a wrapper running its plain code (``wrappers.py``) looks the key itself up, and then finds
``f(3)``'s entry.

Hashing once
------------
Like ``functools.lru_cache``, a call hashes its key once, and an eviction not at all: a key's
``__hash__`` may be slow, and a dict calls it on every lookup, insertion and deletion. Hence the
*slots*. A *plain* key, whose hashing runs no Python code (a lone argument of a builtin scalar
type: int, float, complex, bool, str, bytes, None; or a tuple of arguments that all are), is its
own slot: the dict rehashes it at no visible cost. Any other key is found by its hash, computed
once by the call and reused by the miss and the eviction: a tuple of arguments has its hash as
slot, a lone argument the pair ``(HASHED, hash)``, which no argument can equal; a hit then
compares the entry's key with the call's. Unequal keys with equal hashes share a slot, chained
in the store (``store.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

# The builtins that memoized calls use, bound once: a memoized builtin installed in place of
# the builtin itself (``builtins.len = memoize(len)``) must not be called back by memoize.
_hash, _len, _tuple, _type = hash, len, tuple, type

UNKNOWN: Any = object()  # "the miss finds the key's slot" (from the plain code of a wrapper)
HASHED: Any = object()  # in the slot of a lone argument found by its hash: (HASHED, hash)
_KWD_MARK = (object(),)  # separates positional from keyword arguments in a generic key
_FAST_TYPES = frozenset({int, str})  # a lone argument of these types is its own generic key
# The builtin scalars, whose hash and equality run no Python code: a key of one of these types,
# or a tuple of them, is its own slot in the built-in store, and a default of one of these types
# (or a tuple or frozenset of them) is keyed by its value.
SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes})


class _DefaultMarker:
    """What a key holds in place of a default the caller left out (when that default is not a
    plain constant); one object, which pickles by reference, as ``leaklab.memoize._DEFAULT``."""

    __slots__ = ()
    __module__ = "leaklab.memoize"  # where pickle finds _DEFAULT (the package re-exports it)

    def __repr__(self) -> str:
        return "<default>"

    def __reduce__(self) -> str:
        return "_DEFAULT"


_DEFAULT = _DefaultMarker()


def make_key(args: tuple[Any, ...], kwds: dict[str, Any], typed: bool) -> Hashable:
    """The cache key of a call to a generic ``(*args, **kwargs)`` wrapper.

    The same recipe as ``functools.lru_cache``: the positional arguments, then a marker and the
    keyword items in call order, then (``typed``) the types of all of them; a lone ``int`` or
    ``str`` argument is its own key.
    """
    key: tuple[Any, ...] = args
    if kwds:
        key += _KWD_MARK
        for item in kwds.items():
            key += item
    if typed:
        key += _tuple([_type(v) for v in args])
        if kwds:
            key += _tuple([_type(v) for v in kwds.values()])
    elif _len(key) == 1 and _type(key[0]) in _FAST_TYPES:
        return key[0]  # type: ignore[no-any-return]  # an int or a str
    return key


def is_constant(value: object) -> bool:
    """Whether a default is keyed by its value (see the module's docstring)."""
    if type(value) in SCALARS:
        return True
    if type(value) not in (tuple, frozenset):
        return False
    return all(is_constant(item) for item in value)  # type: ignore[attr-defined]


def is_plain(key: Hashable) -> bool:
    """Whether hashing ``key`` runs no Python code: a builtin scalar, or a tuple of them (and, in
    a typed key, of their types)."""
    if _type(key) in SCALARS:
        return True
    if _type(key) is not tuple:
        return False
    for item in key:  # type: ignore[attr-defined]
        kind = _type(item)
        if kind not in SCALARS and not (kind is type and item in SCALARS):
            return False
    return True


def slot_function(lone: bool) -> Callable[[Hashable], Hashable]:
    """The function that gives a key its slot (see "Hashing once" in the module's docstring):
    ``lone`` for a wrapper whose key may be a lone argument (or a generic key), whose slot then
    holds a marker besides the hash, else (a tuple of arguments) the hash alone."""

    def slot_of(key: Hashable) -> Hashable:
        if is_plain(key):
            return key
        return (HASHED, _hash(key)) if lone else _hash(key)

    return slot_of


def unhashable_error(qualname: str, custom_key: bool) -> Callable[[TypeError], TypeError]:
    """Make the function that turns the TypeError of a failed lookup into a clear one."""
    if custom_key:
        what = f"the key= function of {qualname}() returned a key that cannot be looked up"
        fix = "make key= return something hashable, such as a tuple of str and int"
    else:
        what = f"the arguments of {qualname}() cannot be used as a cache key"
        fix = (
            "memoize needs hashable arguments; pass key= to build a hashable key from them "
            "(for example, a tuple instead of a list)"
        )

    def unhashable(exc: TypeError) -> TypeError:
        return TypeError(f"{what} ({exc}): {fix}")

    return unhashable


def store_error_check(unhashable: Callable[[TypeError], TypeError]) -> Callable[..., None]:
    """Make the function that tells, after a TypeError from a lookup (a ``cache=`` store's
    ``get``, or the subscript of a wrapper's plain code), whether the key is at fault (then it
    raises the clear error) or not (then it returns, and the error of the store, or of a key's
    ``__eq__``, propagates unchanged)."""

    def check(key: Hashable) -> None:
        try:
            _hash(key)
        except TypeError as exc:
            raise unhashable(exc) from exc

    return check
