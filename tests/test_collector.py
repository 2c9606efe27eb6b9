"""The access collector: ring buffer, key codes, sampling windows, NPZ export, a live server."""
from __future__ import annotations

import glob
import os
import time

import numpy as np
import pytest
import redis

from models.collector import COLUMNS, HIT, MISS, RAW_KEY_BYTES, AccessCollector, load_segments
from models.keycodes import key_codes
from servers import predis_process


def test_key_codes_are_stable_and_split_numeric_suffixes():
    h, p, s = key_codes([b"user:1001", b"user:1002", b"abc", b"", b"123", b"x:007"])
    assert s.tolist() == [1001, 1002, -1, -1, 123, 7]
    assert p[0] == p[1] and h[0] != h[1]
    again, _, _ = key_codes([b"user:1001"])
    assert again[0] == h[0]
    # A fixed value: the hash must not depend on the process (PYTHONHASHSEED).
    assert int(h[0]) == 16382374121440652809


def test_ring_buffer_wraps_and_keeps_the_newest():
    c = AccessCollector(capacity=16, sampling=1.0)
    ids = c.arrays["key_hash"].__array_interface__["data"][0]
    for i in range(5):
        c.record([(b"k%d" % (i * 10 + j), 0, HIT, j, 0) for j in range(7)], now=1000.0 + i)
    assert c.written == 35
    assert c.arrays["key_hash"].__array_interface__["data"][0] == ids  # allocated once
    recent = c.recent()
    assert len(recent["key_hash"]) == 16
    expected, _, _ = key_codes([b"k%d" % (i * 10 + j) for i in range(5) for j in range(7)][-16:])
    assert recent["key_hash"].tolist() == expected.tolist()
    assert recent["ts"][-1] == int(1004.0 * 1e6)


@pytest.mark.parametrize("decoder", ["c", "numpy"])
def test_short_keys_are_held_raw_and_read_with_their_codes(decoder, monkeypatch):
    """Recording copies a key of up to RAW_KEY_BYTES bytes into the code columns (no hashing);
    a longer key's codes are computed at once. Readers (recent, export) get every event's
    codes, models/keycodes.py's, from C's ring_codes or from NumPy."""
    from predis_server import fastpath

    if decoder == "c" and fastpath.native is None:
        pytest.skip("C fast path not built")
    if decoder == "numpy":
        monkeypatch.setattr(fastpath, "native", None)
    keys = [b"", b"a", b"7", b"x\x00", b"user:1001", b"12345678", b"key:000000012345", b"k" * 23 + b"9",
            b"ab" * 12, b"ab" * 12 + b"1", b"\xb5" * 20 + b"0042", b"z" * 70 + b"123", b"9" * 24, b"9" * 30]
    c = AccessCollector(capacity=64, sampling=1.0)
    c.record([(key, 0, HIT, i, 0) for i, key in enumerate(keys)], now=1000.0)
    raw_len = c.arrays["raw_len"][:len(keys)].tolist()
    assert raw_len == [len(k) + 1 if len(k) <= RAW_KEY_BYTES else 0 for k in keys]
    got = c.recent()
    want = key_codes(keys)
    assert got["key_hash"].tolist() == want[0].tolist()
    assert got["prefix_hash"].tolist() == want[1].tolist()
    assert got["suffix"].tolist() == want[2].tolist()
    assert set(got) == set(COLUMNS) and got["size"].tolist() == list(range(len(keys)))


def test_sampling_windows():
    c = AccessCollector(capacity=16, sampling=0.25, window_s=1.0)
    assert c.window_open(100.1) and not c.window_open(100.5)
    c.sampling = 0.0
    assert not c.window_open(100.1)


def test_export_segments_rotate_under_the_size_cap(tmp_path):
    c = AccessCollector(capacity=1000, sampling=1.0, export_dir=str(tmp_path))
    for round_ in range(6):
        c.record([(b"key:%d" % (round_ * 500 + j), 0, MISS, 10, 1) for j in range(500)], now=2000.0 + round_)
        first = c.export_once()
        assert first is not None
        c.export_max_bytes = int(2.5 * os.path.getsize(first))
    files = glob.glob(str(tmp_path / "access-*.npz"))
    assert 1 < len(files) < 6 and sum(os.path.getsize(f) for f in files) <= c.export_max_bytes
    merged = load_segments([str(tmp_path)])
    assert np.all(np.diff(merged["ts"]) >= 0) and set(merged["tenant"].tolist()) == {1}
    assert merged["suffix"][-1] == 2999


