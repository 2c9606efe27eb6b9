"""The GPU store's device layout (gpu/cuda.py, gpu/mirror.py): the hash index and its full-key
verification, device out-of-memory, the page mirror's syncs, copies and growth.

``arena`` is that layout on NumPy arrays with the kernels emulated (CI); ``gpu`` the real CuPy
store (marked ``gpu``, skipped without CUDA). The backend-independent store tests are in
test_store.py.
"""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from gpu.interface import StoreFull
from tests.test_store import NOW, make_store


@pytest.fixture(params=["arena", pytest.param("gpu", marks=pytest.mark.gpu)])
def device_store(request):
    return make_store(request.param)


# -- the device layout: index, verification, out-of-memory --------------------------------
def _packed(keys):
    lens = np.array([len(k) for k in keys], dtype=np.int64)
    offs = np.zeros(len(keys), dtype=np.int64)
    np.cumsum(lens[:-1], out=offs[1:])
    return np.frombuffer(b"".join(keys), dtype=np.uint8), offs, lens


def test_packed_lookup_through_the_device_index(device_store):
    keys = [b"key:%013d" % i for i in range(3000)]
    device_store.set_many(keys, [b"value-%d" % i for i in range(3000)], NOW)
    device_store.delete_many(keys[:1000])  # tombstones in the probe chains
    device_store.set(b"hash", {b"f": b"v"}, NOW)
    query = keys[900:1100] + [b"missing", b"hash"]
    slots, buf, offs = device_store.get_many_packed(*_packed(query), NOW)
    got = [buf[offs[i]: offs[i + 1]].tobytes() if slots[i] >= 0 else None for i in range(len(query))]
    assert got[:100] == [None] * 100
    assert got[100:200] == [b"value-%d" % i for i in range(1000, 1100)]
    assert slots[200] == -1 and slots[201] >= 0 and got[201] == b""


def test_hash_collision_never_returns_the_wrong_key(device_store):
    from gpu.kernels import host_key_hash

    device_store.set(b"stored", b"secret", NOW)
    device_store.sync()
    xp = device_store.xp
    slot = device_store._index[b"stored"]
    forged = host_key_hash(b"other")  # make the stored entry look like b"other"'s hash
    device_store.t_slot[:] = -1
    pos = forged & (device_store.t_slot.size - 1)
    device_store.t_slot[pos] = slot
    device_store.t_hash[pos] = xp.uint64(forged)
    slots, _, _ = device_store.get_many_packed(*_packed([b"other"]), NOW)
    assert slots.tolist() == [-1]


def test_device_oom_fails_only_the_write(device_store, monkeypatch):
    device_store.set(b"kept", b"safe", NOW)
    device_store.sync()

    def no_memory(nbytes):
        raise StoreFull("device memory exhausted")

    monkeypatch.setattr(device_store.arena, "_allocate", no_memory)
    with pytest.raises(StoreFull):
        device_store.set(b"huge", b"x" * (8 << 20), NOW)
    with pytest.raises(StoreFull):
        device_store.set(b"kept", b"y" * (8 << 20), NOW)
    assert device_store.get(b"kept", NOW) == b"safe"
    assert device_store.get(b"huge", NOW) is None and len(device_store) == 1


def test_writes_reach_the_device_in_one_sync_and_reads_stay_on_the_host(device_store, monkeypatch):
    from types import SimpleNamespace

    import gpu.cuda
    from predis_server.batching import end_tick

    keys = [b"p%d" % i for i in range(100)]
    device_store.set_many(keys, [b"v%d" % i for i in range(100)], NOW)  # synced at once
    syncs = []
    real_sync = device_store.sync
    monkeypatch.setattr(device_store, "sync", lambda: (syncs.append(1), real_sync()))
    block = int(device_store.value_loc[device_store._index[b"p2"]])
    device_store.set(b"p2", b"chg", NOW)  # same size class as b"v2": same packed block
    device_store.set(b"p3", b"x" * 300, NOW)  # another class: a new block
    device_store.delete(b"p4")
    device_store.set(b"new", b"fresh", NOW)
    assert int(device_store.value_loc[device_store._index[b"p2"]]) == block
    # single reads come from the host copy: no device work
    assert device_store.get(b"p2", NOW) == b"chg"
    assert device_store.get_many([b"p1", b"p3", b"p4", b"new"], NOW) == [b"v1", b"x" * 300, None, b"fresh"]
    assert syncs == []
    ticks = SimpleNamespace(dbs=[SimpleNamespace(store=device_store)], stores=(device_store,))
    monkeypatch.setattr(gpu.cuda, "SYNC_INTERVAL_S", 3600.0)
    end_tick(ticks)  # too soon: the writes wait for more
    assert syncs == []
    monkeypatch.setattr(gpu.cuda, "SYNC_INTERVAL_S", 0.0)
    end_tick(ticks)  # one sync carries every change
    assert len(syncs) == 1
    query = [b"p1", b"p2", b"p3", b"p4", b"new"]
    slots, buf, offs = device_store.get_many_packed(*_packed(query), NOW)  # the device copy
    got = [buf[offs[i]: offs[i + 1]].tobytes() if slots[i] >= 0 else None for i in range(len(query))]
    assert got == [b"v1", b"chg", b"x" * 300, None, b"fresh"]


