"""The store interface, run against every backend with the same tests.

``cpu`` is the NumPy store; ``arena`` is the GPU store's layout (arena, hash index, staged
uploads, kernels) on NumPy arrays with the kernels emulated, so its bookkeeping is tested
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
    block = int(device_store.val_off[device_store._index[b"p2"]])
    device_store.set(b"p2", b"changed", NOW)  # same size class as b"v2": same device block
    device_store.set(b"p3", b"x" * 300, NOW)  # another class: a new block
    device_store.delete(b"p4")
    device_store.set(b"new", b"fresh", NOW)
    assert int(device_store.val_off[device_store._index[b"p2"]]) == block
    # single reads come from the host copy: no device work
    assert device_store.get(b"p2", NOW) == b"changed"
    assert device_store.get_many([b"p1", b"p3", b"p4", b"new"], NOW) == [b"v1", b"x" * 300, None, b"fresh"]
    assert syncs == []
    ticks = SimpleNamespace(dbs=[SimpleNamespace(store=device_store)], stores=(device_store,))
    monkeypatch.setattr(gpu.cuda, "SYNC_INTERVAL_S", 3600.0)
    end_tick(ticks)  # too soon: the writes wait for more
    assert syncs == []
    monkeypatch.setattr(gpu.cuda, "SYNC_INTERVAL_S", 0.0)
    end_tick(ticks)  # one sync carries every staged write
    assert len(syncs) == 1
    query = [b"p1", b"p2", b"p3", b"p4", b"new"]
    slots, buf, offs = device_store.get_many_packed(*_packed(query), NOW)  # the device copy
    got = [buf[offs[i]: offs[i + 1]].tobytes() if slots[i] >= 0 else None for i in range(len(query))]
    assert got == [b"v1", b"changed", b"x" * 300, None, b"fresh"]


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
    """Device blocks are allocated at the sync, but the space is reserved by the write: when
    the device cannot grow, the new key's SET gets StoreFull and nothing changes."""
    device_store.set(b"kept", b"safe", NOW)
    device_store.sync()
    arena = device_store.arena
    arena.top = arena.capacity - 8  # the next reservation must grow the arena
    monkeypatch.setattr(arena, "_allocate", lambda nbytes: (_ for _ in ()).throw(StoreFull("no room")))
    with pytest.raises(StoreFull):
        device_store.set(b"new", b"v" * 100, NOW)
    with pytest.raises(StoreFull):
        device_store.set(b"kept", b"w" * 300, NOW)  # another size class: a new block too
    assert device_store.get(b"new", NOW) is None and device_store.get(b"kept", NOW) == b"safe"
    assert len(device_store) == 1 and not device_store._stage_list and not device_store.stage_flags.any()
    device_store.set(b"kept", b"same", NOW)  # the same size class needs no space: it works
    device_store.sync()
    assert device_store.get(b"kept", NOW) == b"same"


def test_sync_allocates_deferred_blocks_reusing_freed_space(device_store):
    from gpu.arena import size_class

    keys = [b"key:%04d" % i for i in range(200)]
    device_store.set_many(keys, [b"v" * 100] * 200, NOW)  # synced
    arena = device_store.arena
    top, live = arena.top, arena.live_bytes
    assert live == 200 * (size_class(8) + size_class(100))
    device_store.delete_many(keys[:50])  # their blocks go on the free lists
    for i in range(50):
        device_store.set(b"new:%04d" % i, b"n" * 100, NOW)  # deferred: nothing allocated yet
    assert arena.live_bytes == 150 * (size_class(8) + size_class(100))
    device_store.set(b"gone", b"g" * 100, NOW)
    device_store.delete(b"gone")  # dropped before any sync: never allocated
    device_store.sync()
    assert arena.top == top and arena.live_bytes == live  # the freed blocks served the new keys
    slots = [device_store._index[b"new:%04d" % i] for i in range(50)]
    offsets = sorted(int(device_store.val_off[s]) for s in slots) + \
        sorted(int(device_store.key_off[s]) for s in slots)
    assert len(set(offsets)) == 100  # no block handed out twice
    got, buf, offs = device_store.get_many_packed(*_packed([b"new:0007", b"key:0100", b"gone"]), NOW)
    assert [buf[offs[i]: offs[i + 1]].tobytes() for i in range(2)] == [b"n" * 100, b"v" * 100]
    assert got[2] == -1


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


