"""Command coalescing for stores that work in batches (the GPU store).

``Server.run_batch`` runs the commands of every connection that became ready in one
event-loop tick. For a store whose single-key reads are costly (each one a device round
trip), ``coalesce_reads`` looks at the whole batch first and asks each database's store to
``prefetch`` the keys of plain GET/MGET commands: one gather kernel and one copy instead of
one copy per key. The prefetch is only a cache inside the store; the commands still run one
after the other in arrival order, and every write to a key drops its prefetched value, so a
GET after a SET in the same batch sees the SET (Redis's single-threaded semantics hold).
``end_tick`` then pushes the tick's staged writes to the device and drops the cache.

Stores without ``prefetch``/``flush`` (the CPU store) are skipped at no cost. Nothing waits
for a timer: a single command on an idle server is one batch of one.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_SINGLE_KEY_READS = {b"get", b"getex", b"strlen", b"getrange", b"substr", b"getdel"}


def wants_coalescing(keyspace) -> bool:
    """True when the keyspace's store backend gathers reads in batches."""
    return hasattr(keyspace.backend, "prefetch")


def read_keys(commands: Iterable[Any]) -> list[bytes]:
    """Keys the plain string reads of one connection's commands will look up."""
    keys: list[bytes] = []
    for argv in commands:
        if type(argv) is not list or len(argv) < 2:
            continue
        name = argv[0].lower()
        if name == b"mget":
            keys.extend(argv[1:])
        elif name in _SINGLE_KEY_READS:
            keys.append(argv[1])
    return keys


def coalesce_reads(pending: list[tuple[Any, list[Any]]]) -> None:
    """Prefetch, per database, the keys every GET/MGET in this batch will read.

    A connection that SELECTs another database mid-batch reads from a database it was not
    prefetched for; that read simply goes to the device on its own (the cache is advisory).
    """
    by_store: dict[int, tuple[Any, list[bytes]]] = {}
    for conn, commands in pending:
        client = conn.client
        if client is None:
            continue
        keys = read_keys(commands)
        if keys:
            store = client.db.store
            entry = by_store.setdefault(id(store), (store, []))
            entry[1].extend(keys)
    for store, keys in by_store.values():
        prefetch = getattr(store, "prefetch", None)
        if prefetch is not None:
            prefetch(keys)


def end_tick(keyspace) -> None:
    """After the batch: staged writes go to the device in one upload per store."""
    for db in keyspace.dbs:
        flush = getattr(db.store, "flush", None)
        if flush is not None:
            flush()
