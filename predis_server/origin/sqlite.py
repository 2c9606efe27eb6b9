"""The embedded default origin: a SQLite file with table ``kv(key BLOB PRIMARY KEY, value BLOB)``.

Each worker thread opens its own read-only connection (SQLite connections are not shared
across threads); WAL mode lets an application keep writing the file meanwhile.
"""
from __future__ import annotations

import os
import sqlite3
import threading
from urllib.parse import SplitResult

from .base import Origin, OriginError

SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB)"


class SqliteOrigin(Origin):
    blocking = True

    def __init__(self, parts: SplitResult) -> None:
        # sqlite:///abs/path -> path "/abs/path"; sqlite://rel/path -> "rel/path"
        self.path = (parts.netloc + parts.path) if parts.netloc else parts.path
        if not self.path:
            raise ValueError("sqlite origin needs a path: sqlite:///path/to/origin.db")
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        with sqlite3.connect(self.path) as conn:
            conn.execute(SCHEMA)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def get(self, key: bytes) -> bytes | None:
        try:
            row = self._conn().execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise OriginError(f"sqlite: {exc}") from exc
        if row is None or row[0] is None:
            return None
        value = row[0]
        if type(value) is bytes:
            return value
        if isinstance(value, (int, float, str)):  # rows written with a text or number value
            return str(value).encode()
        return bytes(value)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
