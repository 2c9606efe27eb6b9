"""Keep the keyspace's long-lived containers out of CPython's cyclic garbage collector.

Every store keeps all its keys in one list (``NumpyStore._keys``), and the collector walks
every tracked container on each full collection (``bench/gc_pause.py``: 22.7 ms with a million keys on the dev VM),
and full collections come often under load (each command's short-lived tuples and lists count
towards them). Freezing what is alive once the server has started (``gc.freeze``: the permanent
generation, which collections skip) takes the databases' stores and their containers, the
modules and the configuration out of every later collection, however large the stores grow:
the stores keep those container objects for life (``NumpyStore._alloc`` clears them in place
on FLUSHALL). Objects made later (connections, replies, values) are collected as before.
``bench/results/store/gc_freeze_local.md`` measures it with ``bench/side_by_side.py``.

Only the process's start-up is frozen: freezing later would also freeze live objects that
become cyclic garbage afterwards (a closed connection), which would then never be freed.
"""
from __future__ import annotations

import gc


def freeze_start_up_objects() -> int:
    """Collect once, then move every object alive now to the permanent generation; how many
    objects are frozen in all."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
