"""The keyspace's containers stay out of the cyclic GC's passes (predis_server/gc_policy.py)."""
from __future__ import annotations

import gc
import importlib

import pytest
from inprocess import in_process_server

from predis_server.gc_policy import freeze_start_up_objects


def _tracked(obj) -> bool:
    """Whether a collection would walk ``obj`` (frozen objects are not in any generation)."""
    return any(o is obj for o in gc.get_objects())


@pytest.mark.parametrize("store_class", ["gpu.cpu:NumpyStore", "gpu.cuda:ArenaStore"])
def test_a_store_keeps_its_containers_for_life(store_class):
    """FLUSHALL empties the store's index, key list, values and free slots in place: the
    objects frozen at start-up are the ones the store goes on filling."""
    module, name = store_class.split(":")
    store = getattr(importlib.import_module(module), name)()
    for i in range(50):
        store.set(b"k%d" % i, b"v%d" % i, 0)
    store.set(b"h", {b"f": b"v"}, 0)
    store.delete(b"k3")
    containers = (store._index, store._keys, store._values, store._free)
    assert all(len(c) for c in containers)
    store.clear()
    assert not any(len(c) for c in containers)
    assert all(a is b for a, b in zip(containers, (store._index, store._keys, store._values, store._free)))
    store.set(b"again", b"1", 0)
    assert store.get(b"again", 0) == b"1" and store.get(b"k1", 0) is None and len(store) == 1


def test_start_up_objects_are_frozen_and_stay_so_through_flushall():
    """After the freeze no collection walks the stores' key lists, however many keys come
    later and after FLUSHALL; objects made later are still collected."""
    server = in_process_server()
    store = server.keyspace.dbs[0].store
    try:
        assert _tracked(store._keys)
        assert freeze_start_up_objects() > 0
        assert not _tracked(store._keys) and not _tracked(server.keyspace.dbs[15].store._keys)
        for i in range(1000):
            store.set(b"key:%d" % i, b"x" * 10, 0)
        server.keyspace.dbs[0].flush()
        store.set(b"after", b"flush", 0)
        assert not _tracked(store._keys) and len(store) == 1
        made_later = [[]]
        made_later[0].append(made_later)  # a cycle made after the freeze
        assert _tracked(made_later)
    finally:
        gc.unfreeze()  # the test process's objects back in the generations


def test_the_gc_pause_bench_runs_and_reports_each_state(tmp_path):
    """bench/gc_pause.py (the README's figure): a small store, its three states written out."""
    import json
    import os
    import subprocess
    import sys

    root = os.path.join(os.path.dirname(__file__), "..")
    subprocess.run([sys.executable, os.path.join(root, "bench", "gc_pause.py"), "--keys", "2000", "--repeats", "2",
                    "--out", str(tmp_path)], check=True, capture_output=True, timeout=120)
    report = json.loads((tmp_path / "gc_pause.json").read_text())
    assert report["keys"] == 2000 and report["frozen_objects"] > 0
    for state in ("empty_store_ms", "full_store_frozen_ms", "full_store_not_frozen_ms"):
        assert len(report[state]) == 2 and all(ms >= 0 for ms in report[state])
    assert "bench/gc_pause.py" in (tmp_path / "gc_pause.md").read_text()
