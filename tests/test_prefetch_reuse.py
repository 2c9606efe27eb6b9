"""Reuse counts for allkeys-predictive and the prefetcher's unread-bytes accounting (the precision
control has its own tests: test_precision_control.py)."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

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
