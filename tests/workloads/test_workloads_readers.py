"""Trace writers and streaming readers: round trips and libCacheSim's exact binary layout."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from workloads.generators import make_generator
from workloads.readers import CsvSpec, key_to_id, read_csv, read_trace, read_txt, summarize
from workloads.trace import (
    OP_DEL,
    OP_GET,
    OP_SET,
    OracleGeneralTraceWriter,
    concat,
    make_chunk,
    write_trace,
)


def _sample() -> np.ndarray:
    keys = np.array([5, 7, 5, 9, 7, 5, 11, 9], dtype=np.uint64)
    return make_chunk(
        ts=np.array([0.5, 1.25, 2.0, 3.5, 4.0, 4.75, 6.0, 7.5]),
        op=np.array([OP_GET, OP_SET, OP_GET, OP_GET, OP_DEL, OP_GET, OP_GET, OP_SET], dtype=np.uint8),
        key=keys,
        size=np.array([100, 200, 100, 50, 200, 100, 0, 60]),
        tenant=np.array([0, 1, 0, 2, 1, 0, 3, 2]),
    )


def _next_access_brute(keys: list[int]) -> list[int]:
    out = []
    for i, k in enumerate(keys):
        nxt = next((j for j in range(i + 1, len(keys)) if keys[j] == k), -1)
        out.append(nxt)
    return out


def test_oracle_general_binary_layout(tmp_path: Path) -> None:
    trace = _sample()
    path = tmp_path / "t.oracleGeneral"
    write_trace([trace], path, "oracleGeneral")
    raw = path.read_bytes()
    assert len(raw) == 24 * len(trace)
    records = list(struct.iter_unpack("<IQIq", raw))  # uint32, uint64, uint32, int64, packed LE
    assert [r[0] for r in records] == [0, 1, 2, 3, 4, 4, 6, 7]
    assert [r[1] for r in records] == trace["key"].tolist()
    assert [r[2] for r in records] == [100, 200, 100, 50, 200, 100, 1, 60]  # size 0 written as 1
    assert [r[3] for r in records] == _next_access_brute(trace["key"].tolist())


@pytest.mark.parametrize("fix_chunk", [1, 3, 1000])
def test_oracle_general_next_access_across_chunks(tmp_path: Path, fix_chunk: int) -> None:
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 40, 500).astype(np.uint64)
    trace = make_chunk(np.arange(500.0), OP_GET, keys, 10)
    path = tmp_path / "t.bin"
    w = OracleGeneralTraceWriter(path, fix_chunk=fix_chunk)
    for part in np.array_split(trace, 7):
        w.write(part)
    w.close()
    nxt = [r[3] for r in struct.iter_unpack("<IQIq", path.read_bytes())]
    assert nxt == _next_access_brute(keys.tolist())


def test_oracle_general_is_read_by_libcachesim(tmp_path: Path) -> None:
    lcs = pytest.importorskip("libcachesim")
    trace = _sample()
    path = tmp_path / "t.oracleGeneral"
    write_trace([trace], path, "oracleGeneral")
    reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE)
    reqs = [(r.obj_id, r.obj_size, r.clock_time) for r in reader]
    assert [q[0] for q in reqs] == trace["key"].tolist()
    assert [q[1] for q in reqs] == [100, 200, 100, 50, 200, 100, 1, 60]
    n_obj, _ = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE).get_working_set_size()
    assert n_obj == 4


def test_oracle_general_round_trip(tmp_path: Path) -> None:
    trace = concat(make_generator("web", objects=2000, seed=1).chunks(20_000))
    path = tmp_path / "w.oracleGeneral"
    write_trace([trace], path, "oracleGeneral")
    parts = list(read_trace(path, chunk_size=4096))
    assert max(len(p) for p in parts) <= 4096
    back = concat(parts)
    assert np.array_equal(back["key"], trace["key"])
    assert np.array_equal(back["size"], trace["size"])
    assert np.array_equal(back["ts"], np.floor(trace["ts"]))
    assert np.all(back["op"] == OP_GET)  # the format has no ops


def test_oracle_general_rejects_bad_size(tmp_path: Path) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(b"\0" * 25)
    with pytest.raises(ValueError, match="multiple of 24"):
        list(read_trace(path, "oracleGeneral"))


def test_csv_round_trip_keeps_every_field(tmp_path: Path) -> None:
    trace = _sample()
    path = tmp_path / "t.csv"
    write_trace([trace[:3], trace[3:]], path, "csv")
    back = concat(read_trace(path, chunk_size=3))
    for field in ("op", "key", "size", "tenant"):
        assert np.array_equal(back[field], trace[field]), field
    assert np.allclose(back["ts"], trace["ts"])


def test_txt_round_trip(tmp_path: Path) -> None:
    trace = _sample()
    path = tmp_path / "t.txt"
    write_trace([trace], path, "txt")
    assert path.read_text().split() == [str(k) for k in trace["key"].tolist()]
    back = concat(read_txt(path, chunk_size=2, default_size=64))
    assert np.array_equal(back["key"], trace["key"])
    assert np.all(back["size"] == 64) and np.all(back["op"] == OP_GET)
    assert np.array_equal(back["ts"], np.arange(len(trace)))


def test_txt_string_keys_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("# a published trace\nuser:1\n\nuser:2\nuser:1\n42\n")
    back = concat(read_trace(path, "txt"))
    assert back["key"].tolist() == [key_to_id("user:1"), key_to_id("user:2"), key_to_id("user:1"), 42]
    assert key_to_id("user:1") == key_to_id("user:1") != key_to_id("user:2")


def test_csv_positional_published_layout(tmp_path: Path) -> None:
    # An MSR-like layout: Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime, no header.
    path = tmp_path / "msr.csv"
    path.write_text("128166372003061629,hm,1,Read,3154152960,4096,1\n"
                    "128166372016382155,hm,1,Write,3154152960,8192,2\n"
                    "128166372026382245,hm,1,Read,77,512,3\n")
    spec = CsvSpec.positional(key_col=4, time_col=0, size_col=5, op_col=3)
    back = concat(read_csv(path, spec))
    assert back["key"].tolist() == [3154152960, 3154152960, 77]
    assert back["size"].tolist() == [4096, 8192, 512]
    assert back["op"].tolist() == [OP_GET, OP_SET, OP_GET]


def test_csv_header_by_name_with_missing_optional_columns(tmp_path: Path) -> None:
    path = tmp_path / "k.csv"
    path.write_text("key,size\na,10\nb,20\na,10\n")
    back = concat(read_csv(path))
    assert back["key"].tolist() == [key_to_id("a"), key_to_id("b"), key_to_id("a")]
    assert back["size"].tolist() == [10, 20, 10]
    assert back["ts"].tolist() == [0.0, 1.0, 2.0]


def test_summarize_footprint_and_mix() -> None:
    trace = _sample()
    summary, keys, sizes = summarize(iter([trace[:4], trace[4:]]))
    assert summary.n_requests == 8 and summary.n_objects == 4
    assert keys.tolist() == [5, 7, 9, 11]
    assert sizes.tolist() == [100, 200, 60, 0]  # the largest size seen per object
    assert summary.footprint_bytes == 360
    assert (summary.n_reads, summary.n_writes, summary.n_deletes) == (5, 2, 1)


def test_unknown_format() -> None:
    with pytest.raises(ValueError):
        list(read_trace("x", "parquet"))
