"""How an LRUCache (chapter 01) is safe between threads: one lock for writes, none for reads.

Every operation that changes a cache's contents (``set``, evictions, expiry, ``delete``, ``pop``,
``clear`` and ``get`` with ``update_age_on_get``) holds the cache's one lock. On a CPython build
with the GIL, the hit path of ``get``, ``peek`` and ``has`` takes no lock: it is a few single
C-level ``OrderedDict`` operations and ``itertools.count`` increments, each of which runs whole
under the GIL (the compiled ``get`` does the same steps, and holds references to what it read
while a key's ``__eq__`` may run). An entry is one object (a value, or a ``(value, expires)``
tuple) replaced in one step, so a reader sees it before or after a change, never half made; a
``get`` that races with an eviction returns the value it read, as if it had come just before.
Only a read that meets an expired entry takes the lock, to remove it.

On a free-threaded build (``sys._is_gil_enabled()`` false) every read takes the lock
(:func:`_locked_read`), which then must be re-entrant, because a read that finds an expired
entry takes it again to remove it.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _gil_enabled() -> bool:
    check = getattr(sys, "_is_gil_enabled", None)  # 3.13+
    return True if check is None else bool(check())


_READS_TAKE_LOCK = not _gil_enabled()
_make_lock: Callable[[], Any] = threading.RLock if _READS_TAKE_LOCK else threading.Lock


def _locked_read(method: Callable[..., T]) -> Callable[..., T]:
    """Return ``method`` as is on a GIL build; on a free-threaded build, run it under the lock."""
    if not _READS_TAKE_LOCK:
        return method

    def locked(self: Any, *args: Any, **kwargs: Any) -> T:
        with self._lock:
            return method(self, *args, **kwargs)

    return functools.update_wrapper(locked, method)  # name, doc and signature (via __wrapped__)

