"""Candidate selection (``SelectionGate``), absent-key handling and the predictive policy's
fallback to recency: each on the real prefetcher, store, origin loader and ranker service."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

from gpu.cpu import NumpyStore
from models.candidates import RAW_COLUMNS
from models.precision_control import (
    CLASS_BUCKETS,
    CLASS_MIN_OUTCOMES,
    CLASS_PROBE_EVERY,
    SelectionGate,
    candidate_classes,
)
from models.prefetch import Prefetcher
from models.ranker import RankerService
from predis_server.keyspace import Keyspace
from predis_server.origin.base import open_origin
from predis_server.origin.loader import OriginLoader
from predis_server.stats import Stats


def _feed(gate: SelectionGate, cls: int, used: int, wasted: int, seen: int | None = None) -> None:
    for i in range(used + wasted):
        gate.outcome(cls, i < used)
    gate.seen[cls] += used + wasted if seen is None else seen


def _issuable(gate: SelectionGate, cls: int, tries: int = 64) -> int:
    return sum(gate.allows(cls, 0.5) for _ in range(tries))


def test_classes_split_followers_by_access_count_and_strides_by_confidence():
    raw = np.zeros((4, len(RAW_COLUMNS)))
    raw[0, 6] = 0             # follower read never before
    raw[1, 6] = 40            # follower read 40 times
    raw[2, [3, 4]] = 1, 1     # young stream
    raw[3, [3, 4]] = 1, 500   # long stream
    assert candidate_classes(raw).tolist() == [0, 5, CLASS_BUCKETS + 1, 2 * CLASS_BUCKETS - 1]


def test_web_like_outcomes_close_the_rarely_read_class_and_keep_the_popular_one():
    gate = SelectionGate()
    popular, rare = 6, 1
    _feed(gate, popular, used=16, wasted=4)   # 0.8
    _feed(gate, rare, used=6, wasted=24)      # 0.2: together 0.44, below the floor
    assert _issuable(gate, popular) == 64
    # a closed class still probes, so its precision can be seen to change
    assert _issuable(gate, rare) == 64 // CLASS_PROBE_EVERY
    assert gate.skipped == 64 - 64 // CLASS_PROBE_EVERY
    # fresh outcomes of the probes reopen it once they are good
    _feed(gate, rare, used=40, wasted=0, seen=0)
    assert _issuable(gate, rare) == 64


def test_where_prefetching_is_precise_overall_no_class_is_closed():
    gate = SelectionGate()
    _feed(gate, 3, used=90, wasted=10, seen=900)   # most candidates: 0.9
    _feed(gate, 0, used=4, wasted=8, seen=100)     # a minor class below the floor: 0.33
    assert gate.projected() > 0.5
    assert _issuable(gate, 0) == 64 and gate.skipped == 0


def test_a_projection_just_above_the_floor_acts_on_few_outcomes_not_on_many():
    # web: the first few dozen outcomes are mostly the popular followers'; a projection of ~0.6
    # from them is no evidence that prefetching as a whole clears 0.5, from thousands it is
    few = SelectionGate()
    _feed(few, 7, used=15, wasted=1)
    _feed(few, 3, used=3, wasted=11)      # 0.6 overall, 30 outcomes
    assert 0.5 < few.projected() < 0.65 and few.acting(0.5)
    assert _issuable(few, 3) == 64 // CLASS_PROBE_EVERY and _issuable(few, 7) == 64
    many = SelectionGate()
    for cls in range(8):                  # 0.6 in every class, 8 x 100 outcomes
        _feed(many, cls, used=60, wasted=40)
    assert abs(many.projected() - 0.6) < 1e-9 and not many.acting(0.5)
    assert _issuable(many, 3) == 64 and many.skipped == 0


def test_untried_classes_and_floor_zero_are_never_gated():
    gate = SelectionGate()
    _feed(gate, 2, used=0, wasted=CLASS_MIN_OUTCOMES - 1)
    assert _issuable(gate, 2) == 64  # too few outcomes to judge
    _feed(gate, 2, used=0, wasted=1)
    assert _issuable(gate, 2) < 64
    assert sum(gate.allows(2, 0.0) for _ in range(10)) == 10


def test_a_few_outcomes_per_bucket_are_pooled_from_the_most_read_bucket_down():
    # web issues a few dozen prefetches in all: no bucket alone reaches CLASS_MIN_OUTCOMES, but
    # pooled from the most-read bucket down they show where reads stop paying
    gate = SelectionGate()
    _feed(gate, 7, used=5, wasted=0)
    _feed(gate, 6, used=3, wasted=1)
    _feed(gate, 3, used=2, wasted=7)
    _feed(gate, 2, used=1, wasted=5)
    assert all(gate.precision(c) is None for c in (2, 3, 6, 7))
    assert _issuable(gate, 7) == 64 and _issuable(gate, 6) == 64
    assert _issuable(gate, 3) == 64 // CLASS_PROBE_EVERY and _issuable(gate, 2) == 64 // CLASS_PROBE_EVERY
    assert _issuable(gate, CLASS_BUCKETS + 2) == 64  # strides: no outcomes, their own pool


def test_the_worst_class_is_closed_first_and_only_as_many_as_the_target_needs():
    # web, prefetch-lru: the most-read followers nearly all read, those read 15-30 times about
    # half, those read 7-14 times a sixth: closing the last is enough, the half-read stay open
    gate = SelectionGate()
    _feed(gate, 7, used=20, wasted=0)
    _feed(gate, 4, used=24, wasted=24)
    _feed(gate, 3, used=6, wasted=30)
    assert gate.projected() < 0.5 and gate.acting(0.5)
    assert gate.open_classes(0.5).tolist()[3:8] == [False, True, True, True, True]
    assert _issuable(gate, 3) == 64 // CLASS_PROBE_EVERY
    assert _issuable(gate, 7) == 64 and _issuable(gate, 4) == 64


def test_hft_like_one_wasteful_stride_class_is_closed_and_the_middling_ones_kept():
    # hft: strides of confidence 3-6 run past a symbol's keys into the next symbol's (~0.05
    # read) and pull the whole under the floor; followers and short strides read 0.55-0.65
    gate = SelectionGate()
    long_strides, short_strides = CLASS_BUCKETS + 2, CLASS_BUCKETS + 1
    _feed(gate, 1, used=66, wasted=34, seen=9500)
    _feed(gate, 2, used=57, wasted=43, seen=4700)
    _feed(gate, short_strides, used=53, wasted=47, seen=6800)
    _feed(gate, long_strides, used=4, wasted=96, seen=4000)
    assert gate.acting(0.5)
    closed = np.flatnonzero(~gate.open_classes(0.5)).tolist()
    assert closed == [long_strides]


# -- the prefetcher with a real keyspace, origin loader and ranker service -------------------------
@pytest.fixture()
def rig(tmp_path):
    for i in range(200):
        (tmp_path / f"k{i}").write_bytes(b"v" * 64)
    loop = asyncio.new_event_loop()
    keyspace = Keyspace(1, NumpyStore, Stats())
    loader = OriginLoader(open_origin(f"file://{tmp_path}"))
    server = SimpleNamespace(loop=loop, keyspace=keyspace)
    prefetcher = Prefetcher(server, loader, RankerService())
    yield SimpleNamespace(loop=loop, keyspace=keyspace, db=keyspace.dbs[0], loader=loader, p=prefetcher)
    prefetcher.ranker.close()
    loop.close()


def _prefetch(rig, keys: list[bytes], cls: int) -> None:
    async def run():
        for key in keys:
            rig.p._issue(rig.db, key, None, cls)
        while rig.p.inflight:
            await asyncio.sleep(0.001)
    rig.loop.run_until_complete(run())


def test_the_prefetcher_learns_class_outcomes_and_stops_issuing_a_wasteful_class(rig):
    p, db = rig.p, rig.db
    popular, rare = 6, 0
    keys = [b"k%d" % i for i in range(200)]
    _prefetch(rig, keys[:20], popular)
    _prefetch(rig, keys[20:60], rare)
    assert p.issued == 60 and len(p.unread_class) == 60
    for key in keys[:16] + keys[20:26]:   # read: 16 of 20 popular, 6 of 40 rare
        assert p.on_hit(db, key)
    for key in keys[16:20] + keys[26:60]:  # the rest evicted unread
        db.delete(key)
    p.reconcile()
    assert p.selection.precision(popular) == pytest.approx(0.8)
    assert p.selection.precision(rare) == pytest.approx(0.15)
    assert not p.unread_class
    issued = p.issued
    _prefetch(rig, keys[60:124], rare)
    assert p.issued - issued == 64 // CLASS_PROBE_EVERY  # only the probe went out
    _prefetch(rig, keys[124:128], popular)
    assert p.issued - issued == 64 // CLASS_PROBE_EVERY + 4


def test_keys_the_origin_lacks_are_not_prefetched_again_nor_counted_as_wasted(rig):
    from models.precision_control import MIN_OUTCOMES

    p, loader = rig.p, rig.loader
    stride = CLASS_BUCKETS + 2
    missing = [b"nope%d" % i for i in range(MIN_OUTCOMES)]
    _prefetch(rig, missing, stride)
    assert loader.reads == MIN_OUTCOMES and p.absent == MIN_OUTCOMES and p.stored == 0
    assert p.wasted == 0  # nothing was held unread in the cache
    # the same keys again: no origin read
    _prefetch(rig, missing, None)
    assert loader.reads == MIN_OUTCOMES and p.skipped_absent == MIN_OUTCOMES
    # neither the precision control nor the class is charged for them
    bar = p.control.effective_bar
    p.reconcile()
    assert p.control.effective_bar == bar
    issued = p.issued
    _prefetch(rig, [b"k%d" % i for i in range(8)], stride)  # the stride class still issues
    assert p.issued - issued == 8 and loader.reads == MIN_OUTCOMES + 8


# -- allkeys-predictive falls back to recency when the model could not predict its holdout --------
def _policy_rig(auc):
    from gpu.interface import EvictionPolicy
    from models.ranker import HeuristicRanker

    now = [1_000_000]
    keyspace = Keyspace(1, NumpyStore, Stats(), clock=lambda: now[0])
    keyspace.policy = EvictionPolicy.ALLKEYS_PREDICTIVE
    ranker = RankerService()
    model = HeuristicRanker()
    model.metrics = {"holdout": {"auc": auc}}  # as models.train records it in metrics.json
    ranker.swap(model)
    p = Prefetcher(SimpleNamespace(loop=None, keyspace=keyspace), None, ranker)
    return p, keyspace, now


def _read(p, keyspace, now, key, times=1):
    from models.keycodes import key_codes

    db = keyspace.dbs[0]
    if db.peek(key) is None:
        db.set(key, b"v" * 32)
    for _ in range(times):
        db.lookup_read(key)
        p._count_accesses([(key, 0, 0, 32, 0)], key_codes([key])[0])
    now[0] += 1000


def _victim(keyspace):
    from gpu.interface import EvictionPolicy

    return keyspace.dbs[0].store.evict(1, EvictionPolicy.ALLKEYS_PREDICTIVE, 64, keyspace.clock())


@pytest.mark.parametrize("auc, victim", [(0.95, b"new"), (0.43, b"old"), (None, b"new")])
def test_predictive_eviction_falls_back_to_recency_for_an_uninformative_model(auc, victim):
    # "old" was read often, then "new" once: by predicted reuse "new" goes; where the model's
    # holdout AUC is below MIN_HOLDOUT_AUC the order is recency's (LRU), so "old" goes. No
    # recorded AUC (the heuristic ranker) keeps the predictive order.
    p, keyspace, now = _policy_rig(auc)
    if auc is None:
        p.ranker.active.metrics = {}
    _read(p, keyspace, now, b"old", times=5)
    _read(p, keyspace, now, b"new")
    assert _victim(keyspace) == [victim]


def test_recency_fallback_admits_every_load_and_orders_prefetched_entries_by_recency():
    from gpu.interface import FLAG_PREFETCHED  # noqa: F401 (the flag the penalty reads)

    p, keyspace, now = _policy_rig(0.43)
    db = keyspace.dbs[0]
    keyspace.maxmemory = 1  # "full": the admission filter would judge every load
    for i in range(20):
        _read(p, keyspace, now, b"hot%d" % i, times=8)
    assert p.admits(db, b"never-read")
    # a prefetched entry stored after every other key is the newest, not the first to go
    loop = asyncio.new_event_loop()
    try:
        done = loop.create_future()
        done.set_result(b"v" * 32)
        p.inflight += 1
        keyspace.maxmemory = 0
        p._loaded(done, db, b"prefetched")
        assert db.store.is_prefetched(b"prefetched")
        assert _victim(keyspace) == [b"hot0"]
        # once read it keeps no extra weight: it is evicted by its recency like any key
        assert p.on_hit(db, b"prefetched")
        now[0] += 1000
        for i in range(1, 20):
            db.lookup_read(b"hot%d" % i)
        assert _victim(keyspace) == [b"prefetched"]
    finally:
        loop.close()


@pytest.mark.parametrize("precision, victim", [(0.85, b"new"), (0.003, b"old")])
def test_a_model_whose_holdout_picks_are_rarely_read_orders_nothing_and_issues_nothing(precision, victim):
    # A good AUC (0.9) but a holdout precision at the threshold under MIN_HOLDOUT_PRECISION:
    # eviction falls back to recency ("old" goes), and the model's own scores issue no prefetch
    # (only the stream floor's would).
    p, keyspace, now = _policy_rig(0.9)
    p.ranker.active.metrics["holdout"]["precision_at_threshold"] = precision
    _read(p, keyspace, now, b"old", times=5)
    _read(p, keyspace, now, b"new")
    assert _victim(keyspace) == [victim]
    assert p._model_picks_useless() is (precision < 0.1)
    scores = np.array([0.9, 0.6, 0.1], dtype=np.float32)
    usable = p._usable_scores(scores, None, None)
    assert usable.tolist() == ([0.0, 0.0, 0.0] if precision < 0.1 else scores.tolist())
