"""Hash commands: Predis's raw replies against redis-server 7's, byte for byte, plus behaviour
that cannot be compared byte for byte (randomness, large-hash HSCAN)."""
from __future__ import annotations

import pytest
import redis
from resp import RawConnection


def same(ours: RawConnection, theirs: RawConnection, *args) -> bytes:
    mine, real = ours.call(*args), theirs.call(*args)
    assert mine == real, (args, mine, real)
    return mine


def both(pair, *commands) -> None:
    for args in commands:
        same(*pair, *args)


def hello(pair, protocol: int) -> None:
    for conn in pair:
        conn.call("HELLO", protocol)


@pytest.mark.parametrize("protocol", [2, 3])
def test_basic_replies_match(raw_pair, protocol):
    hello(raw_pair, protocol)
    both(raw_pair,
         ["HSET", "h", "a", "1", "b", "2", "c", "3"],
         ["HSET", "h", "a", "10", "d", "4"],
         ["HGET", "h", "a"], ["HGET", "h", "zz"], ["HGET", "nokey", "a"],
         ["HMGET", "h", "a", "zz", "d"], ["HMGET", "nokey", "a", "b"],
         ["HGETALL", "h"], ["HGETALL", "nokey"],
         ["HKEYS", "h"], ["HVALS", "h"], ["HKEYS", "nokey"], ["HVALS", "nokey"],
         ["HLEN", "h"], ["HLEN", "nokey"],
         ["HEXISTS", "h", "a"], ["HEXISTS", "h", "zz"], ["HEXISTS", "nokey", "a"],
         ["HSTRLEN", "h", "a"], ["HSTRLEN", "h", "zz"], ["HSTRLEN", "nokey", "a"],
         ["HSETNX", "h", "a", "x"], ["HSETNX", "h", "e", "5"], ["HSETNX", "new", "f", "v"],
         ["HMSET", "h", "f", "6", "g", "7"], ["HGETALL", "h"],
         ["HDEL", "h", "a", "zz", "b"], ["HDEL", "nokey", "a"], ["HGETALL", "h"],
         ["HDEL", "h", "c", "d", "e", "f", "g", "zz"], ["EXISTS", "h"], ["HLEN", "h"],
         ["HSET", "h", "", ""], ["HGET", "h", ""], ["HSTRLEN", "h", ""])


def test_order_follows_insertion_and_deletion(raw_pair):
    both(raw_pair,
         ["HSET", "h", "z", "1", "y", "2", "x", "3"], ["HDEL", "h", "y"],
         ["HSET", "h", "y", "9", "w", "8"], ["HSET", "h", "z", "overwritten"],
         ["HGETALL", "h"], ["HKEYS", "h"], ["HVALS", "h"], ["HRANDFIELD", "h", "100"])


def test_errors_match(raw_pair):
    both(raw_pair,
         ["SET", "s", "string"],
         ["HSET", "h", "a"], ["HSET", "h", "a", "1", "b"], ["HMSET", "h", "a", "1", "b"],
         ["HSET", "h"], ["HGET", "h"], ["HSETNX", "h", "a"], ["HMGET", "h"], ["HDEL", "h"],
         ["HLEN"], ["HGETALL"], ["HINCRBY", "h", "a"], ["HSCAN", "h"], ["HRANDFIELD"],
         ["HSET", "s", "a", "1"], ["HMSET", "s", "a", "1"], ["HSETNX", "s", "a", "1"],
         ["HGET", "s", "a"], ["HMGET", "s", "a"], ["HGETALL", "s"], ["HKEYS", "s"], ["HVALS", "s"],
         ["HLEN", "s"], ["HEXISTS", "s", "a"], ["HSTRLEN", "s", "a"], ["HDEL", "s", "a"],
         ["HINCRBY", "s", "a", "1"], ["HINCRBYFLOAT", "s", "a", "1"], ["HSCAN", "s", "0"],
         ["HRANDFIELD", "s"], ["HRANDFIELD", "s", "1"], ["HRANDFIELD", "s", "0"],
         ["HRANDFIELD", "s", "1", "WITHVALUES"], ["GET", "s"],
         ["HSET", "h", "a", "1"], ["GET", "h"], ["INCR", "h"])


def test_hincrby_matches(raw_pair):
    both(raw_pair,
         ["HINCRBY", "h", "n", "5"], ["HINCRBY", "h", "n", "-12"], ["HGET", "h", "n"],
         ["HINCRBY", "h", "n", "x"], ["HINCRBY", "h", "n", "1.5"], ["HINCRBY", "h", "n", " 1"],
         ["HINCRBY", "h", "n", "9223372036854775808"],
         ["HSET", "h", "big", "9223372036854775800"], ["HINCRBY", "h", "big", "7"],
         ["HINCRBY", "h", "big", "1"], ["HGET", "h", "big"],
         ["HSET", "h", "small", "-9223372036854775800"], ["HINCRBY", "h", "small", "-8"],
         ["HINCRBY", "h", "small", "-1"],
         ["HSET", "h", "text", "abc"], ["HINCRBY", "h", "text", "1"],
         ["HSET", "h", "padded", "007"], ["HINCRBY", "h", "padded", "1"],
         ["HSET", "h", "float", "1.0"], ["HINCRBY", "h", "float", "1"],
         ["HINCRBY", "newhash", "f", "0"], ["HGETALL", "newhash"],
         ["HINCRBY", "bad", "f", "oops"], ["EXISTS", "bad"])


