"""The C fast path (predis_server/_fastpath.c) against the Python path it stands in for.

The same pipelines go to two in-process servers, one with the extension and one without
(``native = None``, as on a machine with no C compiler); every reply byte, every value, TTL and
idle time, and the hit/miss and command counters must be equal. The real-socket tests against
redis-server (test_pipeline_runs.py, test_differential.py) run with whatever was built.
"""
from __future__ import annotations

import os
import shutil
import sysconfig

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpu
from predis_server import fastpath, lone_batch, pipeline
from predis_server.config import Config
from predis_server.protocol import parser
from tests.inprocess import connect, in_process_server
from tests.resp import encode_command

START_MS = 1_700_000_000_000


class InProcess:
    """A server without sockets: the real parser, batch loop, executor and store."""

    def __init__(self, backend: str = "cpu", collector: bool = False, prefetch: bool = False) -> None:
        config = Config()
        config.store_backend = backend
        if collector:
            config.collector_sampling = 1.0
        if prefetch:
            config.prefetch_enabled = True
            config.collector_sampling = 1.0 if collector else 0.0
        self.server = in_process_server(config)
        if collector or prefetch:
            self.server.prediction._reconfigure()  # what start() does: collector, prefetcher, hook
        self.now = START_MS
        self.server.keyspace.source_clock = lambda: self.now
        # the command table's counters are shared by every server in this process: deltas
        self.counted = self._command_counts()
        self.conn, self.transport = connect(self.server)

    def pipeline(self, commands: list[tuple]) -> bytes:
        self.conn.data_received(b"".join(encode_command(*c) for c in commands))
        self.server.run_batch()
        return self.transport.take()

    def _command_counts(self) -> dict:
        table = self.server.executor.table
        return {name: (table[name].calls, table[name].failed_calls) for name in (b"get", b"set", b"incr", b"mget")}

    def state(self, keys) -> dict:
        store = self.server.keyspace.dbs[0].store
        stats = self.server.stats
        found = {}
        device = hasattr(store, "sync")
        if device:
            store.sync()  # what the C path marked must reach the device copy
        strings = []
        for key in keys:
            value = store.get(key, self.now, touch=False)
            if value is not None:
                slot = store._index[key]
                found[key] = (value if type(value) is bytes else sorted(value.items()),
                              store.get_expire(key), store.idle_ms(key, self.now),
                              # where it lives and its new-key fields: insert_new places it as set() does
                              slot, int(store.value_loc[slot]), int(store.lfu_count[slot]),
                              int(store.lfu_time[slot]), bool(store.live[slot]))
                if device:  # where its key is packed: insert_new packs it as set() does
                    found[key] += (int(store.key_loc[slot]), int(store.key_len[slot]))
                    if type(value) is bytes:
                        strings.append((key, value))
        if strings:  # the device's index and mirror give the host's values (no access touched)
            xp = store.xp
            packed = b"".join(k for k, _ in strings)
            lens = np.array([len(k) for k, _ in strings], dtype=np.int64)
            offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
            d_slots = store.lookup_packed(xp.asarray(np.frombuffer(packed, dtype=np.uint8)), xp.asarray(offs),
                                          xp.asarray(lens))
            buf, at = (store._to_host(a) for a in store.gather_device(d_slots))
            at = at.tolist() + [buf.size]
            assert [buf[at[i]: at[i + 1]].tobytes() for i in range(len(strings))] == [v for _, v in strings]
        now = self._command_counts()
        commands = {name: (now[name][0] - self.counted[name][0], now[name][1] - self.counted[name][1])
                    for name in now}
        slabs = store._slabs
        if slabs is not None:  # the running count of free-list entries used_memory() reads
            assert slabs.state[3] == sum(len(f) for f in slabs.free.values())
        layout = {"free_slots": list(store._free), "slots": len(store._keys),
                  "slabs": slabs and (slabs.state.tolist(), {c: list(f) for c, f in slabs.free.items() if f})}
        if device:
            layout["mirror"] = (store.mirror.capacity, store.arena.top, store.arena.live_bytes)
        return {"keys": found, "hits": stats.keyspace_hits, "misses": stats.keyspace_misses,
                "commands": commands, "used_memory": store.used_memory(), "layout": layout}


