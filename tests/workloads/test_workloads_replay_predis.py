"""predis-replay against a real Predis process: read-through from a SQLite origin, and the
resident-data and load figures every replay reports."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from servers import predis_process

from workloads.cli import replay_main
from workloads.origin import key_bytes, value_bytes
from workloads.replay import ReplayConfig, replay
from workloads.trace import OP_GET, OP_SET, make_chunk, write_trace

redis = pytest.importorskip("redis")


def _trace(path: Path, keys: list[int], ops: list[int], sizes: list[int]) -> Path:
    chunk = make_chunk(np.arange(len(keys), dtype=float), np.array(ops, dtype=np.uint8),
                       np.array(keys, dtype=np.uint64), np.array(sizes, dtype=np.uint32))
    write_trace([chunk], path, "csv")
    return path


@pytest.fixture(scope="module")
def predis_with_origin(tmp_path_factory: pytest.TempPathFactory):
    """A Predis process whose read-through origin is a SQLite file the replay seeds."""
    db = tmp_path_factory.mktemp("origin") / "origin.db"
    with predis_process("--save", "", "--origin", f"sqlite://{db}") as server:
        yield server.port, db


def test_read_through_serves_misses_from_the_origin(predis_with_origin, tmp_path: Path) -> None:
    port, db = predis_with_origin
    keys = np.random.default_rng(5).integers(0, 150, 1500).tolist()
    path = _trace(tmp_path / "rt.csv", keys, [OP_GET] * len(keys), [120] * len(keys))
    res = replay(ReplayConfig(trace=str(path), port=port, mode="read-through", origin_db=str(db),
                              size="8MB", warmup=0.0))
    distinct = len(set(keys))
    # Room for everything: the server misses (and reads its origin) once per key, and every GET
    # is answered with the origin's value.
    assert res["server_keyspace_misses"] == distinct
    assert res["server_keyspace_hits"] == len(keys) - distinct
    assert res["counters"]["origin_reads"] == distinct
    assert res["counters"]["misses"] == 0 and res["answered_ratio_client"] == 1.0
    assert math.isnan(res["hit_ratio_client"])  # answered GETs are not cache hits here
    assert res["counters"]["bytes_from_cache"] == 120 * len(keys)
    assert res["dbsize_end"] == res["resident_keys"] == distinct
    assert res["resident_value_bytes"] == 120 * distinct
    assert redis.Redis(port=port).get(key_bytes(keys[0])) == value_bytes(keys[0], 120)


def test_read_through_small_cache_evicts_and_rereads(predis_with_origin, tmp_path: Path) -> None:
    port, db = predis_with_origin
    keys = list(range(300)) * 3  # a loop three times the cache
    path = _trace(tmp_path / "loop.csv", keys, [OP_GET] * len(keys), [1000] * len(keys))
    res = replay(ReplayConfig(trace=str(path), port=port, mode="read-through", origin_db=str(db),
                              size="0.3", warmup=0.0))
    assert res["maxmemory"] == res["cache_bytes"] + res["baseline_used_memory"]
    assert res["evicted_keys"] > 300
    assert res["hit_ratio_server"] < 0.1  # LRU on a loop larger than the cache
    assert res["answered_ratio_client"] == 1.0
    assert 0 < res["resident_value_bytes"] <= res["cache_bytes"]
    assert res["load"]["cores"] >= 1 and 0 <= res["load"]["cpu_busy"] <= 1


def test_read_through_sees_writes_at_once(predis_with_origin, tmp_path: Path) -> None:
    port, db = predis_with_origin
    # Seeded at 300 bytes (the key's largest size); the SET writes 50 bytes to the origin and,
    # with write_policy=invalidate, drops the cached copy: the next GET must load the new value.
    path = _trace(tmp_path / "w.csv", [1, 1, 1, 2], [OP_GET, OP_SET, OP_GET, OP_GET], [300, 50, 50, 10])
    res = replay(ReplayConfig(trace=str(path), port=port, mode="read-through", origin_db=str(db),
                              size="1MB", warmup=0.0, write_policy="invalidate"))
    c = res["counters"]
    assert c["origin_writes"] == 1 and c["dels"] == 1
    assert c["bytes_from_cache"] == 300 + 50 + 10
    assert res["server_keyspace_misses"] == 3
    assert redis.Redis(port=port).get(key_bytes(1)) == value_bytes(1, 50)


def test_read_through_cli(predis_with_origin, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port, db = predis_with_origin
    path = _trace(tmp_path / "c.csv", [1, 2, 1, 3, 1], [OP_GET] * 5, [64] * 5)
    rc = replay_main([str(path), "--port", str(port), "--mode", "read-through", "--origin-db", str(db),
                      "--size", "1MB", "--warmup", "0", "--label", "Predis"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "read-through replay" in out and "predis_version" in out and "resident data" in out
