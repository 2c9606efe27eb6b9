"""predis-replay against a real redis-server started by the fixture."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from workloads.cli import replay_main, workload_main
from workloads.origin import SqliteOrigin, key_bytes, value_bytes
from workloads.replay import ReadThroughUnavailable, ReplayConfig, replay
from workloads.trace import OP_GET, OP_SET, make_chunk, write_trace

redis = pytest.importorskip("redis")
pytestmark = pytest.mark.redis


def _trace(tmp_path: Path, keys: list[int], ops: list[int] | None = None, size: int = 100, fmt: str = "csv") -> Path:
    path = tmp_path / f"t.{fmt}"
    ops_arr = np.array(ops if ops is not None else [OP_GET] * len(keys), dtype=np.uint8)
    write_trace([make_chunk(np.arange(len(keys), dtype=float), ops_arr, np.array(keys, dtype=np.uint64), size)],
                path, fmt)
    return path


def test_cache_aside_with_room_for_everything(redis_server: tuple[str, int], tmp_path: Path) -> None:
    host, port = redis_server
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 300, 3000).tolist()
    path = _trace(tmp_path, keys, fmt="txt")
    res = replay(ReplayConfig(trace=str(path), host=host, port=port, size="64MB", warmup=0.0, default_size=200))
    distinct = len(set(keys))
    # Only compulsory misses; server INFO and the client agree exactly.
    assert res["server_keyspace_misses"] == distinct
    assert res["server_keyspace_hits"] == 3000 - distinct
    assert res["hit_ratio_server"] == pytest.approx(res["hit_ratio_client"])
    assert res["counters"]["origin_reads"] == distinct and res["counters"]["origin_misses"] == 0
    assert res["counters"]["bytes_from_origin"] == 200 * distinct
    assert res["counters"]["bytes_from_cache"] == 200 * (3000 - distinct)
    assert res["dbsize_end"] == distinct and res["evicted_keys"] == 0
    r = redis.Redis(host=host, port=port)
    assert int(r.config_get("maxmemory")["maxmemory"]) == res["maxmemory"] == 64_000_000 + res["baseline_used_memory"]
    assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
    assert r.get(key_bytes(keys[0])) == value_bytes(keys[0], 200)
    lat = res["latency_us"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"]
    assert res["throughput_rps"] > 0 and res["measured_requests"] == 3000


def test_small_cache_evicts_and_warmup_is_excluded(redis_server: tuple[str, int], tmp_path: Path) -> None:
    host, port = redis_server
    keys = list(range(500)) * 4  # a loop bigger than the cache
    path = _trace(tmp_path, keys, size=10_000)
    res = replay(ReplayConfig(trace=str(path), host=host, port=port, size="0.1", warmup=0.25, policy="allkeys-lru"))
    assert res["cache_bytes"] == 500_000
    assert res["warmup_requests"] == 500 and res["measured_requests"] == 1500
    assert res["server_keyspace_hits"] + res["server_keyspace_misses"] == 1500
    assert res["hit_ratio_server"] < 0.05  # LRU on a loop larger than the cache
    assert res["evicted_keys"] > 1000 and res["counters"]["set_errors"] == 0
    assert res["hit_ratio_server"] == pytest.approx(res["hit_ratio_client"])


def test_writes_update_origin_and_cache(redis_server: tuple[str, int], tmp_path: Path) -> None:
    host, port = redis_server
    keys = [1, 2, 1, 3, 1, 2]
    ops = [OP_GET, OP_SET, OP_GET, OP_SET, OP_GET, OP_GET]
    path = _trace(tmp_path, keys, ops, size=50)
    db = tmp_path / "origin.db"
    res = replay(ReplayConfig(trace=str(path), host=host, port=port, size="1MB", warmup=0.0, origin_db=str(db)))
    c = res["counters"]
    assert c["gets"] == 4 and c["origin_writes"] == 2
    assert c["hits"] == 3 and c["misses"] == 1  # key 2 was SET before it was read
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM kv").fetchone()[0] == 3

    res = replay(ReplayConfig(trace=str(path), host=host, port=port, size="1MB", warmup=0.0,
                              write_policy="invalidate"))
    assert res["counters"]["dels"] == 2 and res["counters"]["misses"] == 2  # key 2 re-read from the origin


def test_concurrency_and_origin_latency(redis_server: tuple[str, int], tmp_path: Path) -> None:
    host, port = redis_server
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 100, 800).tolist()
    path = _trace(tmp_path, keys, size=64)
    res = replay(ReplayConfig(trace=str(path), host=host, port=port, size="1MB", warmup=0.0, concurrency=4,
                              origin_latency_ms=5.0))
    assert res["measured_requests"] == 800
    assert res["counters"]["gets"] == 800
    assert res["server_keyspace_hits"] + res["server_keyspace_misses"] == 800
    # With 4 clients a key can be missed by two of them at once, never fewer misses than keys.
    assert res["counters"]["misses"] >= len(set(keys))
    # Every miss waits 5 ms for the origin.
    assert res["latency_us"]["p999"] >= 5000
    assert res["latency_us"]["mean"] >= 5000 * res["counters"]["misses"] / 800 * 0.9


def test_read_through_against_redis_fails_clearly(redis_server: tuple[str, int], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    host, port = redis_server
    path = _trace(tmp_path, [1, 2, 3, 1])
    db = tmp_path / "rt.db"
    with pytest.raises(ReadThroughUnavailable):
        replay(ReplayConfig(trace=str(path), host=host, port=port, mode="read-through", origin_db=str(db)))
    rc = replay_main([str(path), "--host", host, "--port", str(port), "--mode", "read-through",
                      "--origin-db", str(db)])
    assert rc == 3
    err = capsys.readouterr().err
    assert "no read-through origin configured" in err
    # The origin was seeded for the server to read.
    origin = SqliteOrigin(db)
    assert origin.count() == 3
    assert origin.get(key_bytes(2)) == value_bytes(2, 100)
    origin.close()


def test_cli_end_to_end(redis_server: tuple[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host, port = redis_server
    trace = tmp_path / "db.csv"
    assert workload_main(["database", "--requests", "3000", "--seed", "2", "--out", str(trace), "--pages", "500",
                          "--page-size", "4096", "--scan-length", "100"]) == 0
    out = tmp_path / "r.json"
    rc = replay_main([str(trace), "--host", host, "--port", str(port), "--size", "0.2", "--warmup", "0.1",
                      "--json", str(out), "--label", "Redis"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "hit ratio (server)" in text and "p99.9" in text
    data = json.loads(out.read_text())
    assert data["label"] == "Redis" and data["mode"] == "cache-aside"
    assert 0 < data["hit_ratio_server"] < 1
    assert data["measured_requests"] == 2700
    assert data["provenance"]["machine"]["cores"] >= 1


def test_unreachable_server(tmp_path: Path) -> None:
    path = _trace(tmp_path, [1, 2])
    assert replay_main([str(path), "--port", "1", "--size", "1MB"]) == 2


def test_origin_values_are_deterministic(tmp_path: Path) -> None:
    assert value_bytes(12, 3) == b"12:"[:3]
    v = value_bytes(12, 100_000)
    assert len(v) == 100_000 and v.startswith(b"12:")
    assert key_bytes(7, b"w:") == b"w:7"