def _switch_c_off(monkeypatch) -> None:
    """The Python path: no C extension anywhere (until monkeypatch.undo)."""
    for module, name in ((pipeline, "native"), (fastpath, "native"), (parser, "net"),
                         (lone_batch, "native"), (lone_batch, "net")):
        monkeypatch.setattr(module, name, None)


def _both(monkeypatch, run, backend: str = "cpu", collector: bool = False, prefetch: bool = False):
    """run(InProcess) with the C path, then without it; both results. Backend "arena" is
    the GPU store's layout over NumPy (gpu/cuda.py ArenaStore); "gpu" the same on CUDA.
    Both check that what the C path marked reaches the device copy."""
    monkeypatch.setitem(gpu.BACKENDS, "arena", "gpu.cuda:ArenaStore")
    with_native = run(InProcess(backend, collector, prefetch))
    _switch_c_off(monkeypatch)
    without = run(InProcess(backend, collector, prefetch))
    monkeypatch.undo()
    return with_native, without


needs_native = pytest.mark.skipif(fastpath.native is None, reason="the C extension was not built")

KEYS = [b"a", b"b", b"n", b"h", b"user:1001", b"12345678901234567890123"]  # suffixes: key codes
VALUES = st.one_of(
    st.sampled_from([b"", b"0", b"1", b"-1", b"9", b"99", b"999", b"-0", b"007", b"+1", b" 1",
                     b"9223372036854775806", b"9223372036854775807", b"-9223372036854775808",
                     b"x" * 1024, b"y" * 1025, b"3.5"]),
    st.binary(max_size=40),
    st.integers(-10**6, 10**6).map(lambda n: b"%d" % n),
)
COMMAND = st.one_of(
    st.tuples(st.just("GET"), st.sampled_from(KEYS)),
    st.tuples(st.just("SET"), st.sampled_from(KEYS), VALUES),
    st.tuples(st.just("INCR"), st.sampled_from(KEYS)),
    st.tuples(st.just("MGET"), st.sampled_from(KEYS), st.sampled_from(KEYS), st.sampled_from(KEYS)),
    st.tuples(st.just("SET"), st.sampled_from(KEYS), VALUES, st.just("PX"), st.integers(1, 30)),
    st.tuples(st.just("HSET"), st.sampled_from(KEYS), st.just("f"), st.just("v")),
    st.tuples(st.just("DEL"), st.sampled_from(KEYS)),
)
# a batch is one pipeline; between batches the clock moves (expiring some PX keys)
BATCHES = st.lists(st.tuples(st.lists(COMMAND, min_size=1, max_size=24), st.integers(0, 20)),
                   min_size=1, max_size=8)


@needs_native
@pytest.mark.parametrize("backend", ["cpu", "arena", pytest.param("gpu", marks=pytest.mark.gpu)])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=BATCHES)
def test_native_and_python_paths_agree(monkeypatch, backend, batches):
    def run(server: InProcess):
        replies = []
        for commands, advance_ms in batches:
            replies.append(server.pipeline(commands))
            server.now += advance_ms
        return replies, server.state(KEYS)

    with_native, without = _both(monkeypatch, run, backend)
    assert with_native[0] == without[0]
    assert with_native[1] == without[1]


@needs_native
def test_large_mgets_agree(monkeypatch):
    """MGETs of thousands of keys (slot arrays on the heap, the reply buffer grown as it fills),
    lone and pipelined, with a big value among them."""
    keys = [f"big{i}" for i in range(5000)]

    def run(server: InProcess):
        server.pipeline([("SET", key, "x" * (i % 50)) for i, key in enumerate(keys[::3])] + [("SET", "huge", "h" * 300_000)])
        lone = server.pipeline([("MGET", *keys, "huge")])
        piped = server.pipeline([("MGET", *keys[:2500]), ("MGET", "huge", *keys[2500:])])
        return lone, piped, server.state([b"huge", b"big0"])

    with_native, without = _both(monkeypatch, run)
    assert with_native == without
    assert with_native[0].startswith(b"*5001\r\n") and with_native[0].count(b"$-1\r\n") == 5000 - len(keys[::3])


