"""Session-wide checks: whatever the tests start, they stop."""

from __future__ import annotations

import psutil
import pytest

SERVERS = ("valkey-server", "memcached")


@pytest.fixture(scope="session", autouse=True)
def no_server_outlives_the_session():
    """No Valkey or memcached server started by a test is still running when the session ends."""
    yield
    left = [p for p in psutil.Process().children(recursive=True) if p.name() in SERVERS]
    assert left == [], f"servers left running after the tests: {left}"
