"""Reuse counts for allkeys-predictive and the prefetcher's unread-bytes accounting (the precision
control has its own tests: test_precision_control.py)."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import numpy as np
import pytest
import redis
from servers import predis_process, sqlite_origin

from models.prefetch import Prefetcher
from models.ranker import RankerService


@pytest.fixture(scope="module")
def origin_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("reuse") / "origin.db"
    sqlite_origin(path, [(b"obj%d" % i, b"x" * 200) for i in range(400)])
    return path


def _gate_prefetcher(threshold=0.5):
    loop = asyncio.new_event_loop()
    server = SimpleNamespace(loop=loop, keyspace=SimpleNamespace(maxmemory=0, dbs=[]))
    return Prefetcher(server, None, RankerService(), threshold=threshold), loop


def test_predictive_policy_keeps_frequently_read_keys_over_recent_once_read_ones(origin_path):
    with predis_process("--origin", f"sqlite://{origin_path}", "--prefetch-enabled", "yes",
                        "--maxmemory-policy", "allkeys-predictive", "--maxmemory-samples", "64") as server:
        r = redis.Redis(port=server.port)
        hot = [b"obj%d" % i for i in range(300, 305)]
        for _ in range(6):
            for key in hot:
                r.get(key)
        for i in range(0, 200, 7):  # read once each, after the hot keys' last reads
            r.get(b"obj%d" % i)
        time.sleep(0.2)  # the last tick's counts are written
        used = int(r.info("memory")["used_memory"])
        r.config_set("maxmemory", str(used - 3000))  # ~10 of the 34 keys must go
        r.set("trigger", "1")  # a write enforces maxmemory
        assert all(r.exists(key) for key in hot)
        assert r.info("stats")["evicted_keys"] >= 5


class _EvictingDb:
    """A database stand-in whose store can drop a key behind the prefetcher's back (eviction)."""
    id = 0

    def __init__(self):
        self.values: dict[bytes, bytes] = {}
        self.prefetched: set[bytes] = set()
        self.store = self

    def peek(self, key):
        return self.values.get(key)

    def clock(self):
        return 0

    def set(self, key, value, expire_at):
        self.values[key] = value
        self.prefetched.discard(key)

    def evict(self, key):
        del self.values[key]
        self.prefetched.discard(key)

    def mark_prefetched(self, key, flag):
        (self.prefetched.add if flag else self.prefetched.discard)(key)

    def is_prefetched(self, key):
        return key in self.prefetched


def test_a_key_prefetched_again_after_an_unseen_eviction_is_counted_once():
    # The unread bytes bound further prefetches (prefetch-memory-share): a key evicted unread and
    # prefetched again before reconcile ran must not keep its first copy's bytes for ever.
    p, loop = _gate_prefetcher()
    db = _EvictingDb()
    try:
        for _ in range(2):
            done = loop.create_future()
            done.set_result(b"v" * 100)
            p.inflight += 1
            p._loaded(done, db, b"k")
            if b"k" in db.values and len(p.unread) == 1 and p.stored == 1:
                db.evict(b"k")  # evicted unread; reconcile has not looked yet
        assert p.unread_bytes == 100 and p.wasted == 1
        assert p.on_hit(db, b"k")
        assert p.unread_bytes == 0 and p.used == 1 and p.inflight == 0
    finally:
        loop.close()


# -- each stored key's count is read once, not again on the loop per stored entry -----------------
def _predictive_rig():
    from gpu.cpu import NumpyStore
    from gpu.interface import EvictionPolicy
    from predis_server.keyspace import Keyspace
    from predis_server.stats import Stats

    keyspace = Keyspace(1, NumpyStore, Stats(), clock=lambda: 1_000_000)
    keyspace.policy = EvictionPolicy.ALLKEYS_PREDICTIVE
    p = Prefetcher(SimpleNamespace(loop=None, keyspace=keyspace), None, RankerService())
    return p, keyspace.dbs[0]


