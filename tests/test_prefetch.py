"""Prefetching against a live server: strides and transitions turn misses into hits."""
from __future__ import annotations

import sqlite3
import time

import pytest
import redis

from servers import predis_process


@pytest.fixture(scope="module")
def origin_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("prefetch") / "origin.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB)")
    conn.executemany("INSERT INTO kv VALUES (?, ?)", [(b"item:%d" % i, b"x" * 100) for i in range(1000)])
    conn.executemany("INSERT INTO kv VALUES (?, ?)", [(b"page:%s" % n, b"p") for n in (b"a", b"b", b"c")])
    conn.commit()
    conn.close()
    return path


def _scan(r, n, pause=0.004):
    for i in range(n):
        assert r.get(b"item:%d" % i) == b"x" * 100
        time.sleep(pause)


def test_stride_prefetch_turns_a_scan_into_hits(origin_path):
    with predis_process("--origin", f"sqlite://{origin_path}", "--prefetch-enabled", "yes") as server:
        r = redis.Redis(port=server.port)
        _scan(r, 150)
        time.sleep(1.2)  # one reconcile pass
        info = r.info("prediction")
        stats = r.info("stats")
        assert info["prefetches_used"] >= 120, info
        assert stats["keyspace_hits"] >= 120  # clients never asked for these keys before
        assert float(info["prefetch_precision"]) >= 0.5
        assert info["origin_reads"] <= 1.5 * 150
        assert r.object("idletime", "item:1") is not None
        # marked entries: the one prefetched ahead of the scan is unread
        assert info["prefetches_unread"] >= 1


def test_prefetch_off_is_plain_read_through(origin_path):
    with predis_process("--origin", f"sqlite://{origin_path}") as server:
        r = redis.Redis(port=server.port)
        _scan(r, 30, 0)
        info = r.info("prediction")
        assert info["prefetch_enabled"] == 0 and info["prefetches_issued"] == 0
        assert r.info("stats")["keyspace_hits"] == 0 and info["origin_reads"] == 30


def test_transitions_are_prefetched_and_limits_apply(origin_path):
    with predis_process("--origin", f"sqlite://{origin_path}", "--prefetch-enabled", "yes",
                        "--prefetch-max-inflight", "0") as server:
        r = redis.Redis(port=server.port)
        _scan(r, 20)
        info = r.info("prediction")
        assert info["prefetches_issued"] == 0 and info["prefetch_skipped_inflight"] > 0
        r.config_set("prefetch-max-inflight", "16")
        for _ in range(4):  # teach a -> b -> c
            for name in (b"a", b"b", b"c"):
                r.get(b"page:" + name)
                time.sleep(0.005)
            r.delete("page:b", "page:c")
        time.sleep(0.05)
        r.get("page:a")
        time.sleep(0.1)
        assert r.exists("page:b") == 1  # fetched before anyone asked
        assert r.info("prediction")["prefetches_issued"] >= 1


def test_unused_prefetched_entries_are_evicted_first(origin_path):
    with predis_process("--origin", f"sqlite://{origin_path}", "--prefetch-enabled", "yes",
                        "--maxmemory-policy", "allkeys-predictive", "--maxmemory-samples", "64") as server:
        r = redis.Redis(port=server.port)
        for i in range(40):
            r.set(b"user:%d" % i, b"y" * 100)
        _scan(r, 60)
        time.sleep(0.1)
        unread_before = r.info("prediction")["prefetches_unread"]
        assert unread_before >= 1
        used = int(r.info("memory")["used_memory"])
        r.config_set("maxmemory", str(used - 600))
        r.set("trigger", "1")  # a write enforces maxmemory
        time.sleep(1.2)
        info = r.info("prediction")
        # the unread prefetched entry goes first (scored -2 below every other key)
        assert info["prefetches_wasted"] >= 1 and info["prefetches_unread"] < unread_before
