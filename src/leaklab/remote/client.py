"""The client of chapter 05: :class:`RemoteCache`, a cache-aside cache that survives outages.

A cache in a server is shared by every worker and evicts and expires by itself; the client only
has to be careful about what it stores and about the server going away:

- keys are strings under a namespace (``namespace:key``; memoize's own keys as JSON after ``#``);
- values go through JSON, never pickle (whoever can write to a shared cache could otherwise run
  code in every reader);
- a ttl is required (a remote cache without expiry is the same leak, moved);
- when the server is out of reach, calls answer without it within ``timeout``, count the error
  (:class:`RemoteCacheStats`), leave it alone for ``retry_after`` seconds and then use it again.

``_RedisBackend`` and ``_MemcachedBackend`` hide the difference between the two protocols. The
servers themselves, and :func:`~leaklab.remote.server_url`, are in ``servers.py``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from leaklab._checks import check_callable, check_seconds

from .servers import _redis_client, server_url

_MISSING = object()


@dataclass(frozen=True)
class RemoteCacheStats:
    """``hits``/``misses``: answered by the server; ``errors``: calls that could not use it (it
    failed, or failed so recently that the call did not try); ``fallbacks``: ``get_or_set`` calls
    that computed their value because of such an error."""

    hits: int
    misses: int
    errors: int
    fallbacks: int


class _RedisBackend:
    def __init__(self, target: Any, timeout: float) -> None:
        import redis

        self.errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        # What means the server is out of reach (back off), not that it answered with a refusal.
        self.outages: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
        if isinstance(target, str):
            self.client = _redis_client(target, timeout)
        elif isinstance(target, Sequence):
            from redis.backoff import NoBackoff
            from redis.cluster import ClusterNode, RedisCluster
            from redis.retry import Retry

            parts = [urlsplit(u) for u in target]
            self.client = RedisCluster(
                startup_nodes=[ClusterNode(p.hostname, p.port) for p in parts], password=parts[0].password,
                socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0))
        else:
            self.client = target
        self.get, self.delete = self.client.get, self.client.delete

    def set(self, key: str, data: bytes, ttl: float) -> None:
        self.client.set(key, data, px=max(1, int(ttl * 1000)))

    def close(self) -> None:
        self.client.close()


class _MemcachedBackend:
    def __init__(self, target: Any, timeout: float) -> None:
        from pymemcache.client.base import Client
        from pymemcache.exceptions import MemcacheError, MemcacheUnexpectedCloseError

        self.errors = (MemcacheError, OSError)
        self.outages = (MemcacheUnexpectedCloseError, OSError)
        if isinstance(target, str):
            parts = urlsplit(target)
            self.client = Client((parts.hostname, parts.port or 11211), connect_timeout=timeout,
                                 timeout=timeout, no_delay=True)
        else:
            self.client = target
        self.get, self.delete = self.client.get, self.client.delete

    def set(self, key: str, data: bytes, ttl: float) -> None:
        self.client.set(key, data, expire=max(1, math.ceil(ttl)), noreply=False)

    def close(self) -> None:
        self.client.close()


class RemoteCache:
    """A cache-aside client for a Redis-protocol server (or memcached, or a cluster).

    ``url``: ``unix://``, ``redis://`` or ``rediss://`` (default :func:`server_url`), a list of
    cluster node URLs, or ``memcached://host:port``; or pass a ready ``client`` (redis-py
    ``Redis``/``RedisCluster`` or a pymemcache ``Client``). ``ttl`` (seconds, required) applies to
    every ``set`` unless the call gives its own. A call never waits longer than ``timeout`` for
    the server; after a failure to reach the server it is left alone for ``retry_after`` seconds,
    then tried again (a refusal, such as an out-of-memory error, only fails its own call). Values go through JSON (tuples come back as lists).

    >>> cache = RemoteCache(ttl=60)                                # doctest: +SKIP
    >>> cache.get_or_set("answer", lambda: 42), cache.get("answer")  # doctest: +SKIP
    (42, 42)
    """

    def __init__(self, url: str | Sequence[str] | None = None, *, ttl: float, namespace: str = "leaklab",
                 client: Any = None, timeout: float = 0.2, retry_after: float = 1.0) -> None:
        self._ttl = check_seconds("ttl", ttl)
        if not isinstance(namespace, str) or not namespace or any(c.isspace() or c == "#" for c in namespace):
            raise ValueError(f"namespace must be a non-empty string without spaces or '#', got {namespace!r}")
        self._namespace = namespace
        self._timeout = check_seconds("timeout", timeout)
        self._retry_after = check_seconds("retry_after", retry_after)
        if client is not None and url is not None:
            raise ValueError("give url or client, not both")
        if client is not None:
            memcached = type(client).__module__.startswith("pymemcache")
            self._backend: Any = (_MemcachedBackend if memcached else _RedisBackend)(client, self._timeout)
        else:
            if url is None:
                url = server_url()
            if isinstance(url, str):
                scheme = urlsplit(url).scheme
                if scheme not in ("unix", "redis", "rediss", "memcached"):
                    raise ValueError(f"url must start with unix://, redis://, rediss:// or memcached://, got {url!r}")
                kind = _MemcachedBackend if scheme == "memcached" else _RedisBackend
                self._backend = kind(url, self._timeout)
            elif isinstance(url, Sequence) and url and all(isinstance(u, str) for u in url):
                self._backend = _RedisBackend(list(url), self._timeout)
            else:
                raise TypeError(f"url must be a URL string or a list of cluster node URLs, got {url!r}")
        self._memcached = isinstance(self._backend, _MemcachedBackend)
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._hits = self._misses = self._errors = self._fallbacks = 0

    # ------------------------------------------------------------------ keys and values

    def _key(self, key: Any) -> str:
        if type(key) is str:
            name = f"{self._namespace}:{key}"
        else:
            # memoize passes its own keys (ints, tuples of arguments): kept apart from str keys.
            try:
                name = f"{self._namespace}#{json.dumps(key, separators=(',', ':'))}"
            except (TypeError, ValueError):
                raise TypeError(f"a RemoteCache key must be a str (or JSON-encodable), got {key!r}") from None
        if self._memcached and (len(name) > 250 or any(ord(c) <= 32 or ord(c) == 127 for c in name)):
            import hashlib

            name = f"{self._namespace}#sha256:{hashlib.sha256(name.encode()).hexdigest()}"
        return name

    @staticmethod
    def _encode(value: Any) -> bytes:
        try:
            return json.dumps(value, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"RemoteCache stores JSON values only ({exc}); got {type(value).__name__}") from None

    # ------------------------------------------------------------------ the calls

    def _failed(self, exc: BaseException | None = None) -> None:
        """Count a call that could not use the server; back off only when the server is out of
        reach (a refusal such as OOM, or a value that is not ours, concerns that call alone)."""
        with self._lock:
            self._errors += 1
            if exc is not None and isinstance(exc, self._backend.outages):
                self._down_until = time.monotonic() + self._retry_after

    def _skip(self) -> bool:
        """True while the server failed less than ``retry_after`` seconds ago (counted)."""
        if self._down_until and time.monotonic() < self._down_until:
            with self._lock:
                self._errors += 1
            return True
        return False

    def get(self, key: Any, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default`` (a miss, or the server is unreachable)."""
        name = self._key(key)
        if self._skip():
            return default
        try:
            data = self._backend.get(name)
        except self._backend.errors as exc:
            self._failed(exc)
            return default
        if data is None:
            with self._lock:
                self._misses += 1
            return default
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError):  # not ours (a pickle, say): never unpickled
            self._failed()
            return default
        with self._lock:
            self._hits += 1
        return value

    def set(self, key: Any, value: Any, *, ttl: float | None = None) -> None:
        """Store ``value`` for ``ttl`` seconds (default: the cache's). TypeError for a value JSON
        cannot encode, before anything is sent; nothing happens when the server is unreachable."""
        name = self._key(key)
        data = self._encode(value)
        seconds = self._ttl if ttl is None else check_seconds("ttl", ttl)
        if self._skip():
            return
        try:
            self._backend.set(name, data, seconds)
        except self._backend.errors as exc:
            self._failed(exc)

    def delete(self, key: Any) -> None:
        """Remove ``key`` (nothing happens when it is absent or the server is unreachable)."""
        name = self._key(key)
        if self._skip():
            return
        try:
            self._backend.delete(name)
        except self._backend.errors as exc:
            self._failed(exc)

    def get_or_set(self, key: Any, compute: Callable[[], Any], *, ttl: float | None = None) -> Any:
        """Cache-aside: the stored value, or ``compute()`` stored for ``ttl`` and returned."""
        check_callable("compute", compute)
        errors = self._errors
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return value
        value = compute()
        if self._errors != errors:
            with self._lock:
                self._fallbacks += 1
        self.set(key, value, ttl=ttl)
        return value

    def stats(self) -> RemoteCacheStats:
        return RemoteCacheStats(self._hits, self._misses, self._errors, self._fallbacks)

    def close(self) -> None:
        """Close the client's connections (the server keeps running)."""
        self._backend.close()

    def __enter__(self) -> RemoteCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "memcached" if self._memcached else "redis"
        return f"RemoteCache({kind}, namespace={self._namespace!r}, ttl={self._ttl})"
