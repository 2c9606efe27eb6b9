"""The GPU store's start-up warm-up (gpu/cuda.py CupyStore runs it once per process)."""
from __future__ import annotations

import numpy as np

from .cuda import BIG_VALUE, ArenaStore
from .interface import EvictionPolicy


def warm_up(store: ArenaStore) -> None:
    """Every device path once on an empty scratch ``store``: new keys of many size classes
    (slot arrays, region mirror and index grow, the table is rebuilt), a sync, overwrites
    into other size classes, a hash, a big value, deletes (index removals), another sync,
    packed lookups and gathers (host and device results), and bulk eviction scoring. CuPy compiles (or loads from its disk cache) the
    kernels behind fancy indexing, casts and reductions on their first use, and the first
    pinned upload buffer is an allocation: in a fresh process that is about half a second
    of CPU the first clients' writes would pay (bench/results/store/store_bench.md)."""
    keys = [b"warm-up:%d" % i for i in range(600)]
    for i, key in enumerate(keys):
        store.set(key, b"v" * (i % 300), 0)
    store.sync()
    for key in keys[:200]:
        store.set(key, b"w" * 500, 0)
    store.set(b"warm-up:hash", {b"field": b"value"}, 0)
    store.set(b"warm-up:big", b"b" * BIG_VALUE, 0)
    for key in keys[200:300]:
        store.delete(key)
    store.sync()
    packed = b"".join(keys[300:400])
    lengths = np.array([len(k) for k in keys[300:400]], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    store.get_many_packed(np.frombuffer(packed, dtype=np.uint8), offsets, lengths, 0)
    xp = store.xp
    store.gather_device(store.lookup_packed(xp.asarray(np.frombuffer(packed, dtype=np.uint8)),
                                            xp.asarray(offsets), xp.asarray(lengths)))
    store.evict(300, EvictionPolicy.ALLKEYS_LRU, 5, 1)
    store.clear()
