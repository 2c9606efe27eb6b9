"""Server family against real processes: INFO, CONFIG, COMMAND, SLOWLOG, LATENCY, MEMORY, OBJECT,
DEBUG, TIME, ROLE, SHUTDOWN; differential checks against the real redis-server where Redis's
reply is deterministic."""
from __future__ import annotations

import os
import time

import hiredis
import pytest
import redis
from resp import RawConnection
from servers import predis_process, redis_process

from predis_server.commands import COMMANDS


def parse(raw: bytes):
    reader = hiredis.Reader()
    reader.feed(raw)
    return reader.gets()


@pytest.fixture(scope="module")
def debug_redis():
    """A redis-server that allows DEBUG (the session one keeps Redis's default, DEBUG off)."""
    with redis_process("--enable-debug-command", "yes") as server:
        yield server


@pytest.fixture
def debug_pair(predis_server, debug_redis):
    ours, theirs = RawConnection(predis_server.port), RawConnection(debug_redis.port)
    for conn in (ours, theirs):
        conn.call("FLUSHALL")
    yield ours, theirs
    ours.close()
    theirs.close()


@pytest.fixture
def restore_config(r):
    """Put back whatever CONFIG SET a test changes on the shared server."""
    names = ["slowlog-log-slower-than", "latency-monitor-threshold", "maxmemory",
             "maxmemory-policy", "slowlog-max-len"]
    saved = {name: r.config_get(name)[name] for name in names}
    yield
    for name, value in saved.items():
        r.execute_command("CONFIG", "SET", name, value)


# -- INFO -----------------------------------------------------------------------------------
def test_info_default_sections_parse_with_redis_py(r):
    info = r.info()
    assert info["redis_version"] == "7.2.4"
    assert info["redis_mode"] == "standalone"
    assert info["role"] == "master"
    assert info["process_id"] != os.getpid() and info["process_id"] > 0
    assert info["tcp_port"] == r.connection_pool.connection_kwargs["port"]
    assert info["connected_clients"] >= 1
    assert info["maxmemory_policy"] == "noeviction"
    assert info["aof_enabled"] == 0 and info["loading"] == 0
    assert info["used_cpu_user"] > 0
    assert info["cluster_enabled"] == 0
    assert len(info["run_id"]) == 40 and len(info["master_replid"]) == 40
    assert not any(key.startswith("cmdstat_") for key in info)  # commandstats is not default


def test_info_sections_and_everything(r):
    r.get("x")
    assert set(r.info("server")) >= {"redis_version", "uptime_in_seconds", "hz", "executable"}
    assert "connected_clients" not in r.info("server")
    both = r.info("server", "clients") if redis.__version__ >= "5" else r.info("server")
    assert "redis_version" in both and "connected_clients" in both
    everything = r.info("everything")
    assert everything["cmdstat_get"]["calls"] >= 1
    assert "usec_per_call" in everything["cmdstat_get"]
    assert r.info("all").keys() >= {"cmdstat_get", "used_memory", "keyspace_hits"}
    assert r.info("nosuchsection") == {}


def test_info_headers_and_separators_match_redis(raw_pair):
    ours, theirs = raw_pair
    titles = []
    for conn in (ours, theirs):
        text = parse(conn.call("INFO", "everything")).decode()
        titles.append([line for line in text.split("\r\n") if line.startswith("#")])
        assert text.endswith("\r\n") and "\r\n\r\n#" in text
    ours_titles, redis_titles = titles
    # Same sections in the same order; sections other packages register (e.g. "# Prediction")
    # come after Redis's own.
    assert ours_titles[:len(redis_titles)] == redis_titles


def test_info_resp3_is_verbatim(predis_server):
    conn = RawConnection(predis_server.port)
    conn.call("HELLO", "3")
    assert conn.call("INFO", "server").startswith(b"=")
    conn.close()


def test_keyspace_and_stats_counters_move(r):
    before = r.info("stats")
    r.set("a", "1")
    r.set("b", "2", px=60_000)
    r.get("a")
    r.get("missing")
    with pytest.raises(redis.ResponseError):
        r.incr("nonsense-arguments", "x")
    r.set("gone", "1", px=1)
    time.sleep(0.01)
    assert r.get("gone") is None
    after = r.info("everything")
    assert after["keyspace_hits"] - before["keyspace_hits"] == 1
    assert after["keyspace_misses"] - before["keyspace_misses"] == 2
    assert after["expired_keys"] - before["expired_keys"] == 1
    assert after["total_commands_processed"] - before["total_commands_processed"] >= 7
    assert after["total_error_replies"] - before["total_error_replies"] == 1
    assert after["db0"] == {"keys": 2, "expires": 1, "avg_ttl": 0}
    assert after["errorstat_ERR"]["count"] >= 1
    assert after["cmdstat_set"]["calls"] >= 3