def test_the_servers_sync_interval_decides_when_a_tick_syncs(device_store, monkeypatch):
    """end_tick passes gpu-sync-interval (seconds) to the store: changes younger than it wait
    for a later tick, older ones are synced; the module default applies without one."""
    from types import SimpleNamespace

    import gpu.cuda
    from predis_server.batching import end_tick

    syncs = []
    real_sync = device_store.sync
    monkeypatch.setattr(device_store, "sync", lambda: (syncs.append(1), real_sync()))
    ticks = SimpleNamespace(stores=(device_store,))
    device_store.set(b"k", b"v", NOW)
    end_tick(ticks, 3600.0)
    assert syncs == [] and device_store.staged_since
    end_tick(ticks, 0.0)
    assert syncs == [1] and not device_store.staged_since
    device_store.set(b"k", b"w", NOW)
    monkeypatch.setattr(gpu.cuda, "SYNC_INTERVAL_S", 3600.0)
    end_tick(ticks)
    assert syncs == [1]


def test_a_tick_with_only_deletes_still_reaches_the_device(device_store, monkeypatch):
    """The end of a tick looks only at ``staged_since``: a delete (an index removal, nothing
    to upload) must set it too, or the device index would keep the key until a device read."""
    from types import SimpleNamespace

    import gpu.cuda
    from predis_server.batching import end_tick

    device_store.set_many([b"gone", b"kept"], [b"1", b"2"], NOW)  # synced at once
    assert not device_store.staged_since
    device_store.delete(b"gone")
    assert device_store.staged_since
    monkeypatch.setattr(gpu.cuda, "SYNC_INTERVAL_S", 0.0)
    syncs = []
    real_sync = device_store.sync
    monkeypatch.setattr(device_store, "sync", lambda: (syncs.append(1), real_sync()))
    end_tick(SimpleNamespace(stores=(device_store,)))
    assert syncs == [1] and not device_store.staged_since
    t_slot = device_store._to_host(device_store.t_slot)
    assert t_slot[t_slot >= 0].tolist() == [device_store._index[b"kept"]]


def test_a_small_write_that_needs_device_memory_fails_alone(device_store, monkeypatch):
    """The packed region's device mirror grows before a write takes space beyond it: when the
    device cannot grow it, the new key's SET gets StoreFull and nothing changes, nothing is
    marked for the device, and writes that need no new space still work."""
    from gpu.slabs import TOP

    device_store.set(b"kept", b"safe", NOW)
    device_store.sync()
    slabs, mirror = device_store._slabs, device_store.mirror
    slabs.state[TOP] = mirror.capacity // 4 - 8  # the mirror is all but full
    state = slabs.state.copy()
    monkeypatch.setattr(device_store.arena, "_allocate", lambda nbytes: (_ for _ in ()).throw(StoreFull("no room")))
    with pytest.raises(StoreFull):
        device_store.set(b"new", b"v" * 100, NOW)
    with pytest.raises(StoreFull):
        device_store.set(b"kept", b"w" * 300, NOW)  # another size class: a new block too
    assert device_store.get(b"new", NOW) is None and device_store.get(b"kept", NOW) == b"safe"
    assert len(device_store) == 1 and not device_store.staged_since and (slabs.state == state).all()
    device_store.set(b"kept", b"same", NOW)  # the same size class needs no space: it works
    slots, buf, offs = device_store.get_many_packed(*_packed([b"kept", b"new"]), NOW)
    assert buf[offs[0]: offs[1]].tobytes() == b"same" and slots[1] == -1


