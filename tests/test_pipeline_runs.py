"""Pipelined runs of plain GET / SET / INCR (predis_server/pipeline.py) against real Redis.

One write carries the whole pipeline, so Predis runs it in one batch and takes the fast
loop; the raw reply bytes must equal redis-server's, and the counters must move as Redis's.
"""
from __future__ import annotations

from tests.resp import RawConnection, encode_command


def _pipeline(conn: RawConnection, commands: list[tuple]) -> bytes:
    """Send all commands in one write; return the concatenated raw replies."""
    conn.send(b"".join(encode_command(*c) for c in commands))
    return b"".join(conn.read_reply() for _ in commands)


MIXED = [
    ("SET", "a", "1"), ("SET", "b", "x" * 20000), ("GET", "a"), ("get", "missing"),
    ("INCR", "a"), ("incr", "a"), ("INCR", "fresh"), ("GET", "b"),
    ("HSET", "list", "f", "v"), ("GET", "list"), ("INCR", "list"), ("SET", "list", "now-a-string"),
    ("GET", "list"), ("SET", "n", "9223372036854775807"), ("INCR", "n"), ("SET", "z", "007"),
    ("INCR", "z"), ("SET", "neg", "-5"), ("INCR", "neg"), ("SET", "sp", " 1"), ("INCR", "sp"),
    ("SET", "k", "v", "EX", "100"), ("TTL", "k"), ("INCR", "cnt"), ("GET", "cnt"),
]


def test_mixed_pipeline_matches_redis(raw_pair):
    ours, theirs = raw_pair
    assert _pipeline(ours, MIXED) == _pipeline(theirs, MIXED)
    for key in ("a", "b", "list", "n", "z", "neg", "sp", "cnt", "fresh"):
        assert ours.call("GET", key) == theirs.call("GET", key)


def test_runs_of_gets_match_redis(raw_pair):
    """Consecutive GETs go through one get_many and one join: hits, misses, big values,
    wrong types and the counters must still be Redis's."""
    ours, theirs = raw_pair
    setup = [("SET", f"g{i}", "v" * i) for i in range(12)] + [("SET", "big", "b" * 20000), ("HSET", "h", "f", "v")]
    all_hits = [("GET", f"g{i}") for i in range(12)]
    mixed = [("GET", "g1"), ("GET", "none"), ("GET", "big"), ("GET", "h"), ("GET", "g0"), ("GET", "g11"),
             ("GET", "none2"), ("SET", "g2", "new"), ("GET", "g2"), ("GET", "g3"), ("GET", "g4"), ("GET", "g5")]
    for conn in raw_pair:
        _pipeline(conn, setup)
        conn.call("CONFIG", "RESETSTAT")
    assert _pipeline(ours, all_hits + mixed + all_hits) == _pipeline(theirs, all_hits + mixed + all_hits)
    info = [dict(line.split(":", 1) for line in conn.call("INFO", "all").decode().splitlines() if ":" in line)
            for conn in raw_pair]
    for field in ("keyspace_hits", "keyspace_misses", "total_error_replies"):
        assert info[0][field] == info[1][field], field
    calls = [[f for f in conn_info["cmdstat_get"].split(",") if "usec" not in f] for conn_info in info]
    assert calls[0] == calls[1]  # calls, rejected_calls, failed_calls


def test_long_pipeline_replies_and_counters(raw_pair):
    ours, theirs = raw_pair
    commands = []
    for i in range(300):
        commands += [("SET", f"k{i}", f"v{i}"), ("GET", f"k{i}"), ("GET", f"nope{i}"), ("INCR", "c")]
    for conn in raw_pair:
        conn.call("CONFIG", "RESETSTAT")
    assert _pipeline(ours, commands) == _pipeline(theirs, commands)

    def stats(conn):
        info = conn.call("INFO", "all").decode()
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        return {name: fields[name] for name in ("keyspace_hits", "keyspace_misses")}, \
            {name: fields[name].split(",")[0] for name in fields if name.startswith("cmdstat_")}

    assert stats(ours) == stats(theirs)
    assert stats(ours)[1]["cmdstat_get"] == "calls=600"


