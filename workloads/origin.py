"""The origin a replay reads on a cache miss: a SQLite file with an injected delay to model a
slow database.

Table ``kv(key BLOB PRIMARY KEY, value BLOB)``. The same file serves both modes: the client
reads it itself in cache-aside mode, and a Predis server configured with
``origin sqlite:///PATH`` reads it in read-through mode.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB)"
_PATTERN = bytes(range(33, 127)) * ((1 << 16) // 94 + 1)


def key_bytes(obj_id: int, prefix: bytes = b"") -> bytes:
    """The Redis key of an object id: the prefix then the decimal id."""
    return prefix + b"%d" % obj_id


def value_bytes(obj_id: int, size: int) -> bytes:
    """A deterministic printable value of ``size`` bytes for ``obj_id`` (its id, then a pattern),
    so a test can tell values apart and check their length."""
    head = b"%d:" % obj_id
    if size <= len(head):
        return head[:size]
    body = size - len(head)
    reps, rest = divmod(body, len(_PATTERN))
    return head + _PATTERN * reps + _PATTERN[:rest]


class SqliteOrigin:
    """Thread-safe SQLite origin with an optional injected read/write latency.

    Each thread reads through its own connection; writes go through one shared connection
    under a lock and are committed in batches (WAL mode lets readers run meanwhile).
    """

    def __init__(self, path: str | os.PathLike[str], latency_ms: float = 0.0, key_prefix: bytes = b"",
                 commit_every: int = 256) -> None:
        self.path = Path(path)
        self.commit_every = max(1, commit_every)
        self.latency_s = latency_ms / 1000.0
        self.key_prefix = key_prefix
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._pending_writes = 0
        with sqlite3.connect(self.path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(SCHEMA)
        self._writer = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
        self._writer.execute("PRAGMA synchronous=OFF")
        self.reads = 0
        self.read_bytes = 0
        self.writes = 0
        self._count_lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
            conn.execute("PRAGMA synchronous=OFF")
            self._local.conn = conn
        return conn

    def seed(self, keys: np.ndarray, sizes: np.ndarray, batch: int = 5000) -> int:
        """Replace the table's content with one value per key, of the trace's size."""
        conn = sqlite3.connect(self.path)
        try:
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("DELETE FROM kv")
            for start in range(0, len(keys), batch):
                rows = [(key_bytes(k, self.key_prefix), value_bytes(k, s))
                        for k, s in zip(keys[start:start + batch].tolist(), sizes[start:start + batch].tolist())]
                conn.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", rows)
            conn.commit()
        finally:
            conn.close()
        return len(keys)

    def get(self, key: bytes) -> bytes | None:
        """Read one value, after the injected delay."""
        if self.latency_s:
            time.sleep(self.latency_s)
        row = self._conn().execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        value = None if row is None else bytes(row[0])
        with self._count_lock:
            self.reads += 1
            self.read_bytes += len(value) if value is not None else 0
        return value

    def put(self, key: bytes, value: bytes) -> None:
        """Write one value (an application's update), after the injected delay."""
        if self.latency_s:
            time.sleep(self.latency_s)
        with self._write_lock:
            self._writer.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))
            self._pending_writes += 1
            self.writes += 1
            if self._pending_writes >= self.commit_every:
                self._writer.commit()
                self._pending_writes = 0

    def delete(self, key: bytes) -> None:
        with self._write_lock:
            self._writer.execute("DELETE FROM kv WHERE key = ?", (key,))
            self._pending_writes += 1
            if self._pending_writes >= self.commit_every:
                self._writer.commit()
                self._pending_writes = 0

    def flush(self) -> None:
        with self._write_lock:
            self._writer.commit()
            self._pending_writes = 0

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM kv").fetchone()[0])

    def first_keys(self, n: int) -> Iterable[bytes]:
        return [bytes(r[0]) for r in self._conn().execute("SELECT key FROM kv LIMIT ?", (n,))]

    def close(self) -> None:
        self.flush()
        self._writer.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
