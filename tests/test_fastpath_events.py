"""The C fast path's access events (predis_server/fastpath_c/event_sink.h's ring writer) against
the Python path's: the collector's and the prefetcher's events, their key codes, the ring sink's
checks and tenants. The replies and store state are compared in test_fastpath.py, whose
two-server harness these tests share.
"""
from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from models.collector import EVENT_BYTES
from predis_server import fastpath, pipeline
from predis_server.config import Config
from tests.inprocess import connect, in_process_server
from tests.resp import encode_command
from tests.test_fastpath import BATCHES, KEYS, InProcess, _both, _switch_c_off, needs_native


@needs_native
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=BATCHES)
def test_collector_events_agree(monkeypatch, batches):
    """With the collector at 100% (no prefetcher) the C path writes GET events into the ring
    itself: the same events (key codes, op, outcome, size, tenant) in the same order as the
    Python path records them."""
    def run(server: InProcess):
        replies = []
        for commands, advance_ms in batches:
            replies.append(server.pipeline(commands))
            server.now += advance_ms
        server.server.access_hook.flush()
        collector = server.server.prediction.collector
        events = {name: collector.arrays[name][:collector.written].tolist()
                  for name in collector.arrays if name != "ts"}
        return replies, server.state(KEYS), collector.written, events

    with_native, without = _both(monkeypatch, run, "cpu", collector=True)
    assert with_native == without


def _key_shapes() -> list[bytes]:
    """Keys around every edge of the C path's word-at-a-time key codes: prefixes of 0 to 17
    bytes (bytes next to the digits, ':' ';' '/' '@', high bytes with a digit's low nibble,
    NUL), numeric suffixes of 0 to 25 digits (leading zeros, more than the 18 kept), all-digit
    keys, keys longer than the 8 salted words."""
    import random

    rng = random.Random(5)
    tricky = [b"/", b":", b";", b"?", b"@", b"\x00", b"\xb5", b"\xf9", b"\x39\x00", b"a", b" "]
    keys = [b""]
    for prefix_len in range(18):
        for digits in range(26):
            prefix = b"".join(rng.choice(tricky) for _ in range(prefix_len))[:prefix_len]
            keys.append(prefix + bytes(rng.choice(b"0123456789") for _ in range(digits)))
    keys += [b"9" * n for n in range(1, 30)] + [b"0" * n for n in range(1, 20)]
    keys += [b"k" * n + b"%d" % i for n in (60, 63, 64, 65, 71, 72, 90) for i in (7, 12345678, 10**17 + 3)]
    keys += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80))) for _ in range(300)]
    keys += [b"key:%012d" % rng.randrange(10**12) for _ in range(50)]
    return keys


@needs_native
def test_collector_key_codes_of_key_shapes(monkeypatch):
    """The codes the C path writes into the ring (hashes, prefix hashes, suffixes) are
    models/keycodes.py's, for every key shape; a small ring wraps around several times,
    and the Python path records the same ring."""
    from models.keycodes import _python_codes, key_codes

    keys = _key_shapes()

    def run(server: InProcess):
        collector = server.server.prediction.collector
        assert collector.capacity == 16
        ring = []
        for at in range(0, len(keys), 12):  # (a batch larger than the ring: Python keeps its tail only)
            batch = keys[at:at + 12]
            server.pipeline([("SET", key, b"v" * (i % 3)) for i, key in enumerate(batch) if i % 2])
            server.pipeline([("GET", key) for key in batch])
            server.server.access_hook.flush()
            ring.append(collector.recent(len(batch)))
        return collector.written, ring

    post_init = Config.__post_init__

    def small_ring(config: Config) -> None:
        post_init(config)
        config.collector_buffer_events = 16

    monkeypatch.setattr(Config, "__post_init__", small_ring)
    with_native, without = _both(monkeypatch, run, "cpu", collector=True)
    assert with_native[0] == without[0] == len(keys)
    expected = key_codes(keys), _python_codes(keys)
    for at, (native_ring, python_ring) in enumerate(zip(with_native[1], without[1])):
        batch = slice(at * 12, at * 12 + 12)
        for want in expected:
            assert native_ring["key_hash"].tolist() == want[0][batch].tolist()
            assert native_ring["prefix_hash"].tolist() == want[1][batch].tolist()
            assert native_ring["suffix"].tolist() == want[2][batch].tolist()
        for name in native_ring:
            if name != "ts":
                assert native_ring[name].tolist() == python_ring[name].tolist(), name


