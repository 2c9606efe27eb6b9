"""Values up to proto-max-bulk-len (512 MB) through a real server on each store backend, and a
value larger than maxmemory refused with OOM as Redis refuses it."""
from __future__ import annotations

import pytest
import redis
from servers import predis_process, redis_process

MB = 1 << 20
BACKENDS = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_value_at_proto_max_bulk_len_round_trips(backend):
    """A 512 MB string (the default proto-max-bulk-len) is stored, read back whole and in
    part, counted in used_memory, and a second client is served meanwhile."""
    value = b"x" * (512 * MB - 7) + b"tail123"
    with predis_process("--store-backend", backend) as server:
        client = redis.Redis(port=server.port, socket_timeout=120)
        other = redis.Redis(port=server.port, socket_timeout=30)
        other.set("small", "v")
        assert client.set("big", value) is True
        assert client.strlen("big") == 512 * MB
        assert client.getrange("big", -7, -1) == b"tail123"
        assert other.get("small") == b"v"
        assert client.get("big") == value
        assert client.info("memory")["used_memory"] >= 512 * MB
        assert client.delete("big") == 1
        assert client.info("memory")["used_memory"] < 64 * MB
        assert other.ping() is True


@pytest.mark.parametrize("policy", ["noeviction", "allkeys-lru"])
def test_value_larger_than_maxmemory_is_refused_like_redis(policy):
    """Redis counts the query buffer that holds a command in used memory, so a value larger
    than maxmemory gets -OOM (after evicting what it can under an eviction policy) instead of
    being stored far over the limit. Predis counts the command's size the same way: same
    reply, same keys left, and later small writes work once memory is free."""
    value = b"v" * (150 * MB)
    outcomes = {}
    for name, process in (("redis", redis_process), ("predis", predis_process)):
        with process("--maxmemory", "100mb", "--maxmemory-policy", policy) as server:
            client = redis.Redis(port=server.port, socket_timeout=60)
            client.set("kept", "1")
            with pytest.raises(redis.exceptions.OutOfMemoryError) as refused:
                client.set("big", value)
            outcomes[name] = (str(refused.value), client.exists("big"), client.dbsize(),
                              client.info("stats")["evicted_keys"])
            if name == "predis":
                assert client.set("after", "ok") is True  # nothing of the refused value stays
    assert outcomes["predis"] == outcomes["redis"]