def test_config_resetstat_clears_stats_and_commandstats(r):
    r.get("a")
    with pytest.raises(redis.ResponseError):
        r.execute_command("GET")
    assert r.config_resetstat() is True
    info = r.info("everything")
    assert "cmdstat_get" not in info
    assert "errorstat_ERR" not in info
    assert info["keyspace_misses"] == 0
    assert info["total_error_replies"] == 0


# -- CONFIG ---------------------------------------------------------------------------------
CONFIG_CASES = [
    ["CONFIG", "GET", "maxmemory"],
    ["CONFIG", "GET", "nosuch"],
    ["CONFIG", "SET", "maxmemory"],
    ["CONFIG", "SET", "maxmemory", "1"],
    ["CONFIG", "SET", "maxmemory", "1", "hz"],
    ["CONFIG", "SET", "nosuch", "1"],
    ["CONFIG", "SET", "maxmemory", "abc"],
    ["CONFIG", "SET", "hz", "abc"],
    ["CONFIG", "SET", "maxmemory", "10", "maxmemory", "20"],
    ["CONFIG", "SET", "appendonly", "maybe"],
    ["CONFIG", "SET", "daemonize", "yes"],
    ["CONFIG", "SET", "port", "1", "nosuch", "2"],
    ["CONFIG", "SET", "maxmemory", "0", "hz", "10"],
    ["CONFIG", "RESETSTAT", "x"],
    ["CONFIG", "REWRITE"],
    ["CONFIG", "HELP"],
    ["CONFIG"],
    ["CONFIG", "FOO"],
]


@pytest.mark.parametrize("args", CONFIG_CASES, ids=lambda a: " ".join(a))
def test_config_replies_match_redis(raw_pair, args):
    ours, theirs = raw_pair
    assert ours.call(*args) == theirs.call(*args)


def test_config_get_many_patterns(r):
    got = r.execute_command("CONFIG", "GET", "maxmemory*", "hz", "maxmemory")
    assert set(got) == {b"maxmemory", b"maxmemory-policy", b"maxmemory-samples", b"hz"}
    assert got[b"hz"] == b"10"


def test_config_set_is_atomic(r, restore_config):
    with pytest.raises(redis.ResponseError, match="argument 'maxmemory-policy'"):
        r.execute_command("CONFIG", "SET", "slowlog-max-len", "7", "maxmemory-policy", "bogus")
    assert r.config_get("slowlog-max-len") == {"slowlog-max-len": "128"}


def test_config_set_maxmemory_takes_effect(r, restore_config):
    r.set("filler", "x" * 100_000)
    r.config_set("maxmemory", "1000")
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        r.set("more", "y")
    r.config_set("maxmemory", "0")
    assert r.set("more", "y")


def test_config_rewrite_round_trip(tmp_path):
    conf = tmp_path / "predis.conf"
    conf.write_text("# my settings\nhz 12\nmaxmemory 1mb\n")
    with predis_process(conf=str(conf)) as server:
        client = redis.Redis(port=server.port, decode_responses=True)
        assert client.config_get("hz") == {"hz": "12"}
        client.config_set("maxmemory", "2mb")
        client.config_set("maxmemory-policy", "allkeys-lru")
        assert client.config_rewrite() in (True, "OK")
        client.close()
    text = conf.read_text()
    assert text.startswith("# my settings\nhz 12\nmaxmemory 2097152\n")
    assert "maxmemory-policy allkeys-lru" in text
    with predis_process(conf=str(conf)) as server:
        client = redis.Redis(port=server.port, decode_responses=True)
        assert client.config_get("maxmemory*")["maxmemory"] == "2097152"
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
        client.close()


# -- COMMAND --------------------------------------------------------------------------------
def _rows():
    for cmd in COMMANDS.values():
        yield cmd.full_name
        for sub in cmd.subcommands.values():
            yield sub.full_name


@pytest.fixture(scope="module")
def redis_command_table(redis_server):
    conn = RawConnection(redis_server.port)
    rows = {}
    for entry in parse(conn.call("COMMAND")):
        rows[entry[0].decode()] = entry
        for sub in entry[9]:
            rows[sub[0].decode()] = sub
    conn.close()
    return rows