@needs_native
def test_runs_take_the_c_path(monkeypatch):
    """The pipelines the benchmark sends are executed by the extension, not just allowed to."""
    calls = []
    real_run = fastpath.native.run

    def counting_run(*args):
        result = real_run(*args)
        calls.append(result[0])
        return result

    server = InProcess()
    # (the first pipeline also teaches FastRuns these command names, which it learns lazily)
    server.pipeline([("SET", b"k%d" % i, b"v" * 100) for i in range(16)] + [("SET", b"c", b"0"),
                                                                            ("GET", b"c"), ("INCR", b"d")])
    monkeypatch.setattr(pipeline, "native", type("Native", (), {
        "run": staticmethod(counting_run), **{n: getattr(fastpath.native, n)
                                              for n in ("OPT_TOUCH", "OPT_WRITES", "OPT_STOP_AT_MISS")}}))
    reply = server.pipeline([("GET", b"k%d" % i) for i in range(16)] + [("SET", b"k1", b"w" * 100)]
                            + [("INCR", b"c")] * 4)
    assert reply.count(b"$100\r\n") == 16 and reply.endswith(b"+OK\r\n:1\r\n:2\r\n:3\r\n:4\r\n")
    assert calls == [21]
    assert server.pipeline([("GET", b"k1")] * 2) == b"$100\r\n" + b"w" * 100 + b"\r\n" + b"$100\r\n" + b"w" * 100 + b"\r\n"


@needs_native
def test_mget_reply_resp2_and_resp3(monkeypatch):
    def run(server: InProcess):
        server.pipeline([("SET", "a", "1"), ("SET", "big", "z" * 3000), ("HSET", "h", "f", "v")])
        two = server.pipeline([("MGET", "a", "none", "big", "h", "a")])
        server.pipeline([("HELLO", "3")])
        three = server.pipeline([("MGET", "a", "none", "h")])
        server.pipeline([("SET", "t", "v", "PX", "5")])
        server.now += 10  # "t" has expired: the Python path deletes it
        expired = server.pipeline([("MGET", "a", "t")])
        return two, three, expired, server.state([b"a", b"big", b"h", b"t"])

    with_native, without = _both(monkeypatch, run)
    assert with_native == without
    assert with_native[0] == (b"*5\r\n$1\r\n1\r\n$-1\r\n$3000\r\n" + b"z" * 3000 + b"\r\n$-1\r\n$1\r\n1\r\n")
    assert with_native[1] == b"*3\r\n$1\r\n1\r\n_\r\n_\r\n"
    assert with_native[2] == b"*2\r\n$1\r\n1\r\n_\r\n"


def test_extensions_are_built_where_a_compiler_is():
    """setup.py marks the extensions optional; where a C compiler exists (CI) a failed build
    must not pass unnoticed as the slower Python path."""
    if os.environ.get("PREDIS_NATIVE", "yes").strip().lower() in ("0", "no", "off", "false"):
        pytest.skip("PREDIS_NATIVE turns the extension off")
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip("no C compiler: the Python path serves")
    assert fastpath.native is not None
    assert fastpath.net is not None