def test_the_mirror_grows_with_the_region_and_keeps_its_bytes(device_store):
    """Past the mirror's first capacity the region's mirror grows (the slabs' LIMIT follows
    its mirrored part) and the device still holds every key and value; the C path's limit is
    the mirrored part's end."""
    from gpu.mirror import MIN_MIRROR
    from gpu.slabs import BLOCK, LIMIT, TOP

    keys = [b"grow:%06d" % i for i in range(3000)]
    device_store.set_many(keys[:10], [b"a" * 500] * 10, NOW)
    mirror = device_store.mirror
    first = mirror.capacity
    assert first == MIN_MIRROR == mirror.mirrored and device_store._slabs.state[LIMIT] * BLOCK == first
    for i, key in enumerate(keys):
        device_store.set(key, b"%06d" % i * 100, NOW)  # 600 bytes each: past 1 MiB
    assert mirror.capacity > first and device_store._slabs.state[LIMIT] * BLOCK == mirror.mirrored
    assert device_store._slabs.state[TOP] * BLOCK <= mirror.mirrored <= mirror.capacity
    slots, buf, offs = device_store.get_many_packed(*_packed(keys[::7]), NOW)
    assert (slots >= 0).all()
    assert [buf[offs[i]: offs[i + 1]].tobytes() for i in range(len(slots))] == \
        [b"%06d" % i * 100 for i in range(0, 3000, 7)]


def test_the_mirrored_part_grows_by_steps_while_the_device_mirror_doubles(device_store):
    """The host range the copies read (registered with CUDA: each page pinned and populated)
    stays within a step of what the slabs use, while the device mirror doubles: registering
    the doubled range at once paid for pages long before any write used them."""
    from gpu.mirror import MIRRORED_SHARE, MIRRORED_STEP, PAGE_SHIFT
    from gpu.slabs import BLOCK, LIMIT, TOP

    mirror, seen = device_store.mirror, set()
    for i in range(24000):
        device_store.set(b"step:%06d" % i, b"v" * 1000, NOW)  # about 24 MiB of blocks
        used = device_store._slabs.state[TOP] * BLOCK
        assert used <= mirror.mirrored <= mirror.capacity
        assert mirror.mirrored - used <= max(MIRRORED_STEP, mirror.mirrored // MIRRORED_SHARE) + (1 << PAGE_SHIFT)
        seen.add((mirror.mirrored, mirror.capacity))
    assert device_store._slabs.state[LIMIT] * BLOCK == mirror.mirrored and mirror.mirrored % (1 << PAGE_SHIFT) == 0
    assert len({m for m, _ in seen}) > len({c for _, c in seen}) >= 5  # more steps than doublings
    assert any(m < c for m, c in seen)
    slots, buf, _ = device_store.get_many_packed(*_packed([b"step:000000", b"step:023999"]), NOW)
    assert (slots >= 0).all() and buf.tobytes() == b"v" * 2000


def test_dirty_pages_coalesce_into_few_copies():
    from gpu.mirror import dirty_runs

    bitmap = np.zeros(1000, dtype=np.uint8)
    bitmap[[3, 4, 5, 9, 20, 21, 300, 302, 900]] = 1
    assert dirty_runs(bitmap, 1000, 64, merge_gap=4) == [(3, 10), (20, 22), (300, 303), (900, 901)]
    assert not bitmap.any()  # taken
    bitmap[[3, 4, 5, 9, 20, 21, 300, 302, 900]] = 1
    assert dirty_runs(bitmap, 1000, 2, merge_gap=0) == [(3, 303), (900, 901)]  # the largest gap kept
    bitmap[::3] = 1
    runs = dirty_runs(bitmap, 1000, 32, merge_gap=2)
    assert runs == [(0, 1000)]
    bitmap[::10] = 1
    runs = dirty_runs(bitmap, 500, 8, merge_gap=2)  # beyond n_pages: neither copied nor cleared
    assert len(runs) == 8 and runs[0][0] == 0 and runs[-1][1] == 491
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(runs)) and bitmap[500::10].all()


def test_region_copies_are_cut_at_registered_chunk_boundaries():
    """CUDA refuses one copy across two host registrations: runs are cut where chunks meet."""
    from gpu.mirror import PageMirror

    mirror = PageMirror(np, None)
    mirror.capacity = mirror.mirrored = 1 << 22
    mirror._cuts = [1 << 20, 1 << 21]  # chunks [0, 1M), [1M, 2M), [2M, 4M)
    assert mirror.byte_ranges([(0, 2), (200, 600), (1000, 1024)]) == [
        (0, 8192), (200 << 12, 1 << 20), (1 << 20, 1 << 21), (1 << 21, 600 << 12), (1000 << 12, 1 << 22)]


