"""Shared fixtures: real Predis and redis-server processes on free ports, clients for both."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from resp import RawConnection  # noqa: E402
from servers import predis_process, redis_process  # noqa: E402


def pytest_collection_modifyitems(config, items):
    from gpu import gpu_available

    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA and CuPy")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def predis_server():
    """One Predis process for the session (tests flush it; start your own for config changes)."""
    with predis_process() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server():
    """The real redis-server the differential tests compare against."""
    with redis_process() as server:
        yield server


@pytest.fixture
def r(predis_server):
    """A redis-py client (RESP2) on a flushed Predis."""
    import redis

    client = redis.Redis(port=predis_server.port)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def real(redis_server):
    import redis

    client = redis.Redis(port=redis_server.port)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def raw_pair(predis_server, redis_server):
    """Raw connections to Predis and Redis, both flushed: compare replies byte for byte."""
    ours, theirs = RawConnection(predis_server.port), RawConnection(redis_server.port)
    for conn in (ours, theirs):
        conn.call("FLUSHALL")
        conn.call("SELECT", "0")
    yield ours, theirs
    ours.close()
    theirs.close()
