"""Command coalescing for stores that work in batches (the GPU store).

``Server.run_batch`` runs the commands of every connection that became ready in one
event-loop tick, in arrival order, each seeing the effects of all before it (Redis's
single-threaded semantics). Reads are served from the store's host copy; writes mark the
pages they touch and reach the device together: ``end_tick`` lets each database's store copy
its dirty pages once the oldest change is old enough (``ArenaStore.flush``), so one sync
carries the writes of every connection and pipeline of many ticks.

Stores without ``flush`` (the CPU store) are skipped at no cost. Nothing waits for a timer:
a single command on an idle server is one batch of one, answered at once.
"""
from __future__ import annotations


def wants_coalescing(keyspace) -> bool:
    """True when the keyspace's store backend takes its writes in batches (and then has
    ``flush`` and ``staged_since``, as gpu/cuda.py ArenaStore)."""
    return hasattr(keyspace.backend, "flush")


def end_tick(keyspace, interval_s: float | None = None) -> None:
    """After the tick's replies: changed pages go to the device, once per store. A store with
    nothing to copy (``staged_since`` 0) costs one property read: at -P 1 a tick is a few
    requests, and sixteen flush() calls a tick were a visible share of them."""
    for store in keyspace.stores:
        if store.staged_since:
            store.flush(interval_s)