@pytest.mark.parametrize("native_gather", [True, False], ids=["c-gather", "python-gather"])
def test_stage_lists_each_slot_once_and_the_device_matches_the_host(device_store, monkeypatch, native_gather):
    """Random writes (new keys, same-class and other-class overwrites, strings too long to
    pack, hashes, deletes, slot reuse) between syncs: every flagged slot is listed once, the
    staged bytes are those of the flagged values, and after each sync the device holds
    exactly the host's strings and keys."""
    import gpu.host_gather
    from gpu.host_gather import STAGE_INSERT, STAGE_VALUE

    if not native_gather:
        monkeypatch.setattr(gpu.host_gather, "native_gather", None)
    elif gpu.host_gather.native_gather is None:
        pytest.skip("gpu/_gather.c was not built")
    rng = random.Random(11)
    keys = [b"k%03d" % i for i in range(120)]
    values = [b"", b"a", b"abcd", b"abcde", b"x" * 100, b"y" * 1024, b"z" * 1025, b"w" * 5000]
    store = device_store
    for step in range(1500):
        key = rng.choice(keys)
        op = rng.random()
        if op < 0.7:
            store.set(key, rng.choice(values) + b"%d" % rng.randrange(3), NOW)
        elif op < 0.8:
            store.set(key, {b"f": b"v"}, NOW)
        else:
            store.delete(key)
        flags = store.stage_flags[: len(store._keys)]
        listed = store._stage_log[1: 1 + store._stage_log[0]].tolist() + store._stage_list
        assert len(listed) == len(set(listed)) and set(listed) == set(np.flatnonzero(flags).tolist())
        staged = flags & STAGE_VALUE != 0
        assert store._staged_bytes == int(store.val_len[: len(flags)][staged].sum())
        assert not (flags[~store.live[: len(flags)]] & (STAGE_VALUE | STAGE_INSERT)).any()
        if step % 100 == 99:
            store.sync()
            assert not store.stage_flags.any()
            live = [k for k in keys if store.get(k, NOW, touch=False) is not None]
            slots, buf, offs = store.get_many_packed(*_packed(live + [b"absent"]), NOW)
            assert slots[-1] == -1 and (slots[:-1] >= 0).all()
            for i, k in enumerate(live):
                value = store.get(k, NOW, touch=False)
                expected = value if type(value) is bytes else b""
                assert buf[offs[i]: offs[i + 1]].tobytes() == expected