@needs_native
def test_c_path_writes_mark_pages_and_reach_the_device(monkeypatch):
    """The C path's in-place overwrites and new keys mark the region and slot pages they
    touch (no store call, no per-slot stage); one sync later the device holds every value."""
    from gpu.mirror import PAGE_SHIFT, SLOT_PAGE_SHIFT

    monkeypatch.setitem(gpu.BACKENDS, "arena", "gpu.cuda:ArenaStore")
    server = InProcess("arena")
    keys = [b"key:%05d" % i for i in range(3000)]  # three slot pages, many region pages
    server.pipeline([("SET", k, b"old-%05d" % i) for i, k in enumerate(keys)])
    store = server.server.keyspace.dbs[0].store
    store.sync()
    python_sets = []
    real_set = type(store).set
    monkeypatch.setattr(type(store), "set", lambda self, *a: (python_sets.append(a[0]), real_set(self, *a))[1])
    for start in range(0, 1500, 500):  # same-class overwrites of the first half: in place
        server.pipeline([("SET", k, b"new-%05d" % i) for i, k in enumerate(keys[start: start + 500], start)])
    assert python_sets == [] and store.staged_since
    mirror = store.mirror
    spans = [(int(store.value_loc[store._index[k]]) * 4, len(b"new-00000")) for k in keys[:1500]]
    pages = sorted({off >> PAGE_SHIFT for off, _ in spans} | {(off + n - 1) >> PAGE_SHIFT for off, n in spans})
    assert np.flatnonzero(mirror.region_dirty).tolist() == pages  # the values' pages, no key's alone
    assert not mirror.slot_dirty.any()  # same lengths: no slot array changed
    server.pipeline([("SET", keys[5], b"a-longer-value"), ("SET", b"fresh", b"v"), ("SET", b"counter", b"1")])
    assert python_sets == [keys[5]]  # another size class: set(); the new keys in C (slots 3000, 3001)
    assert np.flatnonzero(mirror.slot_dirty).tolist() == [5 >> SLOT_PAGE_SHIFT, 3000 >> SLOT_PAGE_SHIFT]
    state = server.state(keys + [b"fresh", b"counter"])  # syncs and checks the device copy of every value
    assert all(state["keys"][k][0] == b"new-%05d" % i for i, k in enumerate(keys[:1500]) if i != 5)
    assert not mirror.region_dirty.any() and not mirror.slot_dirty.any() and not store.staged_since


@needs_native
@pytest.mark.parametrize("backend", ["cpu", "arena", pytest.param("gpu", marks=pytest.mark.gpu)])
def test_new_keys_are_inserted_in_c(monkeypatch, backend):
    """New keys' SETs and INCRs stay in C (insert_new) once the store has its slabs: no call
    of the store's set(), the same replies, values, layout and (GPU store) reservation and
    stage as the Python path; a key inserted ahead of a later command in the same run is
    found by it (the look-ahead is updated), and a freed slot and slab block are reused."""
    batches = [
        [("SET", b"first", b"opens the slabs")],
        [("SET", b"new%d" % i, b"x" * (i % 40)) for i in range(30)]
        + [("SET", b"n", b"v"), ("GET", b"n"), ("INCR", b"c"), ("INCR", b"c"), ("GET", b"c"),
           ("MGET", b"n", b"new3"), ("SET", b"n", b"w")],
        [("DEL", b"new5")],
        [("SET", b"again", b"x" * 5), ("GET", b"again")],  # takes new5's slot and block
    ]

    def run(server: InProcess):
        store = server.server.keyspace.dbs[0].store
        sets = []
        real_set = type(store).set
        monkeypatch.setattr(type(store), "set", lambda self, *a, **k: (sets.append(a[0]), real_set(self, *a, **k))[1])
        replies = [server.pipeline(batch) for batch in batches]
        mirror = getattr(store, "mirror", None)  # what both paths marked for the device
        staged = {"region": np.flatnonzero(mirror.region_dirty).tolist(), "slots": np.flatnonzero(mirror.slot_dirty).tolist(),
                  "inserts": int(mirror.state[1])} if mirror else {}
        return replies, sets, staged, server.state([b"first", b"n", b"c", b"again", b"new5", b"new3"])

    monkeypatch.setitem(gpu.BACKENDS, "arena", "gpu.cuda:ArenaStore")
    with_native = run(InProcess(backend))
    assert with_native[1] == [b"first"]  # only the slabs' opening write went through set()
    assert with_native[0][1].endswith(b"+OK\r\n$1\r\nv\r\n:1\r\n:2\r\n$1\r\n2\r\n*2\r\n$1\r\nv\r\n$3\r\nxxx\r\n+OK\r\n")
    assert with_native[0][3] == b"+OK\r\n$5\r\nxxxxx\r\n"
    layout = with_native[3]
    assert layout["keys"][b"again"][3] == 6  # new5's slot (first is 0, new0.. from 1)
    _switch_c_off(monkeypatch)
    without = run(InProcess(backend))
    monkeypatch.undo()
    assert with_native[0] == without[0] and with_native[2:] == without[2:]


