"""Expiry against real processes: lazy and active reclaiming, TTL values, options, KEEPTTL."""
from __future__ import annotations

import time

import pytest
import redis


@pytest.fixture
def both(predis_server, redis_server):
    clients = [redis.Redis(port=s.port) for s in (predis_server, redis_server)]
    for client in clients:
        client.flushall()
    yield clients
    for client in clients:
        client.close()


def _wait_for(predicate, timeout: float = 3.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _expired_keys(client) -> int | None:
    try:
        info = client.info("stats")
    except redis.ResponseError:
        return None  # INFO not available yet
    return info.get("expired_keys")


def test_lazy_expiry_on_access(both):
    for client in both:
        client.set("k", "v", px=50)
        client.set("keep", "v")
        assert client.get("k") == b"v"
    time.sleep(0.08)
    for client in both:
        assert client.get("k") is None
        assert client.exists("k") == 0
        assert client.ttl("k") == -2
        assert client.get("keep") == b"v"


def test_active_expiry_reclaims_without_access(both):
    ours = both[0]
    before = _expired_keys(ours)
    for client in both:
        pipe = client.pipeline(transaction=False)
        for i in range(300):
            pipe.set(f"gone:{i}", i, px=300)
        pipe.set("stays", 1)
        pipe.dbsize()
        assert pipe.execute()[-1] == 301  # not yet expired: all counted
    for client in both:
        # DBSIZE counts keys still in the table, so it only drops when the cycle frees them
        assert _wait_for(lambda c=client: c.dbsize() == 1), client.dbsize()
    after = _expired_keys(ours)
    if before is not None and after is not None:
        assert after - before >= 300


def test_ttl_values_and_rounding(both):
    for client in both:
        client.set("s", 1, ex=100)
        client.set("p", 1, px=100600)  # 100.6 s: Redis rounds TTL to the nearest second
        client.set("q", 1, px=100400)
        client.set("none", 1)
        assert client.ttl("s") == 100
        assert 99_000 < client.pttl("s") <= 100_000
        assert client.ttl("p") == 101
        assert client.ttl("q") == 100
        assert client.ttl("none") == -1 and client.pttl("none") == -1
        assert client.ttl("missing") == -2 and client.pttl("missing") == -2
        now_ms = int(time.time() * 1000)
        assert abs(client.pexpiretime("s") - (now_ms + 100_000)) < 2000
        assert client.expiretime("none") == -1 and client.expiretime("missing") == -2


def test_set_keepttl_and_overwrite(both):
    for client in both:
        client.set("k", "v", ex=100)
        client.set("k", "w", keepttl=True)
        assert client.ttl("k") == 100 and client.get("k") == b"w"
        client.append("k", "x")  # APPEND, SETRANGE, INCR keep the TTL too
        client.setrange("k", 0, "z")
        assert client.ttl("k") == 100
        client.set("k", "plain")
        assert client.ttl("k") == -1
        client.set("n", 1, ex=100)
        client.incr("n")
        client.incrbyfloat("n", 0.5)
        assert client.ttl("n") == 100
        client.getset("n", 5)
        assert client.ttl("n") == -1


def test_expire_options(both):
    for client in both:
        client.set("k", "v")
        assert client.expire("k", 100, xx=True) is False
        assert client.expire("k", 100, gt=True) is False  # no TTL counts as infinite
        assert client.expire("k", 100, lt=True) is True
        assert client.expire("k", 50, nx=True) is False
        assert client.expire("k", 200, lt=True) is False
        assert client.expire("k", 200, gt=True) is True
        assert client.ttl("k") == 200
        assert client.expire("k", 10, xx=True) is True
        assert client.ttl("k") == 10
        assert client.persist("k") is True and client.ttl("k") == -1
        with pytest.raises(redis.ResponseError, match="not compatible"):
            client.expire("k", 10, nx=True, gt=True)


def test_expire_in_the_past_deletes(both):
    for client in both:
        client.mset({"a": 1, "b": 2, "c": 3, "d": 4})
        assert client.expire("a", -1) is True
        assert client.pexpire("b", 0) is True
        assert client.expireat("c", 1) is True
        assert client.pexpireat("d", int(time.time() * 1000) - 10) is True
        assert client.dbsize() == 0  # deleted at once, not left for expiry
        client.set("e", 1, ex=100)
        assert client.execute_command("GETEX", "e", "PXAT", 1) == b"1"
        assert client.exists("e") == 0


def test_ttl_travels_with_rename_move_copy(both):
    for client in both:
        client.set("k", "v", ex=100)
        client.rename("k", "k2")
        assert client.ttl("k2") == 100
        client.copy("k2", "k3")
        assert client.ttl("k3") == 100
        client.move("k3", 2)
    ours_db2 = redis.Redis(port=both[0].connection_pool.connection_kwargs["port"], db=2)
    assert ours_db2.ttl("k3") == 100
    ours_db2.close()


def test_expired_key_is_invisible_to_keys_scan_and_exists(both):
    for client in both:
        client.set("live", 1)
        client.set("dead", 1, px=20)
    time.sleep(0.05)
    for client in both:
        assert client.keys("*") == [b"live"]
        assert sorted(client.scan_iter()) == [b"live"]
        assert client.exists("dead", "live") == 1
        assert client.type("dead") == b"none"
        with pytest.raises(redis.ResponseError, match="no such key"):
            client.renamenx("dead", "x")
        assert client.copy("dead", "x") is False
