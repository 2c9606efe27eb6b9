"""The access-trace record and its writers.

A trace is a stream of requests. In memory it travels as chunks: NumPy structured arrays of
:data:`TRACE_DTYPE`, so generators, readers and the replay client never hold a whole trace.

Three on-disk formats are written (and read back by :mod:`workloads.readers`):

``txt``
    one key per line (the key is the decimal object id); ops, sizes and times are lost.
``csv``
    ``timestamp,op,key,size,tenant`` with a header line.
``oracleGeneral``
    libCacheSim's binary format: packed little-endian records of 24 bytes,
    ``uint32 clock_time, uint64 obj_id, uint32 obj_size, int64 next_access_vtime``
    (see libCacheSim ``traceReader/customizedReader/oracle/oracleGeneralBin.h``). The clock is
    whole seconds; ``next_access_vtime`` is the index of the object's next request, ``-1`` if
    none. Ops are lost (libCacheSim treats every record as a read).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

TRACE_DTYPE = np.dtype(
    [("ts", "<f8"), ("op", "u1"), ("key", "<u8"), ("size", "<u4"), ("tenant", "<u2")]
)
"""One request: time in seconds, op code, object id, value size in bytes, tenant id."""

OP_GET, OP_SET, OP_DEL = 0, 1, 2
OP_NAMES = {OP_GET: "get", OP_SET: "set", OP_DEL: "del"}
OP_CODES = {"get": OP_GET, "read": OP_GET, "set": OP_SET, "write": OP_SET, "del": OP_DEL, "delete": OP_DEL}

ORACLE_GENERAL_DTYPE = np.dtype(
    [("clock_time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"), ("next_access_vtime", "<i8")]
)
assert ORACLE_GENERAL_DTYPE.itemsize == 24, "oracleGeneral records are packed 24-byte structs"

FORMATS = ("txt", "csv", "oracleGeneral")
CSV_HEADER = ("timestamp", "op", "key", "size", "tenant")


def empty_chunk(n: int) -> np.ndarray:
    """A zeroed chunk of ``n`` requests."""
    return np.zeros(n, dtype=TRACE_DTYPE)


def make_chunk(
    ts: np.ndarray, op: np.ndarray | int, key: np.ndarray, size: np.ndarray, tenant: np.ndarray | int = 0
) -> np.ndarray:
    """Assemble a chunk from column arrays (scalars broadcast)."""
    out = empty_chunk(len(key))
    out["ts"], out["op"], out["key"], out["size"], out["tenant"] = ts, op, key, size, tenant
    return out


def format_from_path(path: str | os.PathLike[str]) -> str:
    """Guess a trace format from the file name: ``.csv``, ``.txt``, else oracleGeneral for
    ``.oracleGeneral``/``.bin``/``.zst``-less binary names."""
    name = str(path).lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".oraclegeneral", ".oraclegeneral.bin", ".bin")):
        return "oracleGeneral"
    return "txt"


class TraceWriter(Protocol):
    def write(self, chunk: np.ndarray) -> None: ...

    def close(self) -> None: ...


class TxtTraceWriter:
    """One decimal key per line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._f = open(path, "w", encoding="ascii", newline="\n")  # noqa: SIM115 - closed by close()

    def write(self, chunk: np.ndarray) -> None:
        if len(chunk):
            self._f.write("\n".join(map(str, chunk["key"].tolist())))
            self._f.write("\n")

    def close(self) -> None:
        self._f.close()