def test_live_server_records_and_exports(tmp_path):
    with predis_process("--collector-sampling", "1", "--collector-export-dir", str(tmp_path)) as server:
        r = redis.Redis(port=server.port)
        r.set("a", "xyz")
        for _ in range(10):
            r.get("a")
            r.get("b")
        r.mget("a", "b")
        info = r.info("prediction")
        assert info["collector_events"] == 22
    merged = load_segments([str(tmp_path)])  # the exporter flushes at shutdown
    assert len(merged["key_hash"]) == 22
    assert merged["outcome"].tolist()[:2] == [HIT, MISS] and merged["size"][0] == 3
    assert merged["op"][-1] == 1


def test_pipelined_gets_are_recorded_like_single_ones(tmp_path):
    """Pipelined GETs run in the fast loop (pipeline.py) while only the collector observes;
    each must still become one event with the hook's outcome and size."""
    with predis_process("--collector-sampling", "1", "--collector-export-dir", str(tmp_path)) as server:
        r = redis.Redis(port=server.port)
        r.set("a", "xyz")
        r.hset("h", "f", "v")
        pipe = r.pipeline(transaction=False)
        for key in ["a", "b", "a", "a", "a", "a", "b", "a"]:  # a run of 8: one get_many
            pipe.get(key)
        pipe.get("h")  # WRONGTYPE: no event, as for a single GET
        pipe.get("a")
        pipe.get("b")
        replies = pipe.execute(raise_on_error=False)
        assert replies[:8] == [b"xyz", None, b"xyz", b"xyz", b"xyz", b"xyz", None, b"xyz"]
        assert isinstance(replies[8], redis.ResponseError) and replies[9:] == [b"xyz", None]
        assert r.info("prediction")["collector_events"] == 10
    merged = load_segments([str(tmp_path)])
    assert merged["outcome"].tolist() == [HIT, MISS, HIT, HIT, HIT, HIT, MISS, HIT, HIT, MISS]
    assert merged["size"].tolist() == [3, 0, 3, 3, 3, 3, 0, 3, 3, 0]


def test_sampling_zero_leaves_get_unhooked():
    with predis_process("--collector-sampling", "0") as server:
        r = redis.Redis(port=server.port)
        for _ in range(20):
            r.get("a")
        time.sleep(0.05)
        assert r.info("prediction")["collector_events"] == 0


def test_export_drops_events_overwritten_while_it_copied(tmp_path, monkeypatch):
    """C runs write into the ring without the collector's lock while an exporter's copy has
    let the GIL go: events they overwrote in that time are left out of the segment (and
    counted as dropped), never exported with another event's fields; the rest are intact."""
    c = AccessCollector(capacity=16, sampling=1.0, export_dir=str(tmp_path))
    c.record([(b"old%d" % i, 0, HIT, i, 0) for i in range(12)], now=1000.0)  # sizes 0..11
    copy = c._slice

    def copy_while_c_writes(begin: int, end: int) -> dict:
        c.arrays["size"][[12, 13, 14, 15, 0, 1, 2]] = 99  # 7 events written meanwhile: 3 overwritten
        c.written += 7
        return copy(begin, end)

    monkeypatch.setattr(c, "_slice", copy_while_c_writes)
    segment = c.export_once()
    monkeypatch.undo()
    with np.load(segment) as data:
        assert data["size"].tolist() == list(range(3, 12))
    assert c.export_dropped == 3 and c.exported_upto == 12
    # recent() likewise: the last 10 of 19 events, less the 2 that 8 writes during its copy
    # overwrote (positions 3..10: events 19..26 in place of 3..10, of which it wanted 9 and 10)

    def copy_while_c_writes_more(begin: int, end: int) -> dict:
        c.arrays["size"][3:11] = 77
        c.written += 8
        return copy(begin, end)

    monkeypatch.setattr(c, "_slice", copy_while_c_writes_more)
    assert c.recent(10)["size"].tolist() == [11, 99, 99, 99, 99, 99, 99, 99]
