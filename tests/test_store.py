"""The store interface, run against every backend with the same tests.

``cpu`` is the NumPy store; ``arena`` is the GPU store's layout (page mirror of the packed
region and slot arrays, hash index, big-value arena, kernels) on NumPy arrays with the kernels
emulated, so its bookkeeping is tested
on machines without CUDA; ``gpu`` is the real CuPy store (marked ``gpu``, skipped without
CUDA, run on the accelerator machine).
"""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from gpu import EvictionPolicy
from gpu.cpu import NumpyStore
from gpu.cuda import ArenaStore
from gpu.interface import StoreFull

NOW = 1_700_000_000_000


def make_store(kind: str):
    if kind == "cpu":
        return NumpyStore()
    if kind == "arena":
        return ArenaStore()
    from gpu.cuda import CupyStore

    return CupyStore()


@pytest.fixture(params=["cpu", "arena", pytest.param("gpu", marks=pytest.mark.gpu)])
def store(request):
    return make_store(request.param)


@pytest.fixture(params=["arena", pytest.param("gpu", marks=pytest.mark.gpu)])
def device_store(request):
    return make_store(request.param)


def test_set_get_delete_and_overwrite(store):
    assert store.get(b"k", NOW) is None
    store.set(b"k", b"v1", NOW)
    assert store.get(b"k", NOW) == b"v1"
    store.set(b"k", b"a much longer value " * 20, NOW)
    assert store.get(b"k", NOW) == b"a much longer value " * 20
    store.set(b"empty", b"", NOW)
    assert store.get(b"empty", NOW) == b""
    store.set(b"bin\x00\xff", bytes(range(256)), NOW)
    assert store.get(b"bin\x00\xff", NOW) == bytes(range(256))
    assert store.delete(b"k") is True
    assert store.delete(b"k") is False
    assert store.get(b"k", NOW) is None
    assert len(store) == 2
    store.set(b"h", {b"f": b"v"}, NOW)
    assert store.get(b"h", NOW) == {b"f": b"v"}


def test_big_value_round_trips(store):
    big = bytes(random.Random(1).randbytes(3 << 20))
    store.set(b"big", big, NOW)
    store.set(b"small", b"x", NOW)
    assert store.get(b"big", NOW) == big
    assert store.get_many([b"small", b"big", b"none"], NOW) == [b"x", big, None]


def test_random_operations_match_a_dict(store):
    rng = random.Random(7)
    model: dict[bytes, bytes] = {}
    keys = [b"key:%d" % i for i in range(300)]
    for step in range(4000):
        key = rng.choice(keys)
        op = rng.random()
        if op < 0.5:
            value = rng.randbytes(rng.choice([0, 1, 3, 4, 5, 15, 16, 17, 100, 129, 700, 1024, 1025, 3000]))
            store.set(key, value, NOW)
            model[key] = value
        elif op < 0.7:
            assert store.delete(key) == (key in model)
            model.pop(key, None)
        elif op < 0.9:
            assert store.get(key, NOW) == model.get(key)
        else:
            batch = rng.sample(keys, 50)
            assert store.get_many(batch, NOW) == [model.get(k) for k in batch]
    assert sorted(store.keys()) == sorted(model)
    assert len(store) == len(model)


def test_set_many_and_delete_many(store):
    keys = [b"k%05d" % i for i in range(5000)]
    values = [b"v%d" % i * 7 for i in range(5000)]
    store.set_many(keys, values, NOW)
    assert store.get_many(keys, NOW) == values
    store.set_many(keys[:10], [b"x"] * 10, NOW, [NOW + 1000] * 10)
    assert store.get_expire(keys[0]) == NOW + 1000 and store.volatile_count == 10
    assert store.delete_many(keys[:2500] + [b"absent"]) == 2500
    assert store.get_many(keys[2495:2505], NOW) == [None] * 5 + values[2500:2505]


def test_lazy_and_active_expiry(store):
    expired = []
    store.on_expire = expired.append
    store.set(b"a", b"1", NOW, expire_at=NOW + 100)
    store.set(b"b", b"2", NOW, expire_at=NOW + 100)
    store.set(b"c", b"3", NOW)
    assert store.volatile_count == 2
    assert store.get(b"a", NOW + 99) == b"1"
    assert store.get(b"a", NOW + 100) is None
    assert expired == [b"a"]
    assert store.expire_scan(NOW + 200, 1000) == [b"b"]
    assert expired == [b"a", b"b"] and store.volatile_count == 0 and len(store) == 1
    store.set(b"d", b"4", NOW, expire_at=NOW + 5)
    store.set(b"d", b"5", NOW)  # a plain SET clears the TTL
    assert store.get_expire(b"d") == 0
    store.set_expire(b"d", NOW + 5)
    store.set(b"d", b"6", NOW, keep_ttl=True)
    assert store.get_expire(b"d") == NOW + 5
    many = [b"m%d" % i for i in range(100)]
    store.set_many(many, [b"v"] * 100, NOW, [NOW + 10] * 100)
    assert store.get_many(many + [b"c"], NOW + 10) == [None] * 100 + [b"3"]


