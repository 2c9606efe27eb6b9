"""Request parsing against real processes: inline commands, pipelines, split frames, binary values.

Where Redis defines the bytes, Predis's raw reply stream is compared with the real redis-server's.
"""
from __future__ import annotations

import socket
import time

import pytest
from resp import RawConnection, encode_command, reply_length


def exchange(port: int, data: bytes, replies: int, chunk: int = 0) -> bytes:
    """Send ``data`` (in pieces of ``chunk`` bytes when set) and return exactly ``replies`` replies."""
    conn = RawConnection(port)
    try:
        if chunk:
            for i in range(0, len(data), chunk):
                conn.send(data[i:i + chunk])
                time.sleep(0.0005)  # let each piece arrive as its own read
        else:
            conn.send(data)
        return b"".join(conn.read_reply() for _ in range(replies))
    finally:
        conn.close()


def both(predis_server, redis_server, setup: list[list[str]], data: bytes, replies: int,
         chunk: int = 0) -> tuple[bytes, bytes]:
    results = []
    for server in (predis_server, redis_server):
        conn = RawConnection(server.port)
        conn.call("FLUSHALL")
        for argv in setup:
            conn.call(*argv)
        conn.close()
        results.append(exchange(server.port, data, replies, chunk))
    return results[0], results[1]


INLINE_CASES = [
    (b"PING\r\n", 1),
    (b"PING\n", 1),
    (b"ECHO hello\r\n", 1),
    (b"SET k \"hello world\"\r\nGET k\r\n", 2),
    (b"SET k \"a\\x41\\n\\t\\\"b\\\\\"\r\nGET k\r\n", 2),  # hex, \n, \t, \", \\ escapes
    (b"SET k \"\\x4g\\q\"\r\nGET k\r\n", 2),  # not-quite escapes are kept literally
    (b"SET k 'it\\'s \"quoted\"'\r\nGET k\r\n", 2),  # single quotes: only \' is special
    (b"SET k \"\"\r\nSTRLEN k\r\n", 2),  # an empty quoted argument
    (b"   SET    k\tv   \r\nGET k\r\n", 2),  # runs of blanks separate arguments
    (b"\r\n\r\n\nPING\r\n", 1),  # empty lines are skipped without a reply
    (b"ECHO \"\\xff\\x00\\x0d\"\r\n", 1),  # binary bytes through hex escapes
    (b"NOSUCH a b\r\n", 1),
    (b"GET\r\n", 1),
]


@pytest.mark.parametrize("data,replies", INLINE_CASES)
def test_inline_commands_match_redis(predis_server, redis_server, data, replies):
    ours, theirs = both(predis_server, redis_server, [], data, replies)
    assert ours == theirs


def test_mixed_inline_and_resp_in_one_write_matches_redis(predis_server, redis_server):
    data = (b"SET a 1\r\n" + encode_command("INCR", "a") + b"INCR a\r\n"
            + encode_command("GET", "a") + b"*0\r\n*-1\r\nGET a\n" + encode_command("ECHO", "x\r\ny"))
    ours, theirs = both(predis_server, redis_server, [], data, 6)
    assert ours == theirs
    assert ours.startswith(b"+OK\r\n:2\r\n:3\r\n$1\r\n3\r\n")


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_frames_split_anywhere_match_redis(predis_server, redis_server, chunk):
    data = b"".join([
        encode_command("SET", "key", b"v\r\nal\x00ue"), b"GET key\r\n", encode_command("GET", "key"),
        encode_command("MSET", *[f"k{i}" for i in range(24)]), encode_command("MGET", "k0", "k2", "nokey"),
        encode_command("APPEND", "key", b"x" * 300), encode_command("STRLEN", "key"),
    ])
    ours, theirs = both(predis_server, redis_server, [], data, 7, chunk=chunk)
    assert ours == theirs


def test_pipeline_of_100k_commands_in_one_write(predis_server):
    count = 100_000
    data = encode_command("INCR", "counter") * count
    conn = RawConnection(predis_server.port, timeout=60)
    conn.call("DEL", "counter")
    conn.send(data)
    expected = b"".join(b":%d\r\n" % i for i in range(1, count + 1))
    received = b""
    while len(received) < len(expected):
        chunk = conn.sock.recv(1 << 20)
        assert chunk, "connection closed mid-pipeline"
        received += chunk
    assert received == expected
    assert conn.call("GET", "counter") == b"$6\r\n100000\r\n"
    conn.close()


def test_deep_pipeline_of_mixed_forms_keeps_order(predis_server):
    parts, expected = [], []
    for i in range(20_000):
        if i % 3 == 0:
            parts.append(b"ECHO inline%d\r\n" % i)
        else:
            parts.append(encode_command("ECHO", b"resp%d" % i))
        text = (b"inline%d" if i % 3 == 0 else b"resp%d") % i
        expected.append(b"$%d\r\n%s\r\n" % (len(text), text))
    assert exchange(predis_server.port, b"".join(parts), len(expected)) == b"".join(expected)