def test_sync_copies_slot_pages_before_region_pages_in_few_copies(device_store, monkeypatch):
    """One sync issues at most SLOT_RUNS copies per mirrored slot array and REGION_RUNS region
    copies, slot arrays first; a sync with nothing marked copies nothing."""
    from gpu.mirror import REGION_RUNS, SLOT_RUNS

    rng = random.Random(4)
    keys = [b"spread:%05d" % i for i in range(20000)]
    device_store.set_many(keys, [b"x" * rng.randrange(50, 300) for _ in keys], NOW)
    copies = []
    mirror = device_store.mirror
    real = mirror.upload
    monkeypatch.setattr(mirror, "upload", lambda dst, src, a, b: (copies.append(dst is mirror.region), real(dst, src, a, b)))
    for key in rng.sample(keys, 3000):  # scattered overwrites, some of another size class
        device_store.set(key, b"y" * rng.randrange(50, 300), NOW)
    device_store.sync()
    region = copies.count(True)
    assert 0 < region <= REGION_RUNS and len(copies) - region <= 5 * SLOT_RUNS
    assert copies == sorted(copies)  # every slot copy before the first region copy
    copies.clear()
    device_store.sync()
    assert copies == []
    probe = rng.sample(keys, 300)
    _, buf, offs = device_store.get_many_packed(*_packed(probe), NOW)
    assert [buf[offs[i]: offs[i + 1]].tobytes() for i in range(300)] == [device_store.get(k, NOW) for k in probe]


def test_a_copy_taken_while_the_host_writes_is_mended_by_the_next_sync(device_store, monkeypatch):
    """A copy of the slot arrays may show a new key before its bytes arrive (the host wrote
    them while the copy was in flight): the index entry made from those bytes is wrong, and
    the next sync, which copies the pages the host marked again, replaces it (hashes are
    compared, not generations). Until then the key is missing, never another key's value."""
    device_store.set_many([b"before"], [b"b"], NOW)
    device_store.set(b"torn", b"value", NOW)
    mirror = device_store.mirror
    real = mirror.upload_region
    monkeypatch.setattr(mirror, "upload_region", lambda runs: None)  # the bytes' copy saw old pages
    device_store.sync()
    monkeypatch.setattr(mirror, "upload_region", real)
    slot = device_store._index[b"torn"]
    assert device_store.d_indexed[slot]  # indexed from the wrong bytes
    mirror.mark_slot(slot)  # what the host's write during the copy marked again
    mirror.mark_region(int(device_store.key_loc[slot]) * 4, len(b"torn"))
    mirror.mark_region(int(device_store.value_loc[slot]) * 4, len(b"value"))
    slots, buf, _ = device_store.get_many_packed(*_packed([b"torn", b"before"]), NOW)
    assert slots.tolist() == [slot, device_store._index[b"before"]]
    assert buf.tobytes() == b"valueb"
    t_slot = device_store._to_host(device_store.t_slot)
    assert sorted(t_slot[t_slot >= 0].tolist()) == sorted([slot, device_store._index[b"before"]])


def test_slots_reused_between_syncs_reach_the_device_index_once(device_store):
    """A key dropped before its sync, or after it, frees a slot that a new key takes before
    the next sync: the index ends with the new key alone (removal goes by the hash the device
    kept), and a later table rebuild re-inserts every key from those hashes."""
    device_store.set(b"on-device", b"v" * 50, NOW)
    device_store.sync()
    old_slot = device_store._index[b"on-device"]
    device_store.delete(b"on-device")
    device_store.set(b"takes-its-slot", b"t" * 50, NOW)
    assert device_store._index[b"takes-its-slot"] == old_slot
    device_store.set(b"short-lived", b"s" * 50, NOW)
    brief_slot = device_store._index[b"short-lived"]
    device_store.delete(b"short-lived")  # never reached the device
    device_store.set(b"second-owner", b"o" * 50, NOW)
    assert device_store._index[b"second-owner"] == brief_slot
    device_store.sync()
    query = [b"on-device", b"takes-its-slot", b"short-lived", b"second-owner"]
    slots, _, _ = device_store.get_many_packed(*_packed(query), NOW)
    assert slots.tolist() == [-1, old_slot, -1, brief_slot]
    t_slot = device_store._to_host(device_store.t_slot)
    assert sorted(t_slot[t_slot >= 0].tolist()) == sorted([old_slot, brief_slot])
    keys = [b"fill:%05d" % i for i in range(2000)]  # enough new keys to rebuild the table
    size = device_store.t_slot.size
    device_store.set_many(keys, [b"f"] * 2000, NOW)
    assert device_store.t_slot.size > size
    slots, buf, offs = device_store.get_many_packed(*_packed([b"second-owner", b"fill:01999", b"short-lived"]), NOW)
    assert slots[0] == brief_slot and slots[2] == -1
    assert [buf[offs[i]: offs[i + 1]].tobytes() for i in range(2)] == [b"o" * 50, b"f"]