def test_scan_is_stable_while_the_table_changes(store):
    stable = {b"stable:%d" % i for i in range(500)}
    for key in stable:
        store.set(key, b"v", NOW)
    cursor, seen, extra = 0, set(), 0
    while True:
        cursor, batch = store.scan(cursor, 37)
        seen.update(batch)
        store.set(b"new:%d" % extra, b"v", NOW)  # inserts and deletes during the walk
        store.delete(b"new:%d" % (extra - 3))
        extra += 1
        if cursor == 0:
            break
    assert stable <= seen
    assert store.random_key() is not None


def _fill(store, n=200, ttl_every=0):
    for i in range(n):
        exp = NOW + 10_000 + i if ttl_every and i % ttl_every == 0 else 0
        store.set(b"k%d" % i, b"v" * 10, NOW + i, expire_at=exp)


@pytest.mark.parametrize("policy", [p for p in EvictionPolicy if p.volatile_only])
def test_volatile_policies_only_evict_keys_with_ttl(store, policy):
    _fill(store, 200, ttl_every=4)
    victims = store.evict(100, policy, 5, NOW + 1000)
    assert len(victims) == 50
    assert all(int(v[1:]) % 4 == 0 for v in victims)
    assert store.evict(5, policy, 5, NOW + 1000) == []
    assert store.volatile_count == 0 and len(store) == 150


def test_noeviction_evicts_nothing(store):
    _fill(store, 10)
    assert store.evict(5, EvictionPolicy.NOEVICTION, 5, NOW) == []


def test_lru_prefers_idle_keys(store):
    _fill(store, 300)
    for i in range(150, 300):
        store.get(b"k%d" % i, NOW + 10_000)
    victims = store.evict(60, EvictionPolicy.ALLKEYS_LRU, 10, NOW + 20_000)
    assert len(victims) == 60
    old = sum(1 for v in victims if int(v[1:]) < 150)
    assert old >= 57  # sampling 10 of 300 with half recently read: a recent victim is rare


def test_volatile_ttl_evicts_soonest_expiry(store):
    for i in range(50):
        store.set(b"t%d" % i, b"v", NOW, expire_at=NOW + 100_000 - i * 1000)
    victims = store.evict(1, EvictionPolicy.VOLATILE_TTL, 50, NOW)
    assert victims == [b"t49"]


@pytest.mark.parametrize("policy", [EvictionPolicy.ALLKEYS_LRU, EvictionPolicy.ALLKEYS_LFU,
                                    EvictionPolicy.VOLATILE_TTL, EvictionPolicy.ALLKEYS_RANDOM])
def test_bulk_eviction(store, policy):
    _fill(store, 1000, ttl_every=1 if policy is EvictionPolicy.VOLATILE_TTL else 0)
    for i in range(500, 1000):
        store.get(b"k%d" % i, NOW + 5000)
    victims = store.evict(400, policy, 5, NOW + 6000)
    assert len(victims) == 400 == len(set(victims)) and len(store) == 600
    if policy in (EvictionPolicy.ALLKEYS_LRU, EvictionPolicy.VOLATILE_TTL):
        assert sum(1 for v in victims if int(v[1:]) < 500) >= 380


def test_lfu_counter_grows_logarithmically_and_decays(store):
    store.track_lfu = True
    store.set(b"hot", b"v", NOW)
    store.set(b"cold", b"v", NOW)
    assert store.lfu_frequency(b"cold", NOW) == 5  # LFU_INIT_VAL
    for _ in range(2000):
        store.get(b"hot", NOW)
    hot = store.lfu_frequency(b"hot", NOW)
    assert 10 < hot < 40  # log factor 10: ~2000 hits give a counter in the teens or twenties
    assert store.lfu_frequency(b"hot", NOW + 3 * 60_000) == hot - 3  # decay time 1 minute
    victims = store.evict(1, EvictionPolicy.ALLKEYS_LFU, 5, NOW)
    assert victims == [b"cold"]
    assert store.idle_ms(b"hot", NOW + 1234) == 1234


