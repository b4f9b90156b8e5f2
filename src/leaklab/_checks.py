"""Argument checks shared by the harness and the fixes (``measure``, ``caches``, ``memoize``).

Bad configuration fails at once with a ``TypeError`` (wrong type, including ``bool`` where an int
or a number of seconds is meant) or a ``ValueError`` (out of range), naming the argument and the
value, so that nothing silently becomes unbounded.
"""

from __future__ import annotations

import math
import operator
from typing import Any


def check_callable(name: str, value: object) -> None:
    """Raise TypeError unless ``value`` is callable."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {value!r} of type {type(value).__name__}")


def check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` as an int >= ``minimum`` (and <= ``maximum`` if given). Int-likes such as
    numpy.int64 are accepted (``operator.index`` is the rule); bool, float and str are not."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= {minimum}, not a bool: {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an int >= {minimum}, got {value!r} of type {type(value).__name__}"
        ) from None
    if number < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if maximum is not None and number > maximum:
        shown = repr(value) if type(value) is int else f"{value!r} (= {number})"
        raise ValueError(f"{name} must be an int from {minimum} to {maximum}, got {shown}")
    return number


def check_seconds(name: str, value: object, *, int_like: bool = False) -> float | int:
    """Return ``value`` if it is a finite int or float > 0 (a duration in seconds).

    With ``int_like=True``, an int-like (numpy.int64, anything with ``__index__``; not a bool) is
    accepted too and returned as an int: pass it only where the caller uses the returned value.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        number = None
        if int_like and not isinstance(value, bool):
            try:
                number = operator.index(value)  # type: ignore[arg-type]
            except TypeError:
                pass
        if number is None:
            raise TypeError(
                f"{name} must be a finite int or float > 0 (seconds), got {value!r} "
                f"of type {type(value).__name__}"
            )
        value = number
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float: now + value could not be computed
        finite = False
    if not (finite and value > 0):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return value
