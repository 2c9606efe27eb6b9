"""Read-through against real Predis processes with SQLite, file and broken origins."""
from __future__ import annotations

import sqlite3
import threading
import time

import pytest
import redis

from servers import free_port, predis_process


def _seed(path, n=50):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB)")
    conn.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", [(b"k%d" % i, b"v%d" % i) for i in range(n)])
    conn.commit()
    conn.close()


@pytest.fixture(scope="module")
def origin_server(tmp_path_factory):
    path = tmp_path_factory.mktemp("origin") / "origin.db"
    _seed(path)
    with predis_process("--origin", f"sqlite://{path}?delay_ms=150", "--origin-ttl", "100") as server:
        yield server


def test_miss_loads_from_origin_and_caches_with_ttl(origin_server):
    r = redis.Redis(port=origin_server.port)
    r.flushall()
    assert r.get("k1") == b"v1"
    assert 0 < r.ttl("k1") <= 100
    assert r.get("missing") is None and r.exists("missing") == 0
    info = r.info("prediction")
    before = info["origin_reads"]
    assert r.get("k1") == b"v1"  # now cached: no second origin read
    assert r.info("prediction")["origin_reads"] == before


def test_mget_mixes_cache_origin_and_absent_keys(origin_server):
    r = redis.Redis(port=origin_server.port)
    r.flushall()
    r.set("k2", "local")
    r.hset("h", "f", "v")
    assert r.mget("k2", "k3", "nope", "h", "k3") == [b"local", b"v3", None, None, b"v3"]
    assert r.get("k3") == b"v3"