def test_reuse_scores_drive_predictive_eviction(store):
    _fill(store, 4)
    keys = [b"k%d" % i for i in range(4)]
    store.set_reuse_scores(keys, [0.5, 0.1, 0.9, 0.7])
    assert float(store.reuse[store._index[b"k2"]]) == pytest.approx(0.9)
    store.mark_prefetched(b"k3", True)
    assert store.is_prefetched(b"k3")
    # 64 samples of 4 keys see every key (a miss has probability 0.75**64)
    victims = store.evict(2, EvictionPolicy.ALLKEYS_PREDICTIVE, 64, NOW)
    assert victims == [b"k3", b"k1"]  # unread prefetch first, then the lowest score
    _fill(store, 600)
    store.set_reuse_scores([b"k%d" % i for i in range(600)], [float(600 - i) for i in range(600)])
    bulk = store.evict(300, EvictionPolicy.ALLKEYS_PREDICTIVE, 5, NOW)
    assert sorted(bulk) == sorted(b"k%d" % i for i in range(300, 600))


def test_used_memory_tracks_data(store):
    empty = store.used_memory()
    store.set_many([b"key:%06d" % i for i in range(2000)], [b"x" * 100] * 2000, NOW)
    full = store.used_memory()
    assert 2000 * 130 < full - empty < 2000 * 600
    store.delete_many([b"key:%06d" % i for i in range(2000)])
    # keys and values released (a packed 100-byte value holds 104 bytes); arrays stay sized
    assert full - store.used_memory() > 2000 * 120
    store.clear()
    assert len(store) == 0 and store.get(b"key:000001", NOW) is None


def test_cpu_store_packs_short_strings_and_reuses_freed_blocks():
    store = NumpyStore()
    store.set(b"a", b"x" * 100, NOW)
    slabs = store._slabs
    assert slabs.used_bytes == 100 and not store._values  # packed, no Python object kept
    store.set(b"a", b"y" * 98, NOW)  # same size class: rewritten in place
    assert store.get(b"a", NOW) == b"y" * 98 and slabs.used_bytes == 100
    store.set(b"a", b"z" * 300, NOW)  # another class: old block freed, new one taken
    assert slabs.used_bytes == 300
    store.set(b"b", b"w" * 97, NOW)  # reuses the 100-byte block "a" left
    assert slabs.state[0] * 4 == 4 + 100 + 300  # TOP: the bump pointer
    store.set(b"h", {b"field": b"v"}, NOW)  # not a string: stays an object
    store.set(b"big", b"q" * 5000, NOW)  # longer than PACKED_MAX: stays an object
    assert b"q" * 5000 in store._values.values()
    assert store.get_many([b"a", b"b", b"h", b"big"], NOW) == [b"z" * 300, b"w" * 97, {b"field": b"v"}, b"q" * 5000]
    slabs.state[1] = slabs.state[0]  # LIMIT = TOP: the region is full, new values fall back to objects
    store.set(b"c", b"new", NOW)
    assert store.get(b"c", NOW) == b"new" and b"new" in store._values.values()
    store.delete(b"a")
    store.set(b"d", b"r" * 299, NOW)  # a freed block still serves its class when full
    assert store.get(b"d", NOW) == b"r" * 299 and b"r" * 299 not in store._values.values()


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
    it) and the device still holds every key and value; the C path's limit is that capacity."""
    from gpu.mirror import MIN_MIRROR
    from gpu.slabs import LIMIT, TOP

    keys = [b"grow:%06d" % i for i in range(3000)]
    device_store.set_many(keys[:10], [b"a" * 500] * 10, NOW)
    first = device_store.mirror.capacity
    assert first == MIN_MIRROR and device_store._slabs.state[LIMIT] * 4 == first
    for i, key in enumerate(keys):
        device_store.set(key, b"%06d" % i * 100, NOW)  # 600 bytes each: past 1 MiB
    capacity = device_store.mirror.capacity
    assert capacity > first and device_store._slabs.state[LIMIT] * 4 == capacity
    assert device_store._slabs.state[TOP] * 4 <= capacity
    slots, buf, offs = device_store.get_many_packed(*_packed(keys[::7]), NOW)
    assert (slots >= 0).all()
    assert [buf[offs[i]: offs[i + 1]].tobytes() for i in range(len(slots))] == \
        [b"%06d" % i * 100 for i in range(0, 3000, 7)]


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
    mirror.capacity = 1 << 22
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