@needs_native
def test_ring_sink_is_checked():
    """A run writes events into the collector's ring handle itself: at written % capacity,
    with the run's time and the handle's tenant, advancing the handle's count (which the
    collector's own count is). A sink that is not such a handle is refused before anything
    is written; ring() takes only a writable, aligned block that holds its capacity, and
    holds the block while the handle lives; written and tenant take only what they can hold."""
    import gc
    import weakref

    server = InProcess(collector=True)
    collector = server.server.prediction.collector
    server.pipeline([("SET", b"k", b"v")])
    calls = []
    real_run = fastpath.native.run

    def spying_run(*a):
        calls.append(a)
        return real_run(*a)

    pipeline_native = pipeline.native
    try:
        pipeline.native = type("Native", (), {"run": staticmethod(spying_run), **{
            n: getattr(fastpath.native, n) for n in ("OPT_TOUCH", "OPT_WRITES", "OPT_STOP_AT_MISS")}})
        server.pipeline([("GET", b"k")] * 2)
        ring = calls[-1][9]
        assert ring is collector.native_ring() and collector.written == ring.written == 2
        assert collector.arrays["size"][:2].tolist() == [1, 1]
        assert collector.arrays["ts"][:2].tolist() == [server.now * 1000] * 2
        # the count set from Python places the next events; the tenant set is theirs
        collector.written = collector.capacity + 5
        ring.tenant = 7
        server.pipeline([("GET", b"k"), ("GET", b"none")])
        assert ring.written == collector.capacity + 7
        assert collector.arrays["tenant"][5:7].tolist() == [7, 7]
        assert collector.arrays["outcome"][5:7].tolist() == [0, 1]
    finally:
        pipeline.native = pipeline_native
    base = list(calls[-1])
    for bad in [collector._block, (ring, 0, collector.capacity, 0, 0), (ring,), "ring"]:
        before = collector._block.copy()
        base[9] = bad
        with pytest.raises(TypeError):
            real_run(*base)
        assert np.array_equal(before, collector._block) and ring.written == collector.capacity + 7
    for name, value in [("written", -1), ("tenant", -1), ("tenant", 65536)]:
        with pytest.raises(ValueError):
            setattr(ring, name, value)
    with pytest.raises(TypeError):
        ring.written = "0"
    assert ring.written == collector.capacity + 7 and ring.tenant == 7
    size = 16 * EVENT_BYTES  # a block of 16 events
    with pytest.raises(BufferError):
        fastpath.native.ring(b"\0" * size, 16)
    with pytest.raises(ValueError):
        fastpath.native.ring(memoryview(np.zeros(size + 8, dtype=np.uint8))[1:], 16)
    for capacity in (0, -1, 17):
        with pytest.raises(ValueError):
            fastpath.native.ring(np.zeros(size, dtype=np.uint8), capacity)
    block = np.zeros(size, dtype=np.uint8)
    small = fastpath.native.ring(block, 16)
    with pytest.raises(ValueError):
        block.resize(2 * size)  # exported while the handle lives
    held = weakref.ref(block)
    del block
    gc.collect()
    assert held() is not None
    del small
    gc.collect()
    assert held() is None