class CsvTraceWriter:
    """``timestamp,op,key,size,tenant`` with a header; timestamps to the microsecond."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._f = open(path, "w", encoding="ascii", newline="")  # noqa: SIM115 - closed by close()
        self._w = csv.writer(self._f, lineterminator="\n")
        self._w.writerow(CSV_HEADER)

    def write(self, chunk: np.ndarray) -> None:
        buf = io.StringIO()
        ops = [OP_NAMES.get(o, "get") for o in chunk["op"].tolist()]
        for ts, op, key, size, tenant in zip(
            chunk["ts"].tolist(), ops, chunk["key"].tolist(), chunk["size"].tolist(), chunk["tenant"].tolist()
        ):
            buf.write(f"{ts:.6f},{op},{key},{size},{tenant}\n")
        self._f.write(buf.getvalue())

    def close(self) -> None:
        self._f.close()


class OracleGeneralTraceWriter:
    """libCacheSim ``oracleGeneral`` binary writer.

    Records are appended with ``next_access_vtime = -1``; :meth:`close` then fills in the next
    access of every request with one backward pass over the file in chunks (the future is only
    known at the end), keeping one sorted array of the distinct keys seen so far.
    Zero-sized requests are written with size 1 because libCacheSim's reader skips size 0.
    """

    def __init__(self, path: str | os.PathLike[str], fix_chunk: int = 1 << 20) -> None:
        self._path = Path(path)
        self._f = open(self._path, "wb")  # noqa: SIM115 - closed by close()
        self._n = 0
        self._fix_chunk = fix_chunk

    def write(self, chunk: np.ndarray) -> None:
        rec = np.empty(len(chunk), dtype=ORACLE_GENERAL_DTYPE)
        rec["clock_time"] = np.clip(chunk["ts"], 0, np.iinfo(np.uint32).max).astype(np.uint32)
        rec["obj_id"] = chunk["key"]
        rec["obj_size"] = np.maximum(chunk["size"], 1)
        rec["next_access_vtime"] = -1
        rec.tofile(self._f)
        self._n += len(chunk)

    def close(self) -> None:
        self._f.close()
        if self._n:
            fill_next_access_vtime(self._path, self._n, self._fix_chunk)


def fill_next_access_vtime(path: Path, n: int, chunk: int = 1 << 20) -> None:
    """Rewrite ``next_access_vtime`` in place for an oracleGeneral file of ``n`` records."""
    mm = np.memmap(path, dtype=ORACLE_GENERAL_DTYPE, mode="r+", shape=(n,))
    known_keys = np.empty(0, dtype=np.uint64)  # sorted keys seen after the current chunk
    known_next = np.empty(0, dtype=np.int64)  # their first position after the current chunk
    for end in range(n, 0, -chunk):
        start = max(0, end - chunk)
        keys = np.asarray(mm["obj_id"][start:end])
        pos = np.arange(start, end, dtype=np.int64)
        order = np.lexsort((pos, keys))  # by key, then position
        k_sorted, p_sorted = keys[order], pos[order]
        nxt = np.full(len(keys), -1, dtype=np.int64)
        same = k_sorted[1:] == k_sorted[:-1]
        nxt_sorted = np.full(len(keys), -1, dtype=np.int64)
        nxt_sorted[:-1][same] = p_sorted[1:][same]
        # The last occurrence of a key in this chunk looks for it in later chunks.
        last = np.ones(len(keys), dtype=bool)
        last[:-1] = ~same
        if len(known_keys):
            idx = np.searchsorted(known_keys, k_sorted[last])
            idx_c = np.minimum(idx, len(known_keys) - 1)
            hit = known_keys[idx_c] == k_sorted[last]
            vals = np.where(hit, known_next[idx_c], -1)
            nxt_sorted[last] = vals
        nxt[order] = nxt_sorted
        mm["next_access_vtime"][start:end] = nxt
        # First occurrence in this chunk becomes the "next" seen by earlier chunks.
        first = np.ones(len(keys), dtype=bool)
        first[1:] = ~same
        merged_k = np.concatenate([k_sorted[first], known_keys])
        merged_v = np.concatenate([p_sorted[first], known_next])
        known_keys, uidx = np.unique(merged_k, return_index=True)  # first index wins: this chunk
        known_next = merged_v[uidx]
    mm.flush()
    del mm


def open_writer(path: str | os.PathLike[str], fmt: str) -> TraceWriter:
    """A writer for ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "txt":
        return TxtTraceWriter(path)
    if fmt == "csv":
        return CsvTraceWriter(path)
    if fmt == "oracleGeneral":
        return OracleGeneralTraceWriter(path)
    raise ValueError(f"unknown trace format {fmt!r}; expected one of {', '.join(FORMATS)}")


def write_trace(chunks: Iterable[np.ndarray], path: str | os.PathLike[str], fmt: str) -> int:
    """Stream ``chunks`` to ``path`` in ``fmt``; returns the number of requests written."""
    writer = open_writer(path, fmt)
    n = 0
    try:
        for chunk in chunks:
            writer.write(chunk)
            n += len(chunk)
    finally:
        writer.close()
    return n


def concat(chunks: Iterable[np.ndarray]) -> np.ndarray:
    """Materialise a (small) trace; for tests and small tools only."""
    parts = list(chunks)
    return np.concatenate(parts) if parts else empty_chunk(0)


def rechunk(chunks: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Re-cut a chunk stream into chunks of exactly ``size`` (the last may be shorter)."""
    pending: list[np.ndarray] = []
    have = 0
    for chunk in chunks:
        pending.append(chunk)
        have += len(chunk)
        while have >= size:
            buf = np.concatenate(pending)
            yield buf[:size]
            rest = buf[size:]
            pending, have = ([rest] if len(rest) else []), len(rest)
    if have:
        yield np.concatenate(pending)