def test_random_writes_keep_the_device_equal_to_the_host(device_store):
    """Random writes (new keys, same-class and other-class overwrites, strings past PACKED_MAX
    and BIG_VALUE, hashes, deletes, slot and block reuse, keys' and values' locations taking
    each other's freed blocks) between syncs: after each sync the device's mirror holds the
    host's region and slot arrays, the index holds exactly the live keys, and device lookups
    and gathers return the host's values."""
    from gpu.cuda import BIG_VALUE
    from gpu.slabs import TOP

    rng = random.Random(11)
    keys = [b"k%03d" % i for i in range(120)] + [b"", b"a", b"abcd"]
    values = [b"", b"a", b"abcd", b"abcde", b"x" * 100, b"y" * 1024, b"z" * 1025, b"w" * 5000]
    store = device_store
    for step in range(1500):
        key = rng.choice(keys)
        op = rng.random()
        if op < 0.7:
            store.set(key, rng.choice(values) + b"%d" % rng.randrange(3), NOW)
        elif op < 0.75:
            store.set(key, {b"f": b"v"}, NOW)
        elif op < 0.76:
            store.set(key, b"B" * BIG_VALUE + b"%d" % step, NOW)
        else:
            store.delete(key)
        if step % 100 == 99:
            store.sync()
            assert not store.staged_since
            top = int(store._slabs.state[TOP]) * 4
            region = np.frombuffer(store._slabs.region, dtype=np.uint8)[:top]
            assert (store._to_host(store.mirror.region[:top]) == region).all()
            del region
            n = len(store._keys)
            for name in ("value_loc", "size", "key_loc", "key_len", "live"):
                assert (store._to_host(getattr(store, "d_" + name)[:n]) == getattr(store, name)[:n]).all()
            t_slot = store._to_host(store.t_slot)
            assert sorted(t_slot[t_slot >= 0].tolist()) == sorted(store._index.values())
            live = [k for k in keys if store.get(k, NOW, touch=False) is not None]
            query = live + [b"absent"]
            slots, buf, offs = store.get_many_packed(*_packed(query), NOW)
            assert slots[-1] == -1 and slots[:-1].tolist() == [store._index[k] for k in live]
            expected = [v if type(v) is bytes else b"" for v in (store.get(k, NOW, touch=False) for k in live)]
            assert [buf[offs[i]: offs[i + 1]].tobytes() for i in range(len(live))] == expected
            xp = store.xp
            d_slots = store.lookup_packed(*(xp.asarray(a) for a in _packed(live)))
            d_buf, d_offs = store.gather_device(d_slots)
            d_buf, d_offs = store._to_host(d_buf), store._to_host(d_offs).tolist() + [int(d_buf.size)]
            assert [d_buf[d_offs[i]: d_offs[i + 1]].tobytes() for i in range(len(live))] == expected


def test_slab_size_classes_are_coarse_past_packed_max():
    """The GPU store packs strings up to BIG_VALUE: past PACKED_MAX the classes are four per
    power of two, lengths of one BLOCK class share a class, and waste stays under 25%."""
    from gpu.slabs import PACKED_MAX, size_class

    for n in [*range(2100), 4095, 4096, 4097, 100000, (1 << 20) - 1]:
        cls = size_class(n)
        assert cls % 4 == 0 and cls >= max(n, 4) and size_class((n + 3) & -4 or 4) == cls
        assert cls == ((n + 3) & -4 or 4) if n <= PACKED_MAX else cls < n * 1.25 + 4


def test_warm_up_runs_every_device_path_and_leaves_the_store_empty(device_store):
    """The GPU store warms CuPy's kernels at start-up on a scratch store (gpu/cuda.py
    warm_up): it must go through syncs, removals, a packed lookup and eviction without
    error, and leave nothing behind."""
    from gpu.warmup import warm_up

    warm_up(device_store)
    assert len(device_store) == 0 and device_store.used_memory() == type(device_store)().used_memory()
    assert not device_store.staged_since
    device_store.set(b"k", b"v", NOW)
    device_store.sync()
    assert device_store.get(b"k", NOW) == b"v"
