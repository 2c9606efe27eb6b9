"""A Predis server without sockets: the real parser, batch loop, executor and store, driven by
calling ``Connection.data_received`` and ``Server.run_batch`` directly.

For tests that compare two in-process servers (tests/test_fastpath.py) and for
bench/request_path.py, which measures the request path's CPU without the kernel's share.
The event loop is a stand-in that drops scheduled callbacks: nothing runs between batches
unless the caller runs it.
"""
from __future__ import annotations

import time

from predis_server.config import Config
from predis_server.protocol.connection import Connection
from predis_server.server import Server


class NoLoop:
    def call_soon(self, *args):
        pass

    def call_later(self, *args):
        pass

    def time(self):
        return time.monotonic()


class BufferTransport:
    """Keeps what is written (``keep``), or only drops it (benchmarks)."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        if self.keep:
            self.written.append(data)

    def take(self) -> bytes:
        out = b"".join(self.written)
        self.written.clear()
        return out

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 40000) if name in ("peername", "sockname") else default

    def set_write_buffer_limits(self, **kwargs):
        pass

    def is_closing(self):
        return False

    def get_write_buffer_size(self):
        return 0

    def close(self):
        pass


def in_process_server(config: Config | None = None) -> Server:
    server = Server(config or Config())
    server.loop = NoLoop()
    return server


def connect(server: Server, keep: bool = True) -> tuple[Connection, BufferTransport]:
    transport = BufferTransport(keep)
    conn = Connection(server)
    conn.connection_made(transport)
    return conn, transport


def full_keyspace(policy: str = "allkeys-lru", keys: int = 200, value_bytes: int = 300):
    """An in-process keyspace (CPU store, fixed clock) holding ``keys`` values, its maxmemory
    set to what they use: the next store goes over. (keyspace, its db 0, its Stats)."""
    from gpu.cpu import NumpyStore
    from gpu.interface import EvictionPolicy
    from predis_server.keyspace import Keyspace
    from predis_server.stats import Stats

    stats = Stats()
    keyspace = Keyspace(1, NumpyStore, stats, clock=lambda: 1_000_000)
    keyspace.policy = EvictionPolicy(policy)
    db = keyspace.dbs[0]
    for i in range(keys):
        db.set(b"k%d" % i, b"v" * value_bytes)
    keyspace.maxmemory = keyspace.used_memory()
    return keyspace, db, stats
