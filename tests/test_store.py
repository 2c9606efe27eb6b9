"""The store interface, run against every backend with the same tests.

``cpu`` is the NumPy store; ``arena`` is the GPU store's layout (page mirror of the packed
region and slot arrays, hash index, big-value arena, kernels) on NumPy arrays with the kernels
emulated, so its bookkeeping is tested
on machines without CUDA; ``gpu`` is the real CuPy store (marked ``gpu``, skipped without
CUDA, run on the accelerator machine). The device layout's own tests (index, mirror, syncs)
are in test_device_layout.py.
"""
from __future__ import annotations

import random

import pytest

from gpu import EvictionPolicy
from gpu.cpu import NumpyStore
from gpu.cuda import ArenaStore

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