def test_values_with_crlf_and_nul_round_trip(r):
    values = [b"\r\n", b"\x00", b"a\r\nb\x00c\r\n\r\n", bytes(range(256)) * 4, b"$3\r\nfoo\r\n", b"*1\r\n"]
    for i, value in enumerate(values):
        r.set(f"bin{i}", value)
    assert r.mget([f"bin{i}" for i in range(len(values))]) == values
    assert r.set(b"key\r\n\x00", b"v") and r.get(b"key\r\n\x00") == b"v"


def test_non_canonical_lengths_are_judged_exactly(predis_server, redis_server):
    # hiredis refuses these; the exact parser must give Redis's error, not a mis-parse
    for data in (b"*1\r\n$04\r\nPING\r\n", b"*1\r\n$+4\r\nPING\r\n", b"*01\r\n$4\r\nPING\r\n",
                 b"*1\r\n$4 \r\nPING\r\n", b"PING\r\n*1\r\n$-0\r\n"):
        replies = []
        for server in (predis_server, redis_server):
            conn = RawConnection(server.port)
            conn.send(data)
            replies.append(conn.read_until_closed())
            conn.close()
        assert replies[0] == replies[1], data
        assert b"-ERR Protocol error: invalid" in replies[0]


def test_lenient_bytes_redis_accepts_are_accepted(predis_server, redis_server):
    # Redis skips the two bytes after a bulk payload and the byte after a header's '\r'
    # without checking them; clients that rely on that must see the same replies.
    data = b"*2\r\n$4\r\nECHO\r\n$2\r\nhixx*1\r\n$4\rxPING\r\n"
    ours, theirs = both(predis_server, redis_server, [], data, 2)
    assert ours == theirs == b"$2\r\nhi\r\n+PONG\r\n"


def _read_exact(sock: socket.socket, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        chunk = sock.recv(min(1 << 22, size - got))
        assert chunk, "connection closed"
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def test_50mb_value_round_trip(predis_server):
    value = (bytes(range(256)) * (50 * 1024 * 4 + 1))[:50 * 1024 * 1024]
    conn = RawConnection(predis_server.port, timeout=60)
    conn.send(encode_command("SET", "huge", value))
    assert conn.read_reply() == b"+OK\r\n"
    conn.send(encode_command("GET", "huge"))
    header = b"$%d\r\n" % len(value)
    data = _read_exact(conn.sock, len(header) + len(value) + 2)
    assert data[:len(header)] == header and data[-2:] == b"\r\n"
    assert data[len(header):-2] == value
    assert conn.call("STRLEN", "huge") == b":%d\r\n" % len(value)
    conn.call("DEL", "huge")
    conn.close()


def test_reply_length_helper_sees_whole_replies():
    # the raw client the differential tests rely on must not cut replies short
    assert reply_length(b"$3\r\nfoo\r\n:1\r\n") == 9
    assert reply_length(b"*2\r\n$1\r\na\r\n$1\r\n") is None


@pytest.mark.parametrize("entry", ["feed", "connection"])
def test_fast_parser_agrees_with_exact_parser_on_any_split(entry):
    # the hiredis fast path must give exactly what the Redis-exact parser gives, wherever
    # reads split the stream and whatever byte is corrupted (seeded, so failures replay);
    # "connection" picks the entry as Connection.data_received does (receive while ready)
    import random

    from predis_server.errors import ProtocolError
    from predis_server.protocol.parser import PythonRequestParser, RequestParser

    frames = [encode_command("GET", "key:1"), b"*0\r\n", encode_command("SET", "k", "0123456789ab"),
              b"PING\r\n", b"*-1\r\n", encode_command(*["x"] * 12), encode_command("ECHO", "*0\r\n"),
              encode_command("ECHO", b"v" * 150), encode_command("ECHO", "*1234567")]

    def parse(parser, chunks):
        out = []
        try:
            for chunk in chunks:
                if entry == "connection" and getattr(parser, "ready", False):
                    parser.receive(chunk, out)
                else:
                    parser.feed(chunk, out)
        except ProtocolError as exc:
            out.append(str(exc))
        return out

    rng = random.Random(7)
    for _ in range(1500):
        data = b"".join(rng.choice(frames) for _ in range(rng.randrange(1, 30)))
        if rng.random() < 0.2:
            at = rng.randrange(len(data))
            data = data[:at] + bytes([rng.randrange(256)]) + data[at + 1:]
        cuts = sorted(set(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(6)))))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        assert parse(RequestParser(), pieces) == parse(PythonRequestParser(2**29, 2**30), [data]), pieces