def test_take_stage_walks_the_listed_slots_once():
    """gpu/_gather.c take_stage: the listed slots' flags cleared, the value-flagged ones with
    their length, device block and packed block, the insert-flagged ones apart; a slot out of
    range changes nothing."""
    import gpu.host_gather

    native = gpu.host_gather.native_gather
    if native is None:
        pytest.skip("gpu/_gather.c was not built")
    rng = np.random.default_rng(3)
    flags = rng.integers(0, 8, 50).astype(np.uint8)
    val_len, val_off = rng.integers(0, 900, 50), rng.integers(-1, 9000, 50)
    loc = rng.integers(0, 40, 50).astype(np.uint32)
    keys = [b"k" * i for i in range(50)]
    listed = np.array([7, 3, 49, 0, 12, 3], dtype=np.int64)  # 3 twice: its flags are taken once
    before = flags.copy()
    plan = np.empty((6, len(listed)), dtype=np.int64)
    n_staged, n_ins = native.take_stage(listed, flags, val_len, val_off, loc, keys, plan)
    once = [7, 3, 49, 0, 12]
    staged = [s for s in once if before[s] & 1]
    inserted = [s for s in once if before[s] & 2]
    assert plan[0, :n_staged].tolist() == staged and plan[4, :n_ins].tolist() == inserted
    assert plan[5, :n_ins].tolist() == inserted  # key i is i bytes long
    assert plan[1:4, :n_staged].tolist() == [val_len[staged].tolist(), val_off[staged].tolist(), loc[staged].tolist()]
    assert not flags[once].any() and (np.delete(flags, once) == np.delete(before, once)).all()
    flags[:] = before
    with pytest.raises(ValueError):
        native.take_stage(np.array([1, 50], dtype=np.int64), flags, val_len, val_off, loc, keys,
                          np.empty((6, 2), np.int64))
    flags[0] = 2
    keys[0] = None  # an inserted slot without a key
    with pytest.raises(ValueError):
        native.take_stage(np.array([1, 0], dtype=np.int64), flags, val_len, val_off, loc, keys,
                          np.empty((6, 2), np.int64))
    flags[0] = before[0]
    assert (flags == before).all()


def test_size_classes_match_size_class():
    from gpu.arena import size_class, size_classes

    rng = random.Random(5)
    edges = [0, 1, 15, 16, 17, 127, 128, 129, 130, 255, 256, 257, 1000, 1 << 16, (1 << 16) + 1, 1 << 20]
    lengths = edges + [rng.randrange(0, 1 << 22) for _ in range(3000)] + [rng.randrange(0, 300) for _ in range(3000)]
    assert size_classes(np.array(lengths, dtype=np.int64)).tolist() == [size_class(n) for n in lengths]


def test_alloc_many_matches_one_by_one_allocation():
    """Same space taken (top, live and free bytes) as alloc() one by one, and no two live
    blocks overlap."""
    from gpu.arena import DeviceArena, size_class

    rng = random.Random(7)
    one, many = DeviceArena(np), DeviceArena(np)
    live: dict[int, int] = {}  # offset -> length, the batch arena's live blocks
    few = [0, 5, 16, 17, 100, 129, 300, 5000]  # up to 6 size classes: one mask per class
    wide = few + [33, 49, 65, 81, 200, 1000, 3000, 70000]  # up to 14: grouped by one sort
    for round_no in range(30):
        choices = wide if round_no % 2 else few
        lengths = [rng.choice(choices) for _ in range(rng.randrange(1, 60))]
        singles = [one.alloc(n) for n in lengths]
        batch = many.alloc_many(np.array(lengths, dtype=np.int64)).tolist()
        live.update(zip(batch, lengths))
        spans = sorted((off, off + size_class(n)) for off, n in live.items())
        assert len(spans) == len(live) and all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
        assert spans[-1][1] <= many.top
        assert (one.top, one.live_bytes, one.free_bytes) == (many.top, many.live_bytes, many.free_bytes)
        for i in rng.sample(range(len(lengths)), len(lengths) // 2):
            one.free(singles[i], lengths[i])
            many.free(batch[i], lengths[i])
            del live[batch[i]]


def test_warm_up_runs_every_device_path_and_leaves_the_store_empty(device_store):
    """The GPU store warms CuPy's kernels at start-up on a scratch store (gpu/cuda.py
    warm_up): it must go through syncs, removals, a packed lookup and eviction without
    error, and leave nothing behind."""
    from gpu.warmup import warm_up

    warm_up(device_store)
    assert len(device_store) == 0 and device_store.used_memory() == type(device_store)().used_memory()
    assert not device_store._stage_list and device_store._log[0] == 0 and not device_store.staged_since
    device_store.set(b"k", b"v", NOW)
    device_store.sync()
    assert device_store.get(b"k", NOW) == b"v"