def test_concurrent_misses_share_one_origin_read(origin_server):
    r = redis.Redis(port=origin_server.port)
    r.flushall()
    before = r.info("prediction")["origin_reads"]
    results = []

    def worker():
        results.append(redis.Redis(port=origin_server.port).get("k7"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [b"v7"] * 8
    assert r.info("prediction")["origin_reads"] - before == 1


def test_pipeline_order_kept_behind_a_deferred_get(origin_server):
    r = redis.Redis(port=origin_server.port)
    r.flushall()
    pipe = r.pipeline(transaction=False)
    pipe.get("k9").set("k9", "new").get("k9").get("k10").incr("n")
    assert pipe.execute() == [b"v9", True, b"new", b"v10", 1]


def test_runs_of_pipelined_gets_load_their_misses_in_order(origin_server):
    """Runs of GETs take the fast loop up to a miss; the miss loads from the origin (deferred)
    and the rest of the pipeline follows it, in order."""
    r = redis.Redis(port=origin_server.port)
    r.flushall()
    r.set("c1", "cached1")
    r.set("c2", "cached2")
    pipe = r.pipeline(transaction=False)
    for key in ["c1", "c2", "c1", "c2", "k20", "c1", "c2", "c1", "c2", "k21", "absent", "c1"]:
        pipe.get(key)
    assert pipe.execute() == [b"cached1", b"cached2", b"cached1", b"cached2", b"v20", b"cached1",
                              b"cached2", b"cached1", b"cached2", b"v21", None, b"cached1"]
    assert r.get("k20") == b"v20" and r.ttl("k20") > 0  # loaded and cached with origin-ttl


def test_exec_does_not_wait_for_the_origin(origin_server):
    r = redis.Redis(port=origin_server.port)
    r.flushall()
    pipe = r.pipeline(transaction=True)
    pipe.get("k11").set("x", "1")
    assert pipe.execute() == [None, True]


def test_other_clients_are_not_blocked_by_a_slow_load(origin_server):
    r = redis.Redis(port=origin_server.port)
    r.flushall()
    slow = redis.Redis(port=origin_server.port)
    t = threading.Thread(target=slow.get, args=("k20",))
    t.start()
    start = time.perf_counter()
    assert r.ping()
    assert time.perf_counter() - start < 0.1
    t.join()


def test_failing_origin_gives_clear_errors_and_trips_the_breaker():
    dead = free_port()
    with predis_process("--origin", f"redis://127.0.0.1:{dead}", "--origin-timeout", "200") as server:
        r = redis.Redis(port=server.port)
        for _ in range(5):
            with pytest.raises(redis.ResponseError, match="^origin redis: cannot connect"):
                r.get("a")
        with pytest.raises(redis.ResponseError, match="^origin circuit breaker open"):
            r.get("a")
        info = r.info("prediction")
        assert info["origin_breaker"] == "open" and info["origin_errors"] == 5 and info["origin_rejected"] >= 1
        r.set("a", "1")
        assert r.get("a") == b"1"  # the server keeps serving
        r.config_set("origin-error-reply", "nil")
        assert r.get("b") is None


def test_origin_timeout(tmp_path):
    path = tmp_path / "o.db"
    _seed(path)
    with predis_process("--origin", f"sqlite://{path}?delay_ms=400", "--origin-timeout", "50") as server:
        r = redis.Redis(port=server.port)
        with pytest.raises(redis.ResponseError, match="^origin timeout after 50 ms"):
            r.get("k1")
        assert r.info("prediction")["origin_timeouts"] == 1


def test_file_origin_and_config_set_origin(tmp_path):
    from predis_server.origin.files import key_to_filename

    (tmp_path / key_to_filename(b"page:/index.html")).write_bytes(b"<html>")
    with predis_process() as server:
        r = redis.Redis(port=server.port)
        assert r.get("page:/index.html") is None  # no origin: plain Redis
        r.config_set("origin", f"file://{tmp_path}")
        assert r.get("page:/index.html") == b"<html>"
        r.config_set("origin", "")
        r.flushall()
        assert r.get("page:/index.html") is None


_READ_FIELDS = ("origin_reads", "origin_demand_reads", "origin_prefetch_reads", "origin_promoted_reads",
                "origin_shared_reads")


def _origin_counts(r) -> dict[str, int]:
    info = r.info("prediction")
    counts = {field: info[field] for field in _READ_FIELDS}
    assert counts["origin_reads"] == counts["origin_demand_reads"] + counts["origin_prefetch_reads"]
    return counts


def _settled_counts(r) -> dict[str, int]:
    """The counters once no read is in flight, the same in INFO and PREDIS.PREFETCH STATS."""
    for _ in range(100):
        before = _origin_counts(r)
        time.sleep(0.1)  # longer than one origin read: a read in flight would have moved them
        counts = _origin_counts(r)
        stats = {k.decode(): int(v) for k, v in r.execute_command("PREDIS.PREFETCH", "STATS").items()
                 if k.decode() in _READ_FIELDS}
        if before == counts == stats:
            return counts
    raise AssertionError("the origin counters never settled")


def test_demand_prefetch_and_promoted_reads_are_counted(tmp_path):
    """INFO # Prediction and PREDIS.PREFETCH STATS split origin reads by class: a client's miss
    (demand), a prefetch, and a prefetch still in flight when a client asked for its key
    (promoted: the client joins that read, counted as shared too)."""
    path = tmp_path / "origin.db"
    _seed(path, 200)
    with predis_process("--origin", f"sqlite://{path}?delay_ms=50") as server:
        r = redis.Redis(port=server.port, decode_responses=False)
        assert _settled_counts(r) == dict.fromkeys(_READ_FIELDS, 0)
        for i in range(5):  # prefetch off: plain read-through, demand reads only
            assert r.get(b"k%d" % i) == b"v%d" % i
        assert _settled_counts(r) == {"origin_reads": 5, "origin_demand_reads": 5, "origin_prefetch_reads": 0,
                                     "origin_promoted_reads": 0, "origin_shared_reads": 0}
        r.config_set("prefetch-enabled", "yes")
        for i in range(20, 120):  # a scan: the stride is prefetched ahead; a 50 ms origin makes
            assert r.get(b"k%d" % i) == b"v%d" % i  # the client catch up with reads in flight
            counts = _origin_counts(r)
            if counts["origin_promoted_reads"] >= 3:
                break
        assert counts["origin_promoted_reads"] >= 3, counts
        counts = _settled_counts(r)
        assert counts["origin_prefetch_reads"] >= counts["origin_promoted_reads"]
        assert counts["origin_shared_reads"] >= counts["origin_promoted_reads"]
        assert 5 < counts["origin_demand_reads"] < 5 + (i - 19)  # some misses were prefetched instead
        assert counts["origin_prefetch_reads"] <= r.info("prediction")["prefetches_issued"]