def test_hincrbyfloat_matches(raw_pair):
    both(raw_pair,
         ["HINCRBYFLOAT", "h", "f", "10.5"], ["HINCRBYFLOAT", "h", "f", "0.1"],
         ["HINCRBYFLOAT", "h", "f", "-5"], ["HINCRBYFLOAT", "h", "f", "5.0e3"],
         ["HINCRBYFLOAT", "h", "f", "abc"], ["HINCRBYFLOAT", "h", "f", "inf"],
         ["HINCRBYFLOAT", "h", "f", "nan"], ["HINCRBYFLOAT", "h", "f", ""],
         ["HSET", "h", "i", "3"], ["HINCRBYFLOAT", "h", "i", "1.25"],
         ["HSET", "h", "t", "x1"], ["HINCRBYFLOAT", "h", "t", "1"],
         ["HSET", "h", "huge", "1e308"], ["HINCRBYFLOAT", "h", "huge", "1e308"],
         ["HINCRBYFLOAT", "h", "huge", "1e4000"], ["HGET", "h", "huge"],
         ["HINCRBYFLOAT", "h", "z", "-0.0"], ["HINCRBYFLOAT", "h", "third", "0.333333333333333333"],
         # (a value over 64 bytes made Redis's hash a hashtable: compare fields, not order)
         *(["HGET", "h", field] for field in ("f", "i", "t", "huge", "z", "third")))


@pytest.mark.parametrize("protocol", [2, 3])
def test_hscan_small_hash_matches(raw_pair, protocol):
    hello(raw_pair, protocol)
    fields = [x for i in range(20) for x in (f"field:{i}", f"v{i}")]
    both(raw_pair,
         ["HSET", "h", *fields], ["HSET", "s", "a", "1"], ["SET", "str", "x"],
         ["HSCAN", "h", "0"], ["HSCAN", "h", "0", "COUNT", "2"], ["HSCAN", "h", "7"],
         ["HSCAN", "h", "0", "MATCH", "field:1*"], ["HSCAN", "h", "0", "MATCH", "*"],
         ["HSCAN", "h", "0", "match", "nothing", "count", "100"],
         ["HSCAN", "h", "0", "COUNT", "0"], ["HSCAN", "h", "0", "COUNT", "-1"],
         ["HSCAN", "h", "0", "COUNT", "x"], ["HSCAN", "h", "0", "COUNT"],
         ["HSCAN", "h", "0", "MATCH"], ["HSCAN", "h", "0", "TYPE", "string"],
         ["HSCAN", "h", "0", "NOVALUES"], ["HSCAN", "h", "x"], ["HSCAN", "h", "-1"],
         ["HSCAN", "h", "+3"], ["HSCAN", "h", ""], ["HSCAN", "h", " 1"], ["HSCAN", "h", "1 "],
         ["HSCAN", "h", "18446744073709551616"], ["HSCAN", "h", "18446744073709551615"],
         ["HSCAN", "nokey", "0"], ["HSCAN", "nokey", "0", "BOGUS"], ["HSCAN", "nokey", "x"],
         ["HSCAN", "str", "0"])


@pytest.mark.parametrize("protocol", [2, 3])
def test_hrandfield_deterministic_replies_match(raw_pair, protocol):
    hello(raw_pair, protocol)
    both(raw_pair,
         ["HSET", "h", "a", "1", "b", "2", "c", "3"],
         ["HRANDFIELD", "nokey"], ["HRANDFIELD", "nokey", "3"], ["HRANDFIELD", "nokey", "-3"],
         ["HRANDFIELD", "nokey", "3", "WITHVALUES"], ["HRANDFIELD", "h", "0"],
         ["HRANDFIELD", "h", "0", "WITHVALUES"], ["HRANDFIELD", "h", "3"], ["HRANDFIELD", "h", "10"],
         ["HRANDFIELD", "h", "3", "WITHVALUES"], ["HRANDFIELD", "h", "99", "withvalues"],
         ["HRANDFIELD", "h", "1", "WITHVALUE"], ["HRANDFIELD", "h", "1", "WITHVALUES", "x"],
         ["HRANDFIELD", "h", "x"], ["HRANDFIELD", "h", "-9223372036854775808"],
         ["HRANDFIELD", "h", "9223372036854775807", "WITHVALUES"],
         ["HRANDFIELD", "h", "-4611686018427387904", "WITHVALUES"],
         ["HRANDFIELD", "nokey", "x"], ["HRANDFIELD", "nokey", "1", "BAD"],
         # one field: even the random paths are deterministic
         ["HSET", "one", "f", "v"], ["HRANDFIELD", "one"], ["HRANDFIELD", "one", "1", "WITHVALUES"],
         ["HRANDFIELD", "one", "-3", "WITHVALUES"], ["HRANDFIELD", "one", "-2"])


