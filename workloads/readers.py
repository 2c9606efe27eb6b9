"""Streaming trace readers: libCacheSim ``oracleGeneral`` binary, CSV and plain text.

Each reader yields chunks of :data:`workloads.trace.TRACE_DTYPE` of at most ``chunk_size``
requests, so multi-GB published traces (CloudPhysics, MSR, Twitter...) never sit in memory.
Non-numeric keys (text and CSV) are mapped to stable 64-bit ids with BLAKE2b, so the same
key always gets the same id across runs and tools.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workloads.trace import (
    CSV_HEADER,
    FORMATS,
    OP_CODES,
    OP_GET,
    ORACLE_GENERAL_DTYPE,
    TRACE_DTYPE,
    empty_chunk,
    format_from_path,
)

DEFAULT_CHUNK = 65536


def key_to_id(key: str) -> int:
    """A decimal key is its own id; any other key hashes to a stable uint64."""
    key = key.strip()
    if key.isdigit() and len(key) < 20:
        return int(key)
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


@dataclass(frozen=True)
class CsvSpec:
    """Where each field sits in a CSV trace. Columns are 0-based indexes or header names;
    ``None`` means absent (time falls back to the row number, size to ``default_size``, op to
    GET, tenant to 0). The default matches what :class:`workloads.trace.CsvTraceWriter` writes.
    """

    time_col: int | str | None = "timestamp"
    key_col: int | str = "key"
    size_col: int | str | None = "size"
    op_col: int | str | None = "op"
    tenant_col: int | str | None = "tenant"
    has_header: bool = True
    delimiter: str = ","
    default_size: int = 1

    @classmethod
    def positional(cls, key_col: int, time_col: int | None = None, size_col: int | None = None,
                   op_col: int | None = None, has_header: bool = False, delimiter: str = ",",
                   default_size: int = 1) -> CsvSpec:
        """A spec for a header-less published trace, e.g. ``positional(key_col=4, size_col=5)``."""
        return cls(time_col, key_col, size_col, op_col, None, has_header, delimiter, default_size)


def _resolve(col: int | str | None, header: list[str] | None) -> int | None:
    if col is None or isinstance(col, int):
        return col
    if isinstance(col, str) and col.isdigit():
        return int(col)
    if header is None:
        raise ValueError(f"CSV column {col!r} is named but the trace has no header")
    names = [h.strip().lower() for h in header]
    if col.lower() not in names:
        if col in CSV_HEADER and col != "key":
            return None  # optional field of our own layout that this file lacks
        raise ValueError(f"CSV column {col!r} not in header {header}")
    return names.index(col.lower())


def read_oracle_general(path: str | os.PathLike[str], chunk_size: int = DEFAULT_CHUNK) -> Iterator[np.ndarray]:
    """Stream an oracleGeneral file through a memory map. Records of size 0 are skipped, as
    libCacheSim's own reader does."""
    nbytes = Path(path).stat().st_size
    if nbytes % ORACLE_GENERAL_DTYPE.itemsize:
        raise ValueError(f"{path}: size {nbytes} is not a multiple of 24; not an oracleGeneral trace")
    n = nbytes // ORACLE_GENERAL_DTYPE.itemsize
    if n == 0:
        return
    mm = np.memmap(path, dtype=ORACLE_GENERAL_DTYPE, mode="r", shape=(n,))
    for start in range(0, n, chunk_size):
        rec = np.asarray(mm[start:start + chunk_size])
        rec = rec[rec["obj_size"] > 0]
        out = empty_chunk(len(rec))
        out["ts"] = rec["clock_time"]
        out["op"] = OP_GET
        out["key"] = rec["obj_id"]
        out["size"] = rec["obj_size"]
        yield out


def read_txt(path: str | os.PathLike[str], chunk_size: int = DEFAULT_CHUNK, default_size: int = 1) -> Iterator[np.ndarray]:
    """One key per line; blank lines and ``#`` comments are skipped. The request index is the
    timestamp and every request is a GET of ``default_size`` bytes."""
    keys: list[int] = []
    index = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            keys.append(key_to_id(line))
            if len(keys) >= chunk_size:
                yield _txt_chunk(keys, index, default_size)
                index += len(keys)
                keys = []
    if keys:
        yield _txt_chunk(keys, index, default_size)


def _txt_chunk(keys: list[int], start: int, size: int) -> np.ndarray:
    out = empty_chunk(len(keys))
    out["ts"] = np.arange(start, start + len(keys), dtype=np.float64)
    out["op"] = OP_GET
    out["key"] = np.array(keys, dtype=np.uint64)
    out["size"] = size
    return out