@needs_native
def test_ring_events_carry_each_runs_user(monkeypatch):
    """Pipelined GET runs of two ACL users (tenant-mode user), in one tick and over ticks,
    with single GETs (the Python path's queued events) in between: the C path keeps the ring
    from run to run and sets its tenant when the user changes; the ring holds the Python
    path's events, in its order, each with its reader's tenant."""
    def run():
        config = Config()
        config.collector_sampling = 1.0
        server = in_process_server(config)
        server.prediction._reconfigure()
        admin, _ = connect(server)
        conns = {}
        for user in ("alice", "bob"):
            admin.data_received(encode_command("ACL", "SETUSER", user, "on", f">{user}-pw", "+@all", "~*", "&*"))
            server.run_batch()
            conns[user] = connect(server)
            conns[user][0].data_received(encode_command("AUTH", user, f"{user}-pw"))
            server.run_batch()
        admin.data_received(b"".join(encode_command("SET", f"k{i}", "v" * i) for i in range(8)))
        server.run_batch()
        for tick in range(6):
            order = ("alice", "bob") if tick % 2 else ("bob", "alice")
            for n, user in enumerate(order):
                keys = [f"k{(tick + n + i) % 10}" for i in range(5 + tick)]  # k8, k9: misses
                requests = [encode_command("GET", key) for key in keys]
                if tick == 3 and user == "alice":
                    requests = [encode_command("GET", "k1")]  # one command: the Python path
                conns[user][0].data_received(b"".join(requests))
            server.run_batch()
        server.access_hook.flush()
        collector = server.prediction.collector
        tenant = {user: server.mlops.tenant_id(user, b"") for user in conns}
        events = {name: collector.arrays[name][:collector.written].tolist() for name in collector.arrays
                  if name != "ts"}
        assert not server.executor.acl.enforcing  # users that may run anything: runs go on
        ring_used = server.fast_runs.collector_ring is not None
        return tenant, collector.written, events, [conns[user][1].take() for user in conns], ring_used

    with_native = run()
    _switch_c_off(monkeypatch)
    without = run()
    tenant = with_native[0]
    assert len(set(tenant.values())) == 2 and 0 not in tenant.values()
    assert with_native[:4] == without[:4]
    assert with_native[4] and not without[4]  # the C path wrote into the ring
    assert set(with_native[2]["tenant"]) == set(tenant.values())


@needs_native
def test_prefetcher_events_agree(monkeypatch):
    """With a prefetcher the C path appends GET events to the access hook's list as the Python
    path does, and leaves the first read of a prefetched entry (a PREFETCHED_HIT the prefetcher
    must count) to the Python path."""
    def run(server: InProcess):
        prefetcher = server.server.prediction.prefetcher
        db = server.server.keyspace.dbs[0]
        server.pipeline([("SET", f"k{i}", f"v{i}") for i in range(6)] + [("GET", "warm"), ("INCR", "warm2")])
        for key in (b"p1", b"p2"):  # stored the way a finished prefetch stores them
            loaded = concurrent.futures.Future()
            loaded.set_result(b"prefetched " + key)
            prefetcher.inflight += 1
            prefetcher._loaded(loaded, db, key)
        replies = [server.pipeline([("GET", "k1"), ("GET", "p1"), ("GET", "k2"), ("GET", "none"), ("GET", "p1"),
                                    ("GET", "k3"), ("GET", "k4"), ("GET", "k5"), ("GET", "p2"), ("GET", "k0")]),
                   server.pipeline([("GET", f"k{i}") for i in range(8)])]
        events = list(server.server.access_hook.events)
        return replies, events, prefetcher.used, prefetcher.wasted, dict(prefetcher.unread), server.state(
            [b"k1", b"p1", b"p2"])

    with_native, without = _both(monkeypatch, run, prefetch=True)
    assert with_native == without
    outcomes = [event[2] for event in with_native[1]]
    assert outcomes.count(2) == 2 and with_native[2] == 2  # p1 and p2: prefetched hits, used


@needs_native
def test_events_nobody_reads_are_only_counted():
    """A prefetcher out of learning budget (nothing counting, no A/B test): the C path builds
    no event tuples for its GETs, counts them as seen, and still leaves a prefetched entry's
    first read to the Python path, which reports it."""
    server = InProcess(prefetch=True)
    prefetcher = server.server.prediction.prefetcher
    db = server.server.keyspace.dbs[0]
    server.pipeline([("SET", f"k{i}", "v") for i in range(4)] + [("GET", "warm")])
    loaded = concurrent.futures.Future()
    loaded.set_result(b"prefetched")
    prefetcher.inflight += 1
    prefetcher._loaded(loaded, db, b"p1")
    hook = server.server.access_hook
    hook.events.clear()
    prefetcher.tokens = -1e9  # spent far ahead: no budget for a long while
    prefetcher.observe([])  # a tick notes when the budget is back
    seen = prefetcher.events_seen
    assert not prefetcher.wants_events()
    reply = server.pipeline([("GET", "k0"), ("GET", "k1"), ("GET", "p1"), ("GET", "k2"), ("GET", "none")])
    assert reply == b"$1\r\nv\r\n" * 2 + b"$10\r\nprefetched\r\n" + b"$1\r\nv\r\n$-1\r\n"
    assert [event[2] for event in hook.events] == [2]  # only the prefetched hit, from Python
    assert prefetcher.events_seen - seen == 4 and prefetcher.used == 1
