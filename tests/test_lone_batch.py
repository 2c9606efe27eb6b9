"""Lone commands of many connections in one tick (predis_server/lone_batch.py) against the
normal path: each connection's reply bytes, the values, TTLs and idle times, and the
counters must be what one-by-one execution gives (the C extension switched off)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import gpu
from predis_server import fastpath, lone_batch, pipeline
from predis_server.config import Config
from predis_server.protocol import parser
from tests.inprocess import connect, in_process_server
from tests.resp import encode_command

START_MS = 1_700_000_000_000
CONNECTIONS = 6
KEYS = [b"a", b"b", b"n", b"h", b"key:000000000001"]
VALUES = st.one_of(st.sampled_from([b"", b"1", b"-1", b"9223372036854775807", b"x" * 300, b"3.5"]),
                   st.binary(max_size=20))
COMMAND = st.one_of(
    st.tuples(st.just("GET"), st.sampled_from(KEYS)),
    st.tuples(st.just("SET"), st.sampled_from(KEYS), VALUES),
    st.tuples(st.just("INCR"), st.sampled_from(KEYS)),
    st.tuples(st.just("MGET"), st.sampled_from(KEYS), st.sampled_from(KEYS)),
    st.tuples(st.just("SET"), st.sampled_from(KEYS), VALUES, st.just("PX"), st.integers(1, 30)),
    st.tuples(st.just("HSET"), st.sampled_from(KEYS), st.just("f"), st.just("v")),
    st.tuples(st.just("GET"), st.sampled_from(KEYS), st.just("extra")),  # wrong arity
    st.tuples(st.just("DEL"), st.sampled_from(KEYS)),
)
# a tick: some connections each send one command (a connection may send twice); the clock
# moves between ticks, expiring PX keys
TICKS = st.lists(st.tuples(st.lists(st.tuples(st.integers(0, CONNECTIONS - 1), COMMAND), min_size=1, max_size=12),
                           st.integers(0, 20)), min_size=1, max_size=10)


class Server:
    def __init__(self, backend: str, collector: bool = False) -> None:
        config = Config()
        config.store_backend = backend
        if collector:
            config.collector_sampling = 1.0
        self.server = in_process_server(config)
        if collector:  # what start() does: the collector and the access hook
            self.server.prediction._reconfigure()
        self.now = START_MS
        self.server.keyspace.source_clock = lambda: self.now
        self.table = self.server.executor.table
        self.counted = self._counts()
        self.conns = [connect(self.server) for _ in range(CONNECTIONS)]
        # connection 1 speaks RESP3, connection 2 uses database 1, connection 3 is in MULTI
        for index, setup in ((1, [("HELLO", "3")]), (2, [("SELECT", "1")]), (3, [("MULTI",)])):
            self.tick([(index, command) for command in setup])
        if collector:  # connection 5 is another ACL user (another tenant id), who may run anything
            self.tick([(0, ("ACL", "SETUSER", "alice", "on", ">pw", "~*", "&*", "+@all"))])
            self.tick([(5, ("AUTH", "alice", "pw"))])
        self.replies = [b""] * CONNECTIONS
        # bytes written after the set-up (HELLO's reply holds the client id, which differs)
        self.bytes_before = self.server.stats.total_net_output_bytes

    def _counts(self) -> dict:
        return {name: (self.table[name].calls, self.table[name].failed_calls)
                for name in (b"get", b"set", b"incr", b"mget")}

    def tick(self, commands: list[tuple[int, tuple]]) -> list[bytes]:
        for index, command in commands:
            self.conns[index][0].data_received(encode_command(*command))
        self.server.run_batch()
        return [transport.take() for _, transport in self.conns]

    def events(self) -> dict:
        """The collector's ring, every column but the time (the Python path's is the batch's);
        tenants by name (ids are given in order of first use, which may differ between paths)."""
        self.server.access_hook.flush()
        collector = self.server.prediction.collector
        events = {name: collector.arrays[name][:collector.written].tolist() for name in collector.arrays
                  if name != "ts"}
        events["tenant"] = [self.server.mlops.tenants.names[tenant] for tenant in events["tenant"]]
        return events

    def state(self) -> dict:
        found = {}
        for db in self.server.keyspace.dbs[:2]:
            store = db.store
            if hasattr(store, "sync"):
                store.sync()
            for key in KEYS:
                value = store.get(key, self.now, touch=False)
                if value is not None:
                    found[(db.id, key)] = (value if type(value) is bytes else sorted(value.items()),
                                           store.get_expire(key), store.idle_ms(key, self.now))
        counts = self._counts()
        stats = self.server.stats
        return {"keys": found, "hits": stats.keyspace_hits, "misses": stats.keyspace_misses,
                "processed": stats.total_commands_processed, "errors": dict(stats.errorstats),
                "error_replies": stats.total_error_replies, "bytes_out": stats.total_net_output_bytes - self.bytes_before,
                "commands": {k: (v[0] - self.counted[k][0], v[1] - self.counted[k][1]) for k, v in counts.items()},
                "last": [conn.client.last_command for conn, _ in self.conns]}


def _play(ticks, backend: str, collector: bool = False) -> tuple[list, dict]:
    server = Server(backend, collector)
    replies = []
    for commands, advance in ticks:
        replies.append(server.tick(commands))
        server.now += advance
    return replies, server.state(), server.events() if collector else None


def _switch_c_off(monkeypatch) -> None:
    """The normal path: no C extension anywhere (until monkeypatch.undo)."""
    for module, name in ((pipeline, "native"), (fastpath, "native"), (parser, "net"),
                         (lone_batch, "native"), (lone_batch, "net")):
        monkeypatch.setattr(module, name, None)


@pytest.mark.skipif(fastpath.native is None, reason="the C extension was not built")
@pytest.mark.parametrize("backend", ["cpu", "arena", pytest.param("gpu", marks=pytest.mark.gpu)])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ticks=TICKS)
@example(ticks=[([(0, ("HSET", "h", "f", "v"))], 0),  # WRONGTYPE from C: failed calls, errorstats
                ([(0, ("GET", "h")), (4, ("GET", "h")), (5, ("GET", "a"))], 0)])
def test_lone_commands_of_a_tick_match_the_normal_path(monkeypatch, backend, ticks):
    monkeypatch.setitem(gpu.BACKENDS, "arena", "gpu.cuda:ArenaStore")
    batched = _play(ticks, backend)
    _switch_c_off(monkeypatch)
    plain = _play(ticks, backend)
    monkeypatch.undo()
    assert batched == plain


@pytest.mark.skipif(fastpath.native is None, reason="the C extension was not built")
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ticks=TICKS)
def test_lone_commands_record_the_python_paths_events(monkeypatch, ticks):
    """With the collector at 100% (recording is all the access hook does) lone commands still
    run as one C batch, which writes their GET/MGET events into the ring: the same events,
    in the same order, with each connection's tenant, as the normal path records."""
    batched = _play(ticks, "cpu", collector=True)
    _switch_c_off(monkeypatch)
    plain = _play(ticks, "cpu", collector=True)
    monkeypatch.undo()
    assert batched == plain