def read_csv(path: str | os.PathLike[str], spec: CsvSpec | None = None,
             chunk_size: int = DEFAULT_CHUNK) -> Iterator[np.ndarray]:
    """Stream a CSV trace laid out as ``spec`` says."""
    spec = spec or CsvSpec()
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter=spec.delimiter)
        header = next(reader, None) if spec.has_header else None
        if spec.has_header and header is None:
            return
        cols = {name: _resolve(getattr(spec, f"{name}_col"), header)
                for name in ("time", "key", "size", "op", "tenant")}
        if cols["key"] is None:
            raise ValueError("a CSV trace needs a key column")
        rows: list[list[str]] = []
        index = 0
        for row in reader:
            if not row or row[0].startswith("#"):
                continue
            rows.append(row)
            if len(rows) >= chunk_size:
                yield _csv_chunk(rows, cols, index, spec.default_size)
                index += len(rows)
                rows = []
        if rows:
            yield _csv_chunk(rows, cols, index, spec.default_size)


def _csv_chunk(rows: list[list[str]], cols: dict[str, int | None], start: int, default_size: int) -> np.ndarray:
    out = empty_chunk(len(rows))
    kc, tc, sc, oc, nc = cols["key"], cols["time"], cols["size"], cols["op"], cols["tenant"]
    out["key"] = np.array([key_to_id(r[kc]) for r in rows], dtype=np.uint64)
    out["ts"] = (np.array([float(r[tc]) for r in rows]) if tc is not None
                 else np.arange(start, start + len(rows), dtype=np.float64))
    out["size"] = np.array([int(float(r[sc])) for r in rows]) if sc is not None else default_size
    if oc is not None:
        out["op"] = np.array([OP_CODES.get(r[oc].strip().lower(), OP_GET) for r in rows], dtype=np.uint8)
    if nc is not None:
        out["tenant"] = np.array([int(r[nc] or 0) for r in rows])
    return out


def read_trace(path: str | os.PathLike[str], fmt: str | None = None, chunk_size: int = DEFAULT_CHUNK,
               csv_spec: CsvSpec | None = None, default_size: int = 1) -> Iterator[np.ndarray]:
    """Stream any supported trace; ``fmt`` defaults to a guess from the file name."""
    fmt = fmt or format_from_path(path)
    if str(path).endswith(".zst"):
        raise ValueError(f"{path}: zstd-compressed traces are not read directly; run `zstd -d` first")
    if fmt == "oracleGeneral":
        return read_oracle_general(path, chunk_size)
    if fmt == "csv":
        return read_csv(path, csv_spec, chunk_size)
    if fmt == "txt":
        return read_txt(path, chunk_size, default_size)
    raise ValueError(f"unknown trace format {fmt!r}; expected one of {', '.join(FORMATS)}")


@dataclass
class TraceSummary:
    """What one pass over a trace learns: request count, distinct objects, footprint (sum of
    each distinct object's size, its largest size seen) and the op mix."""

    n_requests: int
    n_objects: int
    footprint_bytes: int
    n_reads: int
    n_writes: int
    n_deletes: int


def summarize(chunks: Iterator[np.ndarray]) -> tuple[TraceSummary, np.ndarray, np.ndarray]:
    """One streaming pass; also returns the sorted distinct keys and their sizes (needed to seed
    an origin). Memory is O(distinct objects), as any footprint computation must be."""
    keys = np.empty(0, dtype=np.uint64)
    sizes = np.empty(0, dtype=np.uint32)
    n = reads = writes = deletes = 0
    for chunk in chunks:
        n += len(chunk)
        reads += int(np.count_nonzero(chunk["op"] == 0))
        writes += int(np.count_nonzero(chunk["op"] == 1))
        deletes += int(np.count_nonzero(chunk["op"] == 2))
        k = np.concatenate([keys, chunk["key"]])
        s = np.concatenate([sizes, chunk["size"]])
        order = np.lexsort((-s.astype(np.int64), k))  # per key, largest size first
        k, s = k[order], s[order]
        first = np.ones(len(k), dtype=bool)
        first[1:] = k[1:] != k[:-1]
        keys, sizes = k[first], s[first]
    summary = TraceSummary(n, len(keys), int(sizes.sum(dtype=np.int64)), reads, writes, deletes)
    return summary, keys, sizes


__all__ = [
    "TRACE_DTYPE",
    "CsvSpec",
    "TraceSummary",
    "key_to_id",
    "read_csv",
    "read_oracle_general",
    "read_trace",
    "read_txt",
    "summarize",
]