def test_errors_in_runs_are_counted(raw_pair):
    ours, theirs = raw_pair
    commands = [("HSET", "l", "f", "x"), ("GET", "l"), ("GET", "l"), ("INCR", "l"), ("SET", "s", "abc"),
                ("INCR", "s"), ("GET", "s")]
    for conn in raw_pair:
        conn.call("CONFIG", "RESETSTAT")
    assert _pipeline(ours, commands) == _pipeline(theirs, commands)
    def errorstats(conn):  # as a set: Predis lists them in first-seen order, Redis sorted
        return set(conn.call("INFO", "errorstats").decode().split("\r\n")[2:])

    assert errorstats(ours) == errorstats(theirs)
    assert "errorstat_WRONGTYPE:count=3" in errorstats(ours)
    info = ours.call("INFO", "commandstats").decode()
    assert "cmdstat_get:calls=3," in info and "failed_calls=2" in info


def test_watch_sees_pipelined_set_and_incr(predis_server):
    watcher, writer = RawConnection(predis_server.port), RawConnection(predis_server.port)
    try:
        watcher.call("SET", "w1", "0")
        for key, write in (("w1", ("INCR", "w1")), ("w2", ("SET", "w2", "x"))):
            assert watcher.call("WATCH", key) == b"+OK\r\n"
            _pipeline(writer, [write, ("GET", key), write])
            assert watcher.call("MULTI") == b"+OK\r\n"
            watcher.call("GET", key)
            assert watcher.call("EXEC") == b"*-1\r\n"  # the pipelined write aborted it
    finally:
        watcher.close()
        writer.close()


def test_slowlog_zero_still_logs_every_pipelined_command(predis_server):
    conn = RawConnection(predis_server.port)
    try:
        conn.call("CONFIG", "SET", "slowlog-log-slower-than", "0")
        conn.call("SLOWLOG", "RESET")
        _pipeline(conn, [("SET", "s1", "v"), ("GET", "s1"), ("INCR", "s2"), ("GET", "s2")])
        conn.call("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        assert conn.call("SLOWLOG", "LEN") == b":5\r\n"  # the four, and the CONFIG SET
    finally:
        conn.call("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        conn.close()


def test_pipeline_in_multi_is_queued(raw_pair):
    ours, theirs = raw_pair
    commands = [("MULTI",), ("SET", "m", "1"), ("INCR", "m"), ("GET", "m"), ("EXEC",), ("GET", "m")]
    assert _pipeline(ours, commands) == _pipeline(theirs, commands)


def test_pipelined_mgets_match_redis(raw_pair):
    """Runs with MGET (built in C when the extension is there): hits, misses, other types and
    the keyspace counters as Redis's."""
    ours, theirs = raw_pair
    setup = [("SET", f"m{i}", "v" * i) for i in range(10)] + [("HSET", "mh", "f", "v")]
    run = [("MGET", "m1", "m2", "nope", "mh"), ("GET", "m3"), ("MGET", "m9"), ("SET", "m1", "w"),
           ("MGET", *[f"m{i}" for i in range(10)]), ("INCR", "mc"), ("MGET", "mc", "mh", "m0")] * 3
    for conn in raw_pair:
        _pipeline(conn, setup)
        conn.call("CONFIG", "RESETSTAT")
    assert _pipeline(ours, run) == _pipeline(theirs, run)
    info = [dict(line.split(":", 1) for line in conn.call("INFO", "all").decode().splitlines() if ":" in line)
            for conn in raw_pair]
    for field in ("keyspace_hits", "keyspace_misses"):
        assert info[0][field] == info[1][field], field
    calls = [[f for f in conn_info["cmdstat_mget"].split(",") if "usec" not in f] for conn_info in info]
    assert calls[0] == calls[1]