def _spy_on_batches(monkeypatch) -> list[tuple[int, object]]:
    """(commands, sink) of each native.run call lone_batch.py makes from now on."""
    calls = []
    real = fastpath.native.run

    class Spying:
        def __getattr__(self, name):
            return getattr(fastpath.native, name)

        @staticmethod
        def run(*args):
            calls.append((args[2] - args[1], args[9]))
            return real(*args)

    monkeypatch.setattr(lone_batch, "native", Spying())
    return calls


@pytest.mark.skipif(fastpath.native is None, reason="the C extension was not built")
def test_a_tick_of_lone_commands_is_one_c_call(monkeypatch):
    """The batch really happens: many connections' GETs, SETs and INCRs in one native.run."""
    calls = _spy_on_batches(monkeypatch)
    server = Server("cpu")
    # connection 1 speaks RESP3: the batch (in arrival order) ends before it
    replies = server.tick([(i, ("SET", b"k%d" % i, b"v")) for i in (0, 4, 5, 1)])
    assert replies == [b"+OK\r\n", b"+OK\r\n", b"", b"", b"+OK\r\n", b"+OK\r\n"] and calls == [(3, None)]
    calls.clear()
    replies = server.tick([(0, ("GET", b"k0")), (4, ("INCR", b"n")), (5, ("GET", b"nope")), (1, ("GET", b"k1"))])
    assert replies == [b"$1\r\nv\r\n", b"$1\r\nv\r\n", b"", b"", b":1\r\n", b"$-1\r\n"] and calls == [(3, None)]
    calls.clear()
    server.tick([(0, ("GET", b"k0")), (4, ("GET", b"k4"))])  # a connection in MULTI ends nothing
    assert calls == [(2, None)]


@pytest.mark.skipif(fastpath.native is None, reason="the C extension was not built")
def test_a_recording_tick_of_lone_commands_is_one_c_call_per_user(monkeypatch):
    """With the collector recording, a tick's lone GETs and MGETs are still one C call, with
    the collector's ring as its sink; a batch keeps to one ACL user (connection 5 is alice),
    so alice's command ends it (and goes the normal way, with her tenant)."""
    sinks = _spy_on_batches(monkeypatch)
    server = Server("cpu", collector=True)
    collector = server.server.prediction.collector
    server.tick([(i, ("SET", b"k%d" % i, b"v" * i)) for i in (0, 4, 5)])
    sinks.clear()
    server.tick([(0, ("GET", b"k0")), (4, ("MGET", b"k4", b"nope")), (5, ("GET", b"k5"))])
    ring = collector.native_ring()
    assert sinks == [(2, ring)]  # alice's GET: the normal path
    sinks.clear()
    server.tick([(4, ("GET", b"k4")), (0, ("GET", b"k0")), (5, ("GET", b"k5"))])
    assert sinks == [(2, ring)]
    events = server.events()
    assert events["size"] == [0, 4, 0, 5, 4, 0, 5] and events["op"] == [0, 1, 1, 0, 0, 0, 0]
    assert events["tenant"] == ["default"] * 3 + ["alice"] + ["default"] * 2 + ["alice"]
    # default the only user again (alice's connection closed): the batch takes every connection
    server.tick([(0, ("ACL", "DELUSER", "alice"))])
    sinks.clear()
    server.tick([(4, ("GET", b"k4")), (0, ("GET", b"k0")), (1, ("GET", b"k1"))])  # 1 speaks RESP3
    server.tick([(4, ("GET", b"k4")), (0, ("GET", b"k0"))])
    assert sinks == [(2, ring), (2, ring)]
    assert server.events()["tenant"][7:] == ["default"] * 5