@pytest.mark.parametrize("name", sorted(_rows()))
def test_command_info_matches_redis(predis_server, redis_command_table, name):
    theirs = redis_command_table.get(name)
    if theirs is None:
        pytest.skip(f"{name} is not a Redis 7.0 command")
    conn = RawConnection(predis_server.port)
    ours = parse(conn.call("COMMAND", "INFO", name))[0]
    conn.close()
    assert ours[0].decode() == name
    assert ours[1] == theirs[1], "arity"
    assert set(ours[2]) == set(theirs[2]), "flags"
    assert ours[3:6] == theirs[3:6], "first/last/step"
    assert set(ours[6]) == set(theirs[6]), "ACL categories"
    assert sorted(ours[7]) == sorted(theirs[7]), "tips"
    assert ours[8] == theirs[8], "key specs"


def test_command_info_bytes_match_redis_for_server_commands(raw_pair):
    ours, theirs = raw_pair
    for name in ("get", "set", "mset", "info", "time", "dbsize", "config|get", "object|encoding",
                 "memory|usage", "shutdown", "nosuch"):
        assert ours.call("COMMAND", "INFO", name) == theirs.call("COMMAND", "INFO", name), name


COMMAND_CASES = [
    ["COMMAND", "GETKEYS", "mset", "a", "b", "c", "d"],
    ["COMMAND", "GETKEYSANDFLAGS", "mset", "a", "b", "c", "d"],
    ["COMMAND", "GETKEYS", "mset", "a", "b", "c"],
    ["COMMAND", "GETKEYS", "get", "a", "b"],
    ["COMMAND", "GETKEYS", "get"],
    ["COMMAND", "GETKEYS", "nosuch", "a"],
    ["COMMAND", "GETKEYS", "config", "get", "x"],
    ["COMMAND", "GETKEYS", "object", "encoding", "k"],
    ["COMMAND", "GETKEYS", "memory", "usage", "k"],
    ["COMMAND", "LIST", "FILTERBY", "FOO", "bar"],
    ["COMMAND", "LIST", "FILTERBY"],
    ["COMMAND", "LIST", "FILTERBY", "MODULE", "foo"],
    ["COMMAND", "LIST", "FILTERBY", "ACLCAT", "nosuchcat"],
    ["COMMAND", "COUNT", "x"],
    ["COMMAND", "DOCS", "nosuch"],
    ["COMMAND", "FOO"],
    ["COMMAND", "HELP"],
]


@pytest.mark.parametrize("args", COMMAND_CASES, ids=lambda a: " ".join(a))
def test_command_subcommands_match_redis(raw_pair, args):
    ours, theirs = raw_pair
    assert ours.call(*args) == theirs.call(*args)


def test_command_list_count_and_filters(predis_server):
    conn = RawConnection(predis_server.port)

    def names(*args):
        return {n.decode() for n in parse(conn.call("COMMAND", "LIST", *args))}

    assert {"get", "config", "config|get", "command|docs"} <= names()
    assert parse(conn.call("COMMAND", "COUNT")) == len(COMMANDS) == len(parse(conn.call("COMMAND")))
    assert names("FILTERBY", "PATTERN", "config*") == {
        "config", "config|get", "config|set", "config|resetstat", "config|rewrite", "config|help"}
    connection = names("FILTERBY", "ACLCAT", "connection")
    assert {"ping", "echo", "command", "command|docs"} <= connection and "get" not in connection
    conn.close()


def test_command_docs_are_redis_docs(predis_server):
    conn = RawConnection(predis_server.port)
    conn.call("HELLO", "3")
    raw = conn.call("COMMAND", "DOCS", "set", "config")
    conn.close()
    assert raw.startswith(b"%2\r\n")  # a RESP3 map of command name -> doc map
    docs = parse(raw)
    doc = docs[b"set"]
    assert doc[b"summary"] == b"Set the string value of a key"
    assert doc[b"group"] == b"string"
    assert [arg[b"name"] for arg in doc[b"arguments"]][:2] == [b"key", b"value"]
    assert {b"config|get", b"config|set"} <= set(docs[b"config"][b"subcommands"])


# -- SLOWLOG and LATENCY --------------------------------------------------------------------
def test_slowlog_records_everything_at_threshold_zero(r, restore_config):
    r.slowlog_reset()
    r.config_set("slowlog-log-slower-than", "0")
    r.set("slow", "value")
    r.config_set("slowlog-log-slower-than", "-1")
    entries = r.slowlog_get(10)
    commands = [e["command"] for e in entries]
    assert b"SET slow value" in commands
    assert entries[0]["id"] > entries[-1]["id"]
    entry = next(e for e in entries if e["command"] == b"SET slow value")
    assert entry["duration"] >= 0 and abs(entry["start_time"] - time.time()) < 60
    assert r.slowlog_len() == len(entries)
    assert r.slowlog_reset() is True and r.slowlog_len() == 0


