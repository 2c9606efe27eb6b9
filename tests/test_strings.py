"""String family edge cases, compared byte for byte with the real redis-server (raw_pair)."""
from __future__ import annotations

import pytest
from resp import RawConnection
from servers import predis_process, redis_process

BIN = b"a\r\nb\x00c\xff"  # CRLF, NUL and a non-UTF-8 byte inside one value
I64_MAX, I64_MIN = b"9223372036854775807", b"-9223372036854775808"


def run_same(pair, *commands):
    """Send each command to both servers; every reply must be identical bytes."""
    ours, theirs = pair
    for args in commands:
        mine, real = ours.call(*args), theirs.call(*args)
        assert mine == real, f"{args}: predis {mine!r} != redis {real!r}"


CASES = {
    "empty-and-binary": [
        ["SET", "e", ""], ["GET", "e"], ["STRLEN", "e"], ["APPEND", "e", ""], ["GET", "e"],
        ["SET", BIN, BIN], ["GET", BIN], ["STRLEN", BIN], ["APPEND", BIN, BIN], ["GET", BIN],
        ["GETRANGE", BIN, "2", "5"], ["SETRANGE", BIN, "1", "\x00\x00"], ["GET", BIN],
        ["MGET", BIN, "e", "missing"], ["GET", "missing"],
    ],
    "integers": [
        ["SET", "i", I64_MAX], ["INCR", "i"], ["GET", "i"], ["DECR", "i"],
        ["SET", "i", I64_MIN], ["DECR", "i"], ["INCRBY", "i", "-1"], ["DECRBY", "i", "1"],
        ["INCRBY", "n", I64_MAX], ["INCRBY", "n", "1"], ["INCRBY", "n", "9223372036854775808"],
        ["DECRBY", "n", I64_MIN], ["DECRBY", "n", "-1"], ["INCRBY", "m", I64_MIN], ["GET", "m"],
        ["INCRBY", "m", "1.5"], ["INCRBY", "m", ""], ["INCRBY", "m", " 1"], ["INCRBY", "m", "+1"],
        ["SET", "z", "007"], ["INCR", "z"], ["SET", "z", "-0"], ["INCR", "z"], ["SET", "z", "+1"],
        ["INCR", "z"], ["SET", "z", " 1"], ["INCR", "z"], ["SET", "z", "1 "], ["INCR", "z"],
        ["SET", "z", ""], ["INCR", "z"], ["SET", "z", "12345678901234567890"], ["INCR", "z"],
        ["SET", "z", "-1"], ["INCR", "z"], ["INCR", "z"], ["GET", "z"], ["DECR", "new"],
    ],
    "floats": [
        ["INCRBYFLOAT", "f", "10.5"], ["INCRBYFLOAT", "f", "0.1"], ["GET", "f"],
        ["INCRBYFLOAT", "g", "5.0e3"], ["INCRBYFLOAT", "g", "-5000"], ["GET", "g"],
        ["INCRBYFLOAT", "h", "1e308"], ["INCRBYFLOAT", "h", "1e308"], ["INCRBYFLOAT", "h", "1e4932"],
        ["INCRBYFLOAT", "x", "inf"], ["INCRBYFLOAT", "x", "-infinity"], ["INCRBYFLOAT", "x", "nan"],
        ["INCRBYFLOAT", "x", "1e5000"], ["INCRBYFLOAT", "x", "1e-5000"], ["INCRBYFLOAT", "x", "0x1p3"],
        ["INCRBYFLOAT", "x", "1e-4950"], ["INCRBYFLOAT", "x", " 1"], ["INCRBYFLOAT", "x", "1 "],
        ["INCRBYFLOAT", "x", "1_0"], ["INCRBYFLOAT", "x", ".5"], ["INCRBYFLOAT", "x", "5."],
        ["INCRBYFLOAT", "x", ""], ["INCRBYFLOAT", "x", "0.00000000000000001"],
        ["INCRBYFLOAT", "x", "-0.0"], ["SET", "s", "1\x00"], ["INCRBYFLOAT", "s", "1"],
        ["SET", "s", "0x10"], ["INCRBYFLOAT", "s", "1"], ["SET", "s", "abc"],
        ["INCRBYFLOAT", "s", "1"], ["INCRBYFLOAT", "w", "-0.000000000000000001"],
    ],
    "arity": [
        ["GET"], ["GET", "a", "b"], ["SET", "k"], ["MSET", "a"], ["MSET", "a", "1", "b"],
        ["MSETNX", "a", "1", "b"], ["GETRANGE", "k", "0"], ["INCRBYFLOAT", "k"], ["LCS", "a"],
        ["STRLEN"], ["SETEX", "k", "10"], ["APPEND", "k"], ["GETDEL"], ["GETEX"],
    ],
    "set-options": [
        ["SET", "k", "v", "EX", "10", "EX", "20"], ["TTL", "k"], ["SET", "k", "v", "NX", "NX"],
        ["SET", "k", "v", "GET", "GET"], ["SET", "k", "v", "KEEPTTL", "KEEPTTL"],
        ["SET", "k", "v", "NX", "GET"], ["SET", "k", "v", "XX", "NX"],
        ["SET", "k", "v", "EX", "10", "PX", "20"], ["SET", "k", "v", "KEEPTTL", "EX", "10"],
        ["SET", "k", "v", "EX", "10", "KEEPTTL"], ["SET", "k", "v", "EX"], ["SET", "k", "v", "FOO"],
        ["SET", "k", "v", "EX", "0"], ["SET", "k", "v", "EX", "-1"], ["SET", "k", "v", "PX", "abc"],
        ["SET", "k", "v", "EX", "9223372036854775"], ["SET", "k", "v", "PX", I64_MAX],
        ["SET", "k", "v", "PXAT", "1"], ["GET", "k"], ["SET", "k", "v", "XX", "GET"],
        ["SET", "k", "v1", "GET"], ["SET", "k", "v2", "XX", "GET"], ["SET", "k", "v3", "NX"],
        ["SET", "k", "v", "PX", "100000"], ["SET", "k", "w", "KEEPTTL"], ["TTL", "k"],
        ["SET", "k", "x"], ["TTL", "k"], ["SET", "k", "v", "ex", "100", "xx", "get"], ["TTL", "k"],
        ["SETNX", "k", "x"], ["SETNX", "k2", "x"], ["GETSET", "k", "y"], ["GETSET", "k3", "y"],
        ["SETEX", "s", "0", "v"], ["SETEX", "s", "abc", "v"], ["SETEX", "s", "100", "v"],
        ["TTL", "s"], ["PSETEX", "s", "-5", "v"], ["PSETEX", "s", "100000", "v"], ["TTL", "s"],
        ["MSET", "a", "1", "b", "2"], ["MSETNX", "a", "1", "c", "3"], ["MSETNX", "c", "3", "d", "4"],
        ["MGET", "a", "b", "c", "d", "e"],
    ],
    "getex-getdel": [
        ["GETEX", "missing", "EX", "abc"], ["GETEX", "missing", "EX", "0"],
        ["GETEX", "missing", "FOO"], ["SET", "k", "v"], ["GETEX", "k", "EX", "abc"],
        ["GETEX", "k", "EX", "0"], ["GETEX", "k", "EX", "10", "EX", "20"], ["TTL", "k"],
        ["GETEX", "k", "PERSIST", "PERSIST"], ["TTL", "k"], ["GETEX", "k", "PERSIST", "EX", "10"],
        ["GETEX", "k", "PX", "100000"], ["TTL", "k"], ["GETEX", "k"], ["TTL", "k"],
        ["GETEX", "k", "PERSIST"], ["TTL", "k"], ["GETEX", "k", "EXAT", "1"], ["EXISTS", "k"],
        ["SET", "k", "v"], ["GETDEL", "k"], ["GETDEL", "k"], ["EXISTS", "k"],
    ],
    "ranges": [
        ["SET", "s", "hello world"], ["GETRANGE", "s", "0", "-1"], ["GETRANGE", "s", "-100", "-50"],
        ["GETRANGE", "s", "-3", "-100"], ["GETRANGE", "s", "5", "2"], ["GETRANGE", "s", "-5", "100"],
        ["GETRANGE", "s", I64_MAX, I64_MAX], ["GETRANGE", "s", I64_MIN, "-1"],
        ["GETRANGE", "s", "0", "abc"], ["GETRANGE", "missing", "0", "-1"], ["SUBSTR", "s", "1", "3"],
        ["SETRANGE", "s", "20", "abc"], ["GET", "s"], ["SETRANGE", "s", "-1", "a"],
        ["SETRANGE", "s", "abc", "a"], ["SETRANGE", "s", "3", ""], ["SETRANGE", "n", "5", ""],
        ["EXISTS", "n"], ["SETRANGE", "n", "3", "x"], ["GET", "n"], ["SET", "e", ""],
        ["GETRANGE", "e", "0", "-1"], ["GETRANGE", "e", "-1", "0"],
    ],
    "lcs": [
        ["SET", "a", "ohmytext"], ["SET", "b", "mynewtext"], ["LCS", "a", "b"],
        ["LCS", "a", "b", "LEN"], ["LCS", "a", "b", "IDX"], ["LCS", "a", "b", "IDX", "MINMATCHLEN", "4"],
        ["LCS", "a", "b", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"],
        ["LCS", "a", "b", "IDX", "WITHMATCHLEN", "MINMATCHLEN", "-3"], ["LCS", "a", "b", "LEN", "IDX"],
        ["LCS", "a", "b", "MINMATCHLEN"], ["LCS", "a", "b", "MINMATCHLEN", "x"], ["LCS", "a", "b", "FOO"],
        ["LCS", "a", "missing", "IDX"], ["LCS", "missing", "missing2"], ["SET", "c", BIN * 3],
        ["SET", "d", b"\x00" + BIN + b"zz" + BIN], ["LCS", "c", "d", "IDX", "WITHMATCHLEN"],
        ["LCS", "c", "d"], ["SET", "p", "abcabcabc"], ["SET", "q", "cbacbacba"],
        ["LCS", "p", "q", "IDX", "WITHMATCHLEN"], ["LCS", "q", "p", "idx", "len"],
    ],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_redis(raw_pair, name):
    run_same(raw_pair, *CASES[name])


def test_wrong_type_errors(raw_pair):
    run_same(raw_pair, ["HSET", "h", "f", "v"], ["SET", "s", "1"])
    run_same(raw_pair,
             ["GET", "h"], ["INCR", "h"], ["INCRBY", "h", "x"], ["INCRBYFLOAT", "h", "1"],
             ["APPEND", "h", "x"], ["STRLEN", "h"], ["GETRANGE", "h", "0", "1"],
             ["SETRANGE", "h", "0", "x"], ["SETRANGE", "h", "-1", "x"], ["SET", "h", "x", "GET"],
             ["GETSET", "h", "x"], ["GETDEL", "h"], ["GETEX", "h", "EX", "abc"], ["MGET", "h", "s"],
             ["LCS", "h", "s"], ["LCS", "s", "h", "FOO"], ["DECRBY", "h", "1"], ["TYPE", "h"],
             ["SET", "h", "x", "NX"], ["SETNX", "h", "x"], ["MSETNX", "h", "y", "z", "1"],
             ["SET", "h", "plain"], ["GET", "h"])


@pytest.fixture(scope="module")
def small_bulk_pair():
    """Both servers with the smallest proto-max-bulk-len Redis accepts (1mb)."""
    with predis_process("--proto-max-bulk-len", "1mb") as ours, \
            redis_process("--proto-max-bulk-len", "1mb") as theirs:
        yield ours, theirs


def test_proto_max_bulk_len_limits(small_bulk_pair):
    ours, theirs = (RawConnection(s.port) for s in small_bulk_pair)
    limit = 1024 * 1024
    try:
        run_same((ours, theirs),
                 ["SETRANGE", "k", str(limit), "x"], ["EXISTS", "k"],
                 ["SETRANGE", "k", str(limit - 1), "x"], ["STRLEN", "k"],
                 ["SETRANGE", "k", str(limit - 1), "xy"], ["SETRANGE", "k", str(limit), ""],
                 ["APPEND", "k", "y"], ["APPEND", "k", ""], ["STRLEN", "k"],
                 ["SET", "a", "x" * (limit - 2)], ["APPEND", "a", "yy"], ["APPEND", "a", "z"],
                 ["STRLEN", "a"], ["SETRANGE", "new", "9223372036854775807", "x"],
                 ["SETRANGE", "new", "9223372036854775808", "x"])
    finally:
        ours.close()
        theirs.close()


def test_resp3_replies_match_redis(raw_pair):
    for conn in raw_pair:
        conn.call("HELLO", "3")  # the HELLO map names the server, so it is not compared
    run_same(raw_pair,
             ["SET", "a", "ohmytext"], ["SET", "b", "mynewtext"], ["GET", "missing"],
             ["LCS", "a", "b", "IDX", "WITHMATCHLEN"], ["LCS", "a", "b", "LEN"],
             ["INCRBYFLOAT", "f", "1.5"], ["MGET", "a", "missing"], ["SET", "a", "x", "GET"],
             ["GETEX", "missing"], ["SET", "a", "y", "NX"])
