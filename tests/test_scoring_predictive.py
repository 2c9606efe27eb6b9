"""allkeys-predictive's eviction order and the frequency sketch behind its reuse scores."""
from __future__ import annotations

import numpy as np
import pytest

from gpu.cpu import NumpyStore
from gpu.interface import EvictionPolicy
from gpu.scoring import predictive_scores, victim_scores
from models.frequency import MIN_WINDOW, FrequencySketch
from models.keycodes import key_codes

NOW = 1_700_000_000_000
PREDICTIVE = EvictionPolicy.ALLKEYS_PREDICTIVE


def _hashes(keys):
    return key_codes(keys)[0]


def _counted(store, sketch, keys):
    """What the prefetcher does per access: count it, then write the key's count as its reuse."""
    sketch.add(_hashes(keys))
    store.set_reuse_scores(keys, sketch.estimate(_hashes(keys)).tolist())


def test_sketch_counts_accesses_and_forgets_by_halving():
    sketch = FrequencySketch(window=1000)
    hot, cold = _hashes([b"hot", b"cold"])
    for _ in range(40):
        sketch.add(np.array([hot]))
    sketch.add(np.array([cold]))
    assert sketch.estimate(np.array([hot, cold])).tolist() == [40.0, 1.0]
    assert sketch.estimate(_hashes([b"never"])).tolist() == [0.0]
    aged = sketch.add(np.full(1000 - 41, _hashes([b"filler"])[0]))  # the window's last accesses
    assert aged and sketch.halvings == 1
    assert sketch.estimate(np.array([hot, cold])).tolist() == [20.0, 0.0]


def test_sketch_window_follows_the_cache_size():
    sketch = FrequencySketch()
    sketch.fit_window(10)
    assert sketch.window == MIN_WINDOW
    sketch.fit_window(100_000)
    assert sketch.window > 100_000


def test_once_seen_key_goes_before_a_frequently_read_older_key():
    store, sketch = NumpyStore(), FrequencySketch()
    store.set(b"hot", b"v", NOW)
    for i in range(10):
        store.get(b"hot", NOW + i)
        _counted(store, sketch, [b"hot"])
    store.set(b"once", b"v", NOW + 5000)  # more recent than hot's last read: LRU would keep it
    _counted(store, sketch, [b"once"])
    assert store.evict(1, PREDICTIVE, 64, NOW + 6000) == [b"once"]
    assert store.evict(1, EvictionPolicy.ALLKEYS_LRU, 64, NOW + 6000) == [b"hot"]


def test_a_returning_key_keeps_its_history():
    """Evicted and stored again, a popular key outranks keys seen once (the store's LFU counter
    would start it over at its initial value)."""
    store, sketch = NumpyStore(), FrequencySketch()
    for _ in range(5):
        sketch.add(_hashes([b"popular"]))
    for key in (b"a", b"b", b"popular"):  # popular stored last, as a read-through reload
        store.set(key, b"v", NOW)
        _counted(store, sketch, [key])
    victims = store.evict(2, PREDICTIVE, 64, NOW + 10)
    assert sorted(victims) == [b"a", b"b"]


def test_equal_reuse_falls_back_to_lru_and_unread_prefetches_go_first():
    store = NumpyStore()
    for i, key in enumerate((b"old", b"mid", b"new")):
        store.set(key, b"v", NOW + i * 1000)
    store.set_reuse_scores([b"old", b"mid", b"new"], [3.0, 3.0, 3.0])
    assert store.evict(1, PREDICTIVE, 64, NOW + 5000) == [b"old"]
    store.set(b"prefetched", b"v", NOW + 5000)
    store.set_reuse_scores([b"prefetched"], [50.0])
    store.mark_prefetched(b"prefetched", True)
    assert store.evict(1, PREDICTIVE, 64, NOW + 5000) == [b"prefetched"]


def test_model_probability_orders_keys_of_one_count():
    meta = {"reuse": np.array([2.0, 2.9, 2.0], dtype=np.float32), "flags": np.zeros(3, dtype=np.uint8),
            "last_access": np.array([NOW, NOW - 10_000, NOW - 5], dtype=np.int64)}
    scores = predictive_scores(np, meta, NOW)
    # count 2 + p 0.9 outranks count 2 even though it idled longer; among the two 2.0s the idler goes first
    assert np.argsort(scores).tolist() == [2, 0, 1]


def test_bulk_and_sampled_eviction_share_the_score():
    meta = {"live": np.ones(2, dtype=bool), "expire_at": np.zeros(2, dtype=np.int64),
            "reuse": np.array([1.0, 4.0], dtype=np.float32), "flags": np.zeros(2, dtype=np.uint8),
            "last_access": np.array([NOW, NOW - 1], dtype=np.int64),
            "lfu_count": np.zeros(2, dtype=np.uint8), "lfu_time": np.zeros(2, dtype=np.uint16)}
    scores = victim_scores(np, meta, PREDICTIVE, NOW, 1)
    assert scores[0] < scores[1]
    meta["live"][0] = False
    assert victim_scores(np, meta, PREDICTIVE, NOW, 1)[0] == pytest.approx(np.inf)


def test_add_and_estimate_is_add_then_estimate():
    one, both = FrequencySketch(window=50), FrequencySketch(window=50)
    keys = _hashes([b"a", b"b", b"a", b"c"])
    for _ in range(13):  # the 13th call ages both sketches
        one.add(keys)
        aged, counts = both.add_and_estimate(keys)
        assert aged == (one.added == 0)
        assert counts.tolist() == one.estimate(keys).tolist()
    assert one.halvings == both.halvings == 1