SLOWLOG_CASES = [["SLOWLOG", "GET", "-2"], ["SLOWLOG", "GET", "abc"], ["SLOWLOG", "HELP"],
                 ["SLOWLOG", "FOO"], ["SLOWLOG", "GET", "0"], ["LATENCY", "HELP"],
                 ["LATENCY", "HISTORY", "nosuch"], ["LATENCY", "GRAPH", "nosuch"], ["ROLE"],
                 ["OBJECT", "HELP"], ["MEMORY", "HELP"], ["TIME", "x"], ["SHUTDOWN", "FOO"],
                 ["SHUTDOWN", "NOSAVE", "SAVE"], ["SHUTDOWN", "ABORT"], ["SAVE", "x"]]


@pytest.mark.parametrize("args", SLOWLOG_CASES, ids=lambda a: " ".join(a))
def test_diagnostics_replies_match_redis(raw_pair, args):
    ours, theirs = raw_pair
    assert ours.call(*args) == theirs.call(*args)


def test_latency_monitor_records_slow_commands(r, restore_config):
    r.execute_command("LATENCY", "RESET")
    r.config_set("latency-monitor-threshold", "5")
    r.execute_command("DEBUG", "SLEEP", "0.02")
    latest = r.execute_command("LATENCY", "LATEST")
    assert latest[0][0] == b"command" and latest[0][2] >= 20 and latest[0][3] >= 20
    history = r.execute_command("LATENCY", "HISTORY", "command")
    assert history and history[-1][1] >= 20
    assert r.execute_command("LATENCY", "RESET", "command") == 1
    assert r.execute_command("LATENCY", "LATEST") == []


def test_time_is_now(r):
    seconds, micros = r.time()
    assert abs(seconds + micros / 1e6 - time.time()) < 5


# -- MEMORY, OBJECT, DEBUG ------------------------------------------------------------------
VALUES = {"int": "12345", "small": "7", "embstr": "hello", "edge44": "x" * 44,
          "raw": "x" * 90, "big": "y" * 5000, "k" * 40: "v", "longint": "123456789012345678901"}


def test_memory_usage_and_object_encoding_match_redis(debug_pair):
    ours, theirs = debug_pair
    for key, value in VALUES.items():
        for conn in (ours, theirs):
            conn.call("SET", key, value)
    for key in [*VALUES, "missing"]:
        for args in (["MEMORY", "USAGE", key], ["OBJECT", "ENCODING", key],
                     ["OBJECT", "REFCOUNT", key], ["MEMORY", "USAGE", key, "SAMPLES", "0"]):
            assert ours.call(*args) == theirs.call(*args), args
    fields = [x for i in range(600) for x in (f"f{i}", f"v{i}")]
    for conn in (ours, theirs):
        conn.call("HSET", "small-hash", "f", "v", "g", "12")
        conn.call("HSET", "wide-hash", *fields)
        conn.call("HSET", "long-value-hash", "f", "v" * 65)
    for args in (["OBJECT", "ENCODING", "small-hash"], ["OBJECT", "ENCODING", "wide-hash"],
                 ["OBJECT", "ENCODING", "long-value-hash"], ["MEMORY", "USAGE", "small-hash"]):
        assert ours.call(*args) == theirs.call(*args), args
    for args in (["MEMORY", "USAGE", "int", "SAMPLES", "-1"], ["MEMORY", "USAGE", "int", "FOO"],
                 ["MEMORY", "USAGE", "int", "SAMPLES", "x"], ["OBJECT", "ENCODING"],
                 ["OBJECT", "FREQ", "int"], ["OBJECT", "IDLETIME", "int"], ["OBJECT", "FOO"]):
        assert ours.call(*args) == theirs.call(*args), args


def test_object_freq_and_idletime_follow_the_policy(debug_pair, restore_config):
    ours, theirs = debug_pair
    for conn in (ours, theirs):
        conn.call("SET", "k", "v")
        conn.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lfu")
    try:
        assert ours.call("OBJECT", "IDLETIME", "k") == theirs.call("OBJECT", "IDLETIME", "k")
        assert ours.call("OBJECT", "FREQ", "missing") == theirs.call("OBJECT", "FREQ", "missing")
        assert ours.call("OBJECT", "FREQ", "k").startswith(b":")
    finally:
        for conn in (ours, theirs):
            conn.call("CONFIG", "SET", "maxmemory-policy", "noeviction")


