"""Keyspace family, compared with the real redis-server byte for byte where replies are
deterministic, and by content where Redis's order is arbitrary (KEYS, SCAN, RANDOMKEY)."""
from __future__ import annotations

import pytest
import redis
from resp import RawConnection

from predis_server.commands import COMMANDS
from predis_server.commands import keys as keys_family

BIN = b"k\r\n\x00\xff"


def run_same(pair, *commands):
    ours, theirs = pair
    for args in commands:
        mine, real = ours.call(*args), theirs.call(*args)
        assert mine == real, f"{args}: predis {mine!r} != redis {real!r}"


CASES = {
    "del-exists-type-touch": [
        ["SET", "a", "1"], ["SET", BIN, "2"], ["DEL", "a", "a", "missing", BIN], ["DEL", "a"],
        ["SET", "a", "1"], ["UNLINK", "a", "b"], ["SET", "a", "1"], ["EXISTS", "a", "a", "b"],
        ["TYPE", "a"], ["TYPE", "missing"], ["HSET", "h", "f", "v"], ["TYPE", "h"],
        ["TOUCH", "a", "h", "missing", "a"], ["DEL"], ["EXISTS"], ["TYPE"], ["TYPE", "a", "b"],
        ["TOUCH"], ["UNLINK"],
    ],
    "expire-options": [
        ["SET", "a", "1"], ["SET", "b", "2"],
        ["EXPIRE", "a", "100", "NX", "XX"], ["EXPIRE", "a", "100", "GT", "LT"],
        ["EXPIRE", "a", "100", "nx", "gt"], ["EXPIRE", "a", "100", "NX", "LT"],
        ["EXPIRE", "a", "100", "FOO"], ["EXPIRE", "a", "abc", "FOO"], ["EXPIRE", "a", "abc"],
        ["EXPIRE", "a", "100", "XX"], ["EXPIRE", "a", "100", "GT"], ["EXPIRE", "a", "100", "LT"],
        ["TTL", "a"], ["EXPIRE", "a", "100", "NX"], ["EXPIRE", "a", "100", "NX", "NX"],
        ["EXPIRE", "a", "200", "LT"], ["EXPIRE", "a", "50", "LT"], ["TTL", "a"],
        ["EXPIRE", "a", "40", "GT"], ["EXPIRE", "a", "300", "GT", "XX"], ["TTL", "a"],
        ["EXPIRE", "a", "10", "NX"], ["EXPIRE", "a", "10", "xx"], ["TTL", "a"],
        ["PEXPIRE", "b", "100600"], ["TTL", "b"], ["PEXPIRE", "b", "100400"], ["TTL", "b"],
        ["EXPIRE", "missing", "10"], ["EXPIRE", "missing", "abc"], ["PERSIST", "a"],
        ["PERSIST", "a"], ["PERSIST", "missing"], ["TTL", "a"], ["TTL", "missing"],
        ["PTTL", "missing"], ["PTTL", "a"], ["EXPIRETIME", "a"], ["PEXPIRETIME", "missing"],
        ["PEXPIREAT", "a", "9999999999999"], ["PEXPIRETIME", "a"], ["EXPIRETIME", "a"],
        ["EXPIREAT", "a", "9999999999"], ["EXPIRETIME", "a"], ["PEXPIRETIME", "a"],
    ],
    "expire-overflow": [
        ["SET", "a", "1"], ["EXPIRE", "a", "9223372036854776"], ["EXPIRE", "a", "9223372036854775"],
        ["EXPIRE", "a", "-9223372036854776"], ["PEXPIRE", "a", "9223372036854775807"],
        ["EXPIREAT", "a", "9223372036854776"], ["PEXPIREAT", "a", "9223372036854775807"],
        ["PEXPIRETIME", "a"], ["EXPIRE", "a", "9223372036854775808"], ["TTL", "a"],
        ["EXPIRE", "a", "-9223372036854775"], ["EXISTS", "a"],
    ],
    "rename": [
        ["SET", "x", "1"], ["RENAME", "x", "x"], ["RENAMENX", "x", "x"], ["RENAME", "nokey", "y"],
        ["RENAMENX", "nokey", "y"], ["RENAME", "nokey", "nokey"], ["EXPIRE", "x", "100"],
        ["RENAME", "x", "y"], ["EXISTS", "x"], ["GET", "y"], ["TTL", "y"], ["SET", "z", "3"],
        ["RENAMENX", "y", "z"], ["RENAMENX", "y", BIN], ["GET", BIN], ["TTL", BIN],
        ["RENAME", BIN, "z"], ["GET", "z"], ["TTL", "z"], ["HSET", "h", "f", "v"],
        ["RENAME", "h", "z"], ["TYPE", "z"], ["RENAME", "a"],
    ],
    "copy": [
        ["SET", "w", "1"], ["EXPIRE", "w", "100"], ["COPY", "w", "w"], ["COPY", "w", "w", "DB", "1"],
        ["COPY", "w", "w", "DB", "16"], ["COPY", "w", "w", "DB", "-1"],
        ["COPY", "w", "w", "DB", "2147483648"], ["COPY", "w", "w", "DB", "abc"],
        ["COPY", "w", "w2", "FOO"], ["COPY", "w", "w2", "DB"], ["COPY", "w", "w2"], ["TTL", "w2"],
        ["SET", "z", "x"], ["COPY", "w", "z"], ["COPY", "w", "z", "REPLACE"], ["GET", "z"],
        ["TTL", "z"], ["COPY", "nokey", "zz"], ["COPY", "nokey", "z", "REPLACE"],
        ["COPY", "w", "z", "REPLACE", "DB", "0", "REPLACE"], ["SELECT", "1"], ["TTL", "w"],
        ["GET", "w"], ["SELECT", "0"],
    ],
    "move-swapdb": [
        ["SET", "z", "1"], ["MOVE", "z", "0"], ["MOVE", "z", "16"], ["MOVE", "z", "abc"],
        ["MOVE", "z", "2147483648"], ["MOVE", "z", "-1"], ["PEXPIRE", "z", "100000"],
        ["MOVE", "z", "1"], ["MOVE", "z", "1"], ["MOVE", "nokey", "1"], ["EXISTS", "z"],
        ["SET", "z", "2"], ["MOVE", "z", "1"], ["SELECT", "1"], ["GET", "z"], ["TTL", "z"],
        ["SELECT", "0"], ["SWAPDB", "0", "1"], ["GET", "z"], ["TTL", "z"], ["SWAPDB", "0", "16"],
        ["SWAPDB", "abc", "1"], ["SWAPDB", "0", "abc"], ["SWAPDB", "2147483648", "0"],
        ["SWAPDB", "0", "-1"], ["SWAPDB", "0", "0"], ["GET", "z"], ["SWAPDB", "1", "0"],
        ["GET", "z"], ["SWAPDB", "0"],
    ],
    "scan-errors": [
        ["SET", "a", "1"], ["SCAN", "abc"], ["SCAN", "18446744073709551616"], ["SCAN", " 1"],
        ["SCAN", "1 "], ["SCAN", "0x"], ["SCAN", "-"], ["SCAN", "0", "COUNT", "0"],
        ["SCAN", "0", "COUNT", "-1"], ["SCAN", "0", "COUNT", "abc"], ["SCAN", "0", "MATCH"],
        ["SCAN", "0", "FOO", "bar"], ["SCAN", "0", "TYPE", "hash"], ["SCAN", "0", "TYPE", "nonsense"],
        ["SCAN", "0", "MATCH", "nomatch", "COUNT", "1000"], ["SCAN", "0", "TYPE", "STRING"],
        ["KEYS"], ["KEYS", "a", "b"],
        ["RANDOMKEY", "x"], ["SCAN"],
    ],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_redis(raw_pair, name):
    run_same(raw_pair, *CASES[name])


def test_scan_accepts_what_strtoul_accepts(raw_pair):
    """Cursors are positions, so only "accepted or not" can be compared with Redis."""
    for conn in raw_pair:
        conn.call("SET", "a", "1")
    for cursor in ("-1", "18446744073709551615", "+0", "", "-18446744073709551615", "0\x00junk"):
        replies = [conn.call("SCAN", cursor) for conn in raw_pair]
        assert [r.startswith(b"*2\r\n") for r in replies] == [True, True], (cursor, replies)


@pytest.fixture
def both(predis_server, redis_server):
    clients = [redis.Redis(port=s.port) for s in (predis_server, redis_server)]
    for client in clients:
        client.flushall()
    yield clients
    for client in clients:
        client.close()


def _fill(client):
    names = [b"user:%d" % i for i in range(300)] + [b"item:%d" % i for i in range(40)]
    client.mset({name: b"v" for name in names})
    client.hset("user:h", mapping={"f": "v"})
    client.set(BIN, b"bin")
    return names


@pytest.mark.parametrize("pattern", [b"*", b"user:1?", b"item:[0-2]*", b"*\x00*", b"nomatch",
                                     b"user:[^1-8]*", b"h*"])
def test_keys_same_set_as_redis(both, pattern):
    for client in both:
        _fill(client)
    ours, theirs = (sorted(c.keys(pattern)) for c in both)
    assert ours == theirs
    assert ours or pattern in (b"nomatch", b"h*")


def test_scan_walk_visits_every_key_once(both):
    ours, theirs = both
    names = _fill(ours)
    _fill(theirs)
    seen: list[bytes] = []
    cursor = 0
    while True:
        cursor, batch = ours.scan(cursor, count=7)
        seen.extend(batch)
        if cursor == 0:
            break
    assert sorted(seen) == sorted(names + [b"user:h", BIN])
    for kwargs in ({"match": "user:2*"}, {"_type": "hash"}, {"_type": "STRING", "match": "item*"}):
        assert sorted(ours.scan_iter(count=50, **kwargs)) == sorted(theirs.scan_iter(count=50, **kwargs))


def test_scan_cursor_survives_writes(both):
    ours = both[0]
    for i in range(100):
        ours.set(f"k{i}", i)
    cursor, first = ours.scan(0, count=30)
    for i in range(100, 200):  # keys added mid-walk may or may not appear; old ones must
        ours.set(f"k{i}", i)
    seen = set(first)
    while cursor:
        cursor, batch = ours.scan(cursor, count=30)
        seen.update(batch)
    assert {f"k{i}".encode() for i in range(100)} <= seen


def test_randomkey(both):
    ours, theirs = both
    assert ours.randomkey() is None and theirs.randomkey() is None
    ours.mset({"a": 1, "b": 2, "c": 3})
    picks = {ours.randomkey() for _ in range(60)}
    assert picks <= {b"a", b"b", b"c"} and len(picks) >= 2


def test_randomkey_skips_expired(both):
    ours = both[0]
    ours.set("alive", 1)
    for i in range(50):
        ours.set(f"dying{i}", 1, px=1)
    import time
    time.sleep(0.01)
    assert all(ours.randomkey() == b"alive" for _ in range(20))


def test_copy_hash_is_deep(predis_server, redis_server):
    for server in (predis_server, redis_server):
        db0, db3 = redis.Redis(port=server.port, db=0), redis.Redis(port=server.port, db=3)
        db0.flushall()
        db0.hset("h", mapping={"f": "1"})
        assert db0.copy("h", "h2") is True
        db0.hset("h2", "g", "2")
        db0.hincrby("h2", "f", 5)
        assert db0.copy("h", "h3", destination_db=3) is True
        db3.hset("h3", "x", "y")
        db0.hdel("h", "f")  # the copies must not see changes to the original either
        assert db0.hgetall("h") == {}
        assert db0.hgetall("h2") == {b"f": b"6", b"g": b"2"}
        assert db3.hgetall("h3") == {b"f": b"1", b"x": b"y"}
        db0.close()
        db3.close()


def test_swapdb_is_seen_by_other_connections(predis_server, redis_server):
    for server in (predis_server, redis_server):
        db0, db1 = redis.Redis(port=server.port, db=0), redis.Redis(port=server.port, db=1)
        db0.flushall()
        db0.set("where", "zero")
        db1.set("where", "one")
        db1.expire("where", 100)
        assert db0.swapdb(0, 1) is True
        assert (db0.get("where"), db1.get("where")) == (b"one", b"zero")
        assert 0 < db0.ttl("where") <= 100 and db1.ttl("where") == -1
        assert db0.dbsize() == db1.dbsize() == 1
        db0.close()
        db1.close()


def test_rename_in_multi_keeps_watch_semantics(predis_server):
    watcher = redis.Redis(port=predis_server.port)
    other = redis.Redis(port=predis_server.port)
    watcher.flushall()
    watcher.set("src", 1)
    with watcher.pipeline() as pipe:
        pipe.watch("dst")
        other.rename("src", "dst")  # creating the watched key must abort the transaction
        pipe.multi()
        pipe.set("dst", 2)
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert watcher.get("dst") == b"1"
    watcher.close()
    other.close()


MY_COMMANDS = [cmd.name for cmd in keys_family.COMMANDS] + [
    "get", "set", "setnx", "setex", "psetex", "getset", "mget", "mset", "msetnx", "getdel",
    "getex", "append", "strlen", "getrange", "substr", "setrange", "incr", "decr", "incrby",
    "decrby", "incrbyfloat", "lcs"]


def test_table_matches_redis_command_info(redis_server):
    """Arity, flags, key positions and ACL categories as the real server's COMMAND INFO."""
    conn = RawConnection(redis_server.port)
    import hiredis
    reader = hiredis.Reader()
    try:
        for name in MY_COMMANDS:
            reader.feed(conn.call("COMMAND", "INFO", name))
            info = reader.gets()[0]
            ours = COMMANDS[name]
            flags = {f.decode() for f in info[2]}
            assert (ours.arity, ours.first_key, ours.last_key, ours.step) == tuple(info[1:2] + info[3:6]), name
            assert set(ours.flags) == flags, name
            assert set(ours.categories) == {c.decode() for c in info[6]}, name
    finally:
        conn.close()


def test_resp3_replies_match_redis(raw_pair):
    for conn in raw_pair:
        conn.call("HELLO", "3")
    run_same(raw_pair,
             ["SET", "a", "1"], ["TYPE", "a"], ["TYPE", "missing"], ["SCAN", "0", "MATCH", "a"],
             ["EXPIRE", "a", "100"], ["TTL", "a"], ["RANDOMKEY"], ["RENAME", "a", "b"],
             ["RANDOMKEY"], ["COPY", "b", "c"], ["KEYS", "c"], ["SWAPDB", "0", "1"], ["RANDOMKEY"])
