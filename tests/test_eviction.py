"""maxmemory and the eviction policies on a real Predis process (Redis semantics)."""
from __future__ import annotations

import random

import pytest
import redis
from resp import RawConnection
from servers import predis_process

VALUE = b"x" * 100


def _info(client) -> dict:
    return client.info("memory") | client.info("stats")


def _fill(client, prefix: str, count: int, ex: int | None = None) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        pipe.set(f"{prefix}{i}", VALUE, ex=ex)
    pipe.execute(raise_on_error=False)


def test_noeviction_answers_oom_and_keeps_data():
    with predis_process("--maxmemory", "1mb", "--maxmemory-policy", "noeviction") as server:
        raw = RawConnection(server.port)
        reply = b""
        for i in range(20000):
            reply = raw.call("SET", f"k{i}", VALUE)
            if reply != b"+OK\r\n":
                break
        assert reply == b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
        assert 1000 < i < 20000
        assert raw.call("GET", "k0") == b"$100\r\n" + VALUE + b"\r\n"  # reads still work
        assert raw.call("DBSIZE") == b":%d\r\n" % i
        raw.close()


@pytest.mark.parametrize("policy", ["volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"])
def test_volatile_policies_evict_only_keys_with_ttl(policy):
    with predis_process("--maxmemory", "1mb", "--maxmemory-policy", policy) as server:
        client = redis.Redis(port=server.port)
        _fill(client, "keep:", 1000)
        _fill(client, "ttl:", 2500, ex=1000)
        _fill(client, "more:", 3000)  # past the limit: only ttl:* keys can make room
        assert all(client.exists(f"keep:{i}") for i in range(1000))
        info = _info(client)
        assert info["evicted_keys"] > 0
        assert info["used_memory"] <= info["maxmemory"] * 1.05
        with pytest.raises(redis.exceptions.OutOfMemoryError, match="^command not allowed when used memory"):
            _fill_until_error(client)
        assert all(client.exists(f"keep:{i}") for i in range(0, 1000, 50))


def _fill_until_error(client) -> None:
    for i in range(50000):
        client.set(f"flood:{i}", VALUE)


def test_allkeys_lru_keeps_recently_read_keys():
    with predis_process("--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru",
                        "--maxmemory-samples", "5") as server:
        client = redis.Redis(port=server.port)
        _fill(client, "k:", 3000)
        hot = [f"k:{i}" for i in range(0, 3000, 10)]  # 300 keys read often
        cold = [f"k:{i}" for i in range(5, 3000, 10)]  # 300 keys written at the same time, never read
        rng = random.Random(1)
        for round_ in range(12):
            pipe = client.pipeline(transaction=False)
            for key in hot:
                pipe.get(key)
            pipe.execute()
            _fill(client, f"new{round_}:", 800)
            rng.shuffle(hot)
        hot_kept = sum(client.exists(k) for k in hot)
        cold_kept = sum(client.exists(k) for k in cold)
        assert _info(client)["evicted_keys"] > 3000
        assert hot_kept >= 0.8 * len(hot)
        assert cold_kept <= 0.2 * len(cold)


def test_allkeys_lfu_counts_and_object_freq():
    with predis_process("--maxmemory", "1mb", "--maxmemory-policy", "allkeys-lfu") as server:
        client = redis.Redis(port=server.port)
        client.set("popular", VALUE)
        for _ in range(300):
            client.get("popular")
        assert client.object("freq", "popular") > 5
        _fill(client, "filler:", 6000)
        assert client.exists("popular")
        assert _info(client)["evicted_keys"] > 0


def test_config_set_maxmemory_evicts_at_once():
    with predis_process("--maxmemory-policy", "allkeys-random") as server:
        client = redis.Redis(port=server.port)
        _fill(client, "k:", 5000)
        client.config_set("maxmemory", "500kb")
        client.set("trigger", "1")  # eviction runs before a write
        info = _info(client)
        # Eviction runs before the write, which may then grow a table (a dict resize) past it.
        assert info["used_memory"] <= 500 * 1024 * 1.1
        assert info["evicted_keys"] > 2000 and client.dbsize() < 3000


def test_a_store_into_a_full_cache_evicts_about_what_it_needs():
    # Redis frees the excess and no more; Predis takes a few keys per round (victims_needed):
    # a fixed batch of 16 left memory well below the limit after each store that crossed it
    from inprocess import full_keyspace

    from predis_server.keyspace import EVICT_BATCH, EVICT_MIN_BATCH, victims_needed

    keyspace, db, stats = full_keyspace(keys=400)
    for i in range(400, 440):
        db.set(b"k%d" % i, b"v" * 300)
        assert keyspace.enforce_maxmemory()
        assert keyspace.used_memory() <= keyspace.maxmemory
    assert stats.evicted_keys <= 40 + EVICT_MIN_BATCH
    assert victims_needed(10, 1000, 10) == EVICT_MIN_BATCH
    assert victims_needed(700, 1000, 10) == 7
    assert victims_needed(10**9, 1000, 10) == EVICT_BATCH


def test_an_allowance_leaves_that_much_over_maxmemory_for_a_later_eviction():
    # a demand-loaded store evicts for itself only: what prefetched stores owe (their deferred
    # eviction, models.prefetch) is allowed over the limit until it runs
    from inprocess import full_keyspace

    keyspace, db, stats = full_keyspace()
    for i in range(200, 210):
        db.set(b"k%d" % i, b"v" * 300)
    over = keyspace.used_memory() - keyspace.maxmemory
    assert over > 0
    assert keyspace.enforce_maxmemory(allowance=over)
    assert stats.evicted_keys == 0
    assert keyspace.enforce_maxmemory(allowance=over // 2)
    assert 0 < stats.evicted_keys < 10
    assert keyspace.maxmemory < keyspace.used_memory() <= keyspace.maxmemory + over // 2
    assert keyspace.enforce_maxmemory()
    assert keyspace.used_memory() <= keyspace.maxmemory