@needs_native
def test_c_path_new_key_without_device_room_gets_oom(monkeypatch):
    """insert_new packs a new key and value only below the slabs' LIMIT, the end of the
    region's mirrored part; past it the write goes to set(), which tries to grow the mirror:
    when the device has no memory the SET gets -OOM, the keys already stored stay, and later
    writes that fit work."""
    from gpu.slabs import TOP

    monkeypatch.setitem(gpu.BACKENDS, "arena", "gpu.cuda:ArenaStore")
    server = InProcess("arena")
    assert server.pipeline([("SET", b"kept", b"safe"), ("SET", b"other", b"x")]) == b"+OK\r\n" * 2
    store = server.server.keyspace.dbs[0].store
    store.sync()
    store._slabs.state[TOP] = store.mirror.capacity // 4 - 8  # the mirror is all but full ...
    monkeypatch.setattr(store.arena, "_allocate", lambda nbytes: (_ for _ in ()).throw(gpu.StoreFull("no room")))
    reply = server.pipeline([("SET", b"new", b"v" * 100), ("SET", b"kept", b"same"), ("GET", b"kept")])
    assert reply.startswith(b"-OOM ") and reply.endswith(b"+OK\r\n$4\r\nsame\r\n")
    assert store.get(b"new", START_MS) is None and len(store) == 2
    assert server.pipeline([("SET", b"n2", b"ab")]) == b"+OK\r\n"  # 8 bytes left: key and value fit


@needs_native
@pytest.mark.parametrize("store_class", ["gpu.cpu:NumpyStore", "gpu.cuda:ArenaStore"])
def test_the_view_kept_open_between_calls_is_let_go_when_the_layout_changes(store_class):
    """The C side keeps the last view it used open (its buffers held) for the next call; the
    store lets go of it when its layout changes, so FLUSHALL can still close the region."""
    import importlib

    module, name = store_class.split(":")
    store = getattr(importlib.import_module(module), name)()
    for i in range(100):
        store.set(b"k%d" % i, b"v%d" % i, 0)
    view = store.native_view()
    reply, hits, _ = fastpath.native.mget([b"MGET", b"k1", b"k2", b"nope"], view, 0, True, b"$-1\r\n")
    assert hits == 2 and reply == b"*3\r\n$2\r\nv1\r\n$2\r\nv2\r\n$-1\r\n"
    with pytest.raises(BufferError):  # the region's buffer is still held: the view was kept
        store._slabs.region.close()
    assert fastpath.native.mget([b"MGET", b"k3"], store.native_view(), 0, True, b"$-1\r\n")[0] == b"*1\r\n$2\r\nv3\r\n"
    store.clear()  # FLUSHALL: the store forgets its view, then closes its region
    assert len(store) == 0
    store.set(b"k1", b"again", 0)
    assert fastpath.native.mget([b"MGET", b"k1", b"k2"], store.native_view(), 0, True,
                                b"$-1\r\n")[0] == b"*2\r\n$5\r\nagain\r\n$-1\r\n"
    for i in range(5000):  # growth: new arrays and a new view; the old one is let go
        store.set(b"g%d" % i, b"w", 0)
    assert fastpath.native.mget([b"MGET", b"g4999"], store.native_view(), 0, True, b"$-1\r\n")[0] == b"*1\r\n$1\r\nw\r\n"
    fastpath.native.forget_view(store.native_view())
    store._slabs.region.close()  # nothing holds it now
