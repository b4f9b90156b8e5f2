"""How an LRUCache (chapter 01) holds its entries: the table, and the two markers it compares.

The table is one tuple, ``(entries, move_to_end, hits, timed)``: the ``OrderedDict`` of entries,
least recently used first; its ``move_to_end``, bound once because that is faster to call than a
method looked up each time; the hit counter, as a local is faster than an attribute; and whether
the entries are ``(value, expires)`` tuples (once a ttl is in play) or bare values. It is replaced
as a whole, once, when a ttl first appears, so that a reader who takes no lock sees the entries
together with how to read them.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .compiled import _core

_TableState = tuple["OrderedDict[Any, Any]", Callable[[Any], None], "itertools.count[int]", bool]

_MISSING: Any = object()  # "no such entry"; never stored

# The deadline of an entry that does not expire, compared by identity (the compiled code uses
# the same object).
_NEVER: float = _core.NEVER if _core is not None else math.inf


def _items_of(data: OrderedDict[Any, Any]) -> list[tuple[Any, Any]]:
    """``list(data.items())``, with the lock held but lock-free readers possibly running.

    The copy is one C-level loop, which readers cannot interleave with unless Python code runs
    inside it (a key's ``__eq__`` on a hash collision, a finalizer run by the collector); then
    the iterator sees their reordering and raises RuntimeError, and we copy again.
    """
    while True:
        try:
            return list(data.items())
        except RuntimeError:
            continue
