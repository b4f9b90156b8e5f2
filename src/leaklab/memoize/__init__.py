"""A bounded, method-safe, async-aware ``memoize``: the fix of chapter 02.

Chapter 02 (``notebooks/02_memoize.ipynb``), "memoize trades memory for time, forever", ports a
library ``memoize`` that keeps every result in a dict keyed by the arguments and never clears it,
then shows the same trap in the standard library: ``functools.cache`` grows without bound, and
``functools.lru_cache`` on a method keeps every ``self`` alive (ruff rule B019). ``memoize`` is
always bounded, keeps one cache per instance on a method, and caches an ``async def``'s result.

Read ``decorator.py`` first: the decorator, its options and the algorithm of a call. Then, as
needed: ``keys.py`` (how a call becomes a key), ``store.py`` (the bounded store and its eviction),
``inflight.py`` (misses that overlap, across threads or tasks), ``methods.py`` (per-instance
caches) and ``wrappers.py`` (the generated wrappers, the speed-up of the hit path).

>>> @memoize(maxsize=2)
... def square(x):
...     return x * x
>>> square(3), square(3), square.cache_info()
(9, 9, CacheInfo(hits=1, misses=1, maxsize=2, currsize=1))
"""

from leaklab.memoize.decorator import memoize
from leaklab.memoize.keys import _DEFAULT  # noqa: F401  # a key's marker pickles by this name
from leaklab.memoize.store import CacheInfo

__all__ = ["CacheInfo", "memoize"]
