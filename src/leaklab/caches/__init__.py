"""Bounded caches: the fixes of chapter 01, "Memory is a costly cache".

Chapter 01 (``notebooks/01_caches.ipynb``) shows a service that caches in a module-level ``dict``
and grows without bound, and then fixes it with the two structures of this package:

- :class:`LimitableMap`, the chapter's FIFO map: once ``limit`` keys are held, the key inserted
  first is evicted. Small and obvious, but it evicts hot keys as readily as cold ones, which the
  chapter measures as a poor hit ratio on a skewed key stream.
- :class:`LRUCache`, a real cache with a complete expiry policy: a bound on the number of entries
  and/or on their total size, least-recently-used eviction, a time-to-live per cache or per
  entry, a ``dispose`` callback and hit/miss statistics. It is safe to share between threads.

Where each part lives (read ``lru.py`` first: it is the whole algorithm):

- ``fifo.py``: :class:`LimitableMap`.
- ``lru.py``: :class:`LRUCache`, the algorithm: recency order, bounds, removal, with its
  invariants at the top.
- ``expiry.py``: the ttl policy: the deadline queues and removing what has expired.
- ``views.py``: what a cache shows (``len``, ``keys``, ``items``) and :class:`CacheStats`.
- ``arguments.py``: the checks of the arguments, and how ``size_of`` and ``dispose`` are called.
- ``locking.py``: one lock for writes; reads without it under the GIL.
- ``fast.py``: the speed-ups: faster subclasses for the two commonest configurations, and the
  compiled methods put in place.
- ``compiled.py`` and ``_core.c``: the optional compiled core (:data:`COMPILED` tells whether it
  is in use; ``LEAKLAB_PURE_PYTHON=1`` turns it off). ``bench/bench_caches.py`` measures it all
  against cachetools, cachebox, ``functools.lru_cache`` and a plain dict.

Example:

>>> cache = LRUCache(2)
>>> cache.set("a", 1); cache.set("b", 2)
>>> cache.get("a")
1
>>> cache.set("c", 3)  # evicts "b", the least recently used
>>> cache.keys()
['c', 'a']
>>> cache.stats().evictions
1
"""

from __future__ import annotations

from . import arguments as _arguments
from .compiled import COMPILED, _core
from .fifo import LimitableMap
from .locking import _READS_TAKE_LOCK
from .lru import LRUCache  # which imports fast.py: the speed-ups are always in place
from .views import CacheStats

#: Why an entry left an LRUCache, as passed to its ``dispose`` callback.
DisposeReason = _arguments.DisposeReason

__all__ = ["CacheStats", "DisposeReason", "LRUCache", "LimitableMap"]
# Also read by the tests and bench/bench_caches.py: COMPILED (which core runs), _core (the
# compiled module, or None) and _READS_TAKE_LOCK (a free-threaded build: every read locks).