def test_debug_object_and_errors_match_redis(debug_pair):
    ours, theirs = debug_pair
    for conn in (ours, theirs):
        conn.call("SET", "n", "12345")
        conn.call("SET", "s", "hello")

    def fields(reply: bytes) -> dict[str, str]:
        return dict(part.split(":", 1) for part in reply.decode()[1:-2].split(" ")[1:])

    for key in ("n", "s"):
        a, b = fields(ours.call("DEBUG", "OBJECT", key)), fields(theirs.call("DEBUG", "OBJECT", key))
        assert a.keys() == b.keys() and a["encoding"] == b["encoding"]
        assert a["refcount"] == b["refcount"] and a["serializedlength"] == b["serializedlength"]
    for args in (["DEBUG", "OBJECT", "missing"], ["DEBUG", "SLEEP", "0"], ["DEBUG", "FOO"],
                 ["DEBUG", "SET-ACTIVE-EXPIRE"], ["DEBUG"]):
        assert ours.call(*args) == theirs.call(*args), args


def test_debug_set_active_expire_stops_the_sweeper(r):
    r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    try:
        r.set("soon", "1", px=20)
        time.sleep(0.4)  # several cron cycles at hz 10
        assert r.info("keyspace").get("db0", {}).get("keys") == 1  # not swept, only expired lazily
        assert r.get("soon") is None
    finally:
        r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1")
    r.set("soon", "1", px=20)
    time.sleep(0.5)
    assert "db0" not in r.info("keyspace")


def test_memory_stats_and_doctor(r):
    r.set("a", "b")
    stats = r.memory_stats()
    assert stats["keys.count"] == 1 and stats["total.allocated"] > 0 and "db.0" in stats
    assert r.execute_command("MEMORY", "DOCTOR").startswith(b"Hi Sam")


def test_save_is_refused_honestly(r):
    with pytest.raises(redis.ResponseError, match="does not persist"):
        r.save()
    assert r.lastsave().timestamp() <= time.time()


def test_client_no_touch_leaves_lfu_counters_alone(predis_server):
    """CLIENT NO-TOUCH ON (Redis 7.2): reads by that client do not bump LRU/LFU; TOUCH still does."""
    conn = RawConnection(predis_server.port)
    policy = parse(conn.call("CONFIG", "GET", "maxmemory-policy"))[1]
    factor = parse(conn.call("CONFIG", "GET", "lfu-log-factor"))[1]
    try:
        # log factor 0: every access bumps the counter, so the test is deterministic
        assert conn.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lfu", "lfu-log-factor", "0") == b"+OK\r\n"
        conn.call("SET", "nt:key", "v")
        start = int(parse(conn.call("OBJECT", "FREQ", "nt:key")))
        assert conn.call("CLIENT", "NO-TOUCH", "ON") == b"+OK\r\n"
        conn.send(b"".join(b"*2\r\n$3\r\nGET\r\n$6\r\nnt:key\r\n" for _ in range(20)))
        for _ in range(20):
            assert conn.read_reply() == b"$1\r\nv\r\n"
        assert int(parse(conn.call("OBJECT", "FREQ", "nt:key"))) == start
        assert conn.call("TOUCH", "nt:key") == b":1\r\n"
        touched = int(parse(conn.call("OBJECT", "FREQ", "nt:key")))
        assert touched == start + 1
        assert conn.call("CLIENT", "NO-TOUCH", "OFF") == b"+OK\r\n"
        for _ in range(5):
            conn.call("GET", "nt:key")
        assert int(parse(conn.call("OBJECT", "FREQ", "nt:key"))) == touched + 5
    finally:
        conn.call("CONFIG", "SET", "maxmemory-policy", policy, "lfu-log-factor", factor)
        conn.call("DEL", "nt:key")
        conn.close()


def test_errorstats_are_listed_in_byte_order_like_redis(raw_pair):
    """Redis keeps error stats in a radix tree: INFO errorstats lists prefixes sorted."""
    for conn in raw_pair:
        conn.call("CONFIG", "RESETSTAT")
        conn.call("SET", "es:k", "v")
        conn.call("HGET", "es:k", "f")            # WRONGTYPE
        conn.call("NOSUCHCOMMAND")                 # ERR
        conn.call("EXEC")                          # ERR (EXEC without MULTI)
    ours, theirs = (conn.call("INFO", "errorstats") for conn in raw_pair)
    def lines(raw):
        return [line for line in raw.split(b"\r\n") if line.startswith(b"errorstat_")]
    assert lines(ours) == lines(theirs)
    for conn in raw_pair:
        conn.call("DEL", "es:k")
