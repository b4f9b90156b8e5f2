"""Threads racing on one cache, for chapter 01 ("is it safe to share between threads?").

A thread-safety claim is only as good as a check that fails for an unsafe cache. :func:`race`
lets ``threads`` threads hammer one bounded cache with sets (a new key past the bound evicts one)
and gets (a hit reorders the entries), with the interpreter's switch interval lowered so that
threads are interrupted in the middle of a cache's multi-step updates. It counts three kinds of
failure:

- ``raised``: operations that raised (``KeyError`` or ``RuntimeError`` when one thread evicts or
  reorders a key another thread is still working on);
- ``over_bound``: how often a thread saw the cache hold more entries than its bound;
- ``lost_capacity``: afterwards, from one thread, ``bound`` fresh keys are stored; a cache whose
  bookkeeping survived holds all of them, one whose count drifted holds fewer (or raises).

:class:`UnlockedLRU` is the LRU cache many write by hand on an ``OrderedDict``, with no lock: it
fails this check, as ``cachetools.LRUCache`` without a lock does, while ``leaklab.caches.LRUCache``
holds. Nothing here imports pandas.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

__all__ = ["UnlockedLRU", "hammer", "race"]


class UnlockedLRU:
    """A least-recently-used cache on an ``OrderedDict``, with no lock (not thread-safe)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value for ``key`` (now the most recently used), or ``default``."""
        try:
            value = self._data[key]
        except KeyError:
            return default
        self._data.move_to_end(key)
        return value

    def set(self, key: Hashable, value: Any) -> None:
        """Store ``value``; past ``maxsize`` entries, evict the least recently used."""
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


def _setter(store: Any) -> Any:
    """``store.set`` (leaklab's caches) or ``store.__setitem__`` (cachetools, dict)."""
    return store.set if hasattr(store, "set") else store.__setitem__


def hammer(store: Any, bound: int, worker: int, ops: int, keys: int, tally: list[int]) -> None:
    """One thread of :func:`race`: ``ops`` rounds of a set and a get on ``store``.

    Adds to ``tally`` the operations that raised (``tally[0]``) and the times ``store`` was seen
    holding more than ``bound`` entries (``tally[1]``).
    """
    put, get = _setter(store), store.get
    raised = over = 0
    for i in range(ops):
        key = (i * 7 + worker) % keys
        try:
            put(key, i)                  # past the bound, this evicts the oldest entry
            over += len(store) > bound   # another thread may be halfway through its own put
            get((key * 3) % keys)        # a hit makes its key the most recently used
        except Exception:                # noqa: BLE001  a half-done update met another thread
            raised += 1
    with _tally_lock:
        tally[0] += raised
        tally[1] += over


_tally_lock = threading.Lock()


def race(store: Any, bound: int, threads: int = 16, ops: int = 12_500, keys: int | None = None,
         switch_interval: float = 1e-6) -> dict[str, int]:
    """Let ``threads`` threads :func:`hammer` ``store`` (a cache bounded to ``bound`` entries) at
    once, over ``keys`` keys (default ``8 * bound``, so that most sets add a key and evict one),
    then check that it still holds ``bound`` fresh keys.

    Returns ``operations`` (sets and gets attempted), ``raised``, ``over_bound``,
    ``lost_capacity`` (bound minus the fresh keys held afterwards; all of them if the refill
    raised) and ``failures`` (the sum of the three). ``sys.setswitchinterval`` is restored after.
    """
    if threads < 1 or ops < 1 or bound < 1:
        raise ValueError(f"need threads, ops and bound >= 1, got {threads}, {ops}, {bound}")
    keys = 8 * bound if keys is None else keys
    tally = [0, 0]
    workers = [threading.Thread(target=hammer, args=(store, bound, n, ops, keys, tally))
               for n in range(threads)]
    old = sys.getswitchinterval()
    sys.setswitchinterval(switch_interval)
    try:
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
    finally:
        sys.setswitchinterval(old)
    put = _setter(store)
    fresh = [("fresh", n) for n in range(bound)]
    try:
        for n, key in enumerate(fresh):
            put(key, n)
        held = sum(store.get(key) is not None for key in fresh)
    except Exception:  # noqa: BLE001  its bookkeeping is broken beyond use
        held = 0
    lost = bound - held
    return {"operations": 2 * threads * ops, "raised": tally[0], "over_bound": tally[1],
            "lost_capacity": lost, "failures": tally[0] + tally[1] + lost}