def _count(p, key, times):
    from models.keycodes import key_codes

    for _ in range(times):
        p._count_accesses([(key, 0, 0, 32, 0)], key_codes([key])[0])


def _reuse(db, key):
    return float(db.store.reuse[db.store._index[key]])


class _ManualLoader:
    """Prefetch loads that finish when the test says so."""

    def __init__(self):
        import concurrent.futures

        self.inflight: dict = {}
        self.futures: dict = {}
        self._future = concurrent.futures.Future

    def load(self, key):
        self.futures[key] = future = self._future()
        return future


def test_a_prefetched_entry_starts_at_the_count_read_when_it_was_issued(monkeypatch):
    # _act reads every candidate's count in one batch; the stored entry takes it (halved once
    # per ageing of the sketch since), without a lookup of its own at load time
    p, db = _predictive_rig()
    p.loader = _ManualLoader()
    _count(p, b"k", 8)
    p._act([b"k"], [0], np.asarray([0.9], dtype=np.float32))
    assert b"k" in p.loader.futures
    p.frequency.counts >>= 1  # the sketch ages while the read is in flight
    p.frequency.halvings += 1
    monkeypatch.setattr(p, "_key_count", lambda key: pytest.fail("counted again at load time"))
    p.loader.futures[b"k"].set_result(b"v" * 32)
    assert db.store.is_prefetched(b"k") and _reuse(db, b"k") == 4.0


def _full_of_hot_keys(p, db):
    """20 keys read 3 times each fill ``db``: the admission filter judges the next load."""
    for i in range(20):
        db.set(b"hot%d" % i, b"v" * 32)
        _count(p, b"hot%d" % i, 3)
    db.keyspace.maxmemory = db.keyspace.used_memory()
    assert db.keyspace.enforce_maxmemory()  # full, nothing to evict yet


def test_a_demand_load_reads_its_count_once_for_admission_and_reuse(monkeypatch):
    p, db = _predictive_rig()
    _count(p, b"new", 5)
    _full_of_hot_keys(p, db)
    lookups = []
    real = p._key_count
    monkeypatch.setattr(p, "_key_count", lambda key: lookups.append(key) or real(key))
    assert p.admits(db, b"new")
    db.set(b"new", b"v" * 32)
    p.on_stored(db, b"new")
    assert lookups == [b"new"] and _reuse(db, b"new") == 5.0


def test_a_miss_that_joined_a_prefetch_counts_toward_the_stored_entry():
    # the client's access came after the prefetch read its count; the miss event's tick adds it
    p, db = _predictive_rig()
    _count(p, b"k", 2)
    db.set(b"k", b"v" * 32)
    p.on_stored(db, b"k", (2.0, p.frequency.halvings))
    from models.keycodes import key_codes

    p._count_accesses([(b"k", 0, 1, 0, 0)], key_codes([b"k"])[0])  # outcome 1: a miss
    assert _reuse(db, b"k") == 3.0


def test_row_counts_hash_only_the_keys_without_a_known_hash(monkeypatch):
    from models import prefetch as prefetch_module
    from models.keycodes import key_codes

    p, _ = _predictive_rig()
    _count(p, b"follower", 3)
    _count(p, b"stride:7", 2)
    hashed = []
    real = prefetch_module.key_codes
    monkeypatch.setattr(prefetch_module, "key_codes", lambda keys: hashed.extend(keys) or real(keys))
    known = int(key_codes([b"follower"])[0][0])
    assert p._row_counts([b"follower", b"stride:7"], [known, -1]) == [3.0, 2.0]
    assert hashed == [b"stride:7"]