def test_in_place_changes_keep_the_ttl(raw_pair):
    both(raw_pair,
         ["HSET", "h", "a", "1"], ["EXPIRE", "h", "100"], ["HSET", "h", "b", "2"], ["TTL", "h"],
         ["HINCRBY", "h", "n", "1"], ["HINCRBYFLOAT", "h", "x", "1.5"], ["HSETNX", "h", "c", "3"],
         ["HMSET", "h", "d", "4"], ["HDEL", "h", "a"], ["TTL", "h"],
         ["HDEL", "h", "b", "n", "x", "c", "d"], ["TTL", "h"], ["HSET", "h", "a", "1"], ["TTL", "h"])


@pytest.mark.parametrize("protocol", [2, 3])
def test_hrandfield_random_shapes(predis_server, protocol):
    r = redis.Redis(port=predis_server.port, protocol=protocol)
    r.delete("h")
    mapping = {f"f{i}": f"v{i}" for i in range(10)}
    r.hset("h", mapping=mapping)
    assert r.hrandfield("h").decode() in mapping
    distinct = r.hrandfield("h", 5)
    assert len(distinct) == 5 and len(set(distinct)) == 5
    repeated = r.hrandfield("h", -30)
    assert len(repeated) == 30 and set(repeated) <= {k.encode() for k in mapping}
    raw = r.execute_command("HRANDFIELD", "h", "-7", "WITHVALUES")
    if protocol == 3:
        assert len(raw) == 7 and all(len(pair) == 2 for pair in raw)
        pairs = [tuple(pair) for pair in raw]
    else:
        assert len(raw) == 14
        pairs = list(zip(raw[::2], raw[1::2]))
    for field, value in pairs:
        assert mapping[field.decode()] == value.decode()
    r.close()


def test_hscan_large_hash_walk_is_complete_under_changes(r):
    fields = {f"f{i}": str(i) for i in range(1000)}
    r.hset("big", mapping=fields)
    seen: dict[bytes, bytes] = {}
    cursor, calls = 0, 0
    while True:
        cursor, batch = r.hscan("big", cursor, count=50)
        seen.update(batch)
        calls += 1
        # Changes during the walk: new fields, and deletions of fields outside the stable set.
        r.hset("big", f"new{calls}", "x")
        r.hdel("big", f"f{990 + calls % 10}")
        if cursor == 0:
            break
    assert calls > 5  # really paged, not one reply
    stable = {f"f{i}".encode() for i in range(990)}
    assert stable <= set(seen)
    assert all(seen[f"f{i}".encode()] == str(i).encode() for i in range(990))
    matched: set[bytes] = set()
    cursor = 0
    while True:
        cursor, batch = r.hscan("big", cursor, match="f1*", count=100)
        matched.update(batch)
        if cursor == 0:
            break
    assert matched == {k.encode() for k in fields if k.startswith("f1") and int(k[1:]) < 990}


def test_hscan_ends_with_zero_cursor_on_small_hash(r):
    r.hset("h", mapping={"a": "1", "b": "2"})
    assert r.hscan("h", 0, count=1) == (0, {b"a": b"1", b"b": b"2"})
    assert r.hgetall("h") == {b"a": b"1", b"b": b"2"}


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_hash_api(predis_server, protocol):
    r = redis.Redis(port=predis_server.port, protocol=protocol, decode_responses=True)
    r.delete("user")
    assert r.hset("user", mapping={"name": "ada", "age": "36"}) == 2
    assert r.hgetall("user") == {"name": "ada", "age": "36"}
    assert r.hincrby("user", "age", 1) == 37
    assert r.hincrbyfloat("user", "score", 1.5) == 1.5
    assert r.hmget("user", ["name", "missing"]) == ["ada", None]
    assert r.hexists("user", "name") and not r.hexists("user", "nope")
    assert r.hdel("user", "name", "age", "score") == 3
    assert r.exists("user") == 0
    r.set("text", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.hget("text", "f")
    r.close()


def test_memory_usage_follows_hash_size(r):
    before = r.info("memory")["used_memory"]
    r.hset("grow", mapping={f"field{i}": "v" * 100 for i in range(2000)})
    grown = r.info("memory")["used_memory"]
    assert grown - before > 2000 * 100
    r.hdel("grow", *[f"field{i}" for i in range(1999)])
    assert r.info("memory")["used_memory"] < grown - 1999 * 100


def test_command_table_rows_match(raw_pair):
    for name in ("hset", "hmset", "hsetnx", "hget", "hmget", "hgetall", "hkeys", "hvals", "hlen",
                 "hexists", "hstrlen", "hdel", "hincrby", "hincrbyfloat", "hscan", "hrandfield"):
        assert raw_pair[0].call("COMMAND", "INFO", name) == raw_pair[1].call("COMMAND", "INFO", name), name