def test_a_key_read_while_its_prefetch_is_in_flight_starts_at_the_newer_count():
    p, db = _predictive_rig()
    p.loader = _ManualLoader()
    _count(p, b"k", 2)
    p._act([b"k"], [0], np.asarray([0.9], dtype=np.float32))
    from models.keycodes import key_codes

    p._count_accesses([(b"k", 0, 1, 0, 0)], key_codes([b"k"])[0])  # the client's miss joins the read
    p.loader.futures[b"k"].set_result(b"v" * 32)
    assert _reuse(db, b"k") == 3.0


# -- a prefetch's eviction waits for a moment no client's origin read is about to end -----------
def _full_lru_rig(loop):
    from inprocess import full_keyspace

    keyspace, db, stats = full_keyspace()
    p = Prefetcher(SimpleNamespace(loop=loop, keyspace=keyspace), _ManualLoader(), RankerService())
    return p, db, stats


def test_a_prefetched_store_owes_its_eviction_until_a_client_read_starts():
    from models.prefetch import EVICT_DEFER_S

    loop = asyncio.new_event_loop()
    try:
        p, db, stats = _full_lru_rig(loop)
        keyspace = db.keyspace
        p._act([b"p1", b"p2"], [0, 0], np.asarray([0.9, 0.9], dtype=np.float32))
        for key in (b"p1", b"p2"):
            p.loader.futures[key].set_result(b"w" * 300)
        # stored (a client can read them at once), evicted for later
        assert db.peek(b"p1") == b"w" * 300 and db.peek(b"p2") == b"w" * 300
        assert stats.evicted_keys == 0 and keyspace.used_memory() > keyspace.maxmemory
        assert p.evict_owed == 600 and p.evict_timer is not None  # the backstop
        assert p.evict_timer.when() - loop.time() <= EVICT_DEFER_S
        p.evict_owed_now()  # what the access hook runs as a client's origin read starts
        assert stats.evicted_keys > 0 and keyspace.used_memory() <= keyspace.maxmemory
        assert p.evict_owed == 0 and p.evict_timer is None
    finally:
        loop.close()


def test_owed_eviction_runs_at_once_past_its_share_of_maxmemory():
    from models.prefetch import EVICT_DEFER_SHARE

    loop = asyncio.new_event_loop()
    try:
        p, db, stats = _full_lru_rig(loop)
        big = int(EVICT_DEFER_SHARE * db.keyspace.maxmemory) + 1
        p._act([b"big"], [0], np.asarray([0.9], dtype=np.float32))
        p.loader.futures[b"big"].set_result(b"w" * big)
        assert db.peek(b"big") is not None and stats.evicted_keys > 0
        assert p.evict_owed == 0 and db.keyspace.used_memory() <= db.keyspace.maxmemory
    finally:
        loop.close()


def test_the_access_hook_runs_the_owed_eviction_before_learning_once_a_client_read_started():
    from predis_server.readthrough import AccessHook

    order = []
    prefetcher = SimpleNamespace(evict_owed=300, evict_owed_now=lambda: order.append("evict"),
                                 observe=lambda events: order.append("learn"))
    services = SimpleNamespace(collector=None)
    hook = AccessHook(services)
    hook.prefetcher = prefetcher
    hook.events = [(b"k", 0, 1, 0, 0, 0)]
    hook._learn_started()
    assert order == ["evict", "learn"]


def test_admission_takes_the_count_the_miss_tick_read(monkeypatch):
    # the tick that counted the miss ran while the client's origin read was on its way: admission,
    # on the reply path, reads that count instead of hashing the key and looking it up again
    from models.keycodes import key_codes

    p, db = _predictive_rig()
    _count(p, b"new", 4)
    p._count_accesses([(b"new", 0, 1, 0, 0)], key_codes([b"new"])[0])  # outcome 1: the miss
    _full_of_hot_keys(p, db)
    monkeypatch.setattr(p, "_key_count", lambda key: pytest.fail("counted again on the reply path"))
    assert p.admits(db, b"new")
    db.set(b"new", b"v" * 32)
    p.on_stored(db, b"new")
    assert _reuse(db, b"new") == 5.0 and b"new" not in p.missed_count
