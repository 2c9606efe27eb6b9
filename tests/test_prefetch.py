"""Prefetching against a live server: strides and transitions turn misses into hits."""
from __future__ import annotations

import time

import pytest
import redis
from servers import predis_process, sqlite_origin


@pytest.fixture(scope="module")
def origin_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("prefetch") / "origin.db"
    sqlite_origin(path, [(b"item:%d" % i, b"x" * 100) for i in range(1000)]
                  + [(b"page:%s" % n, b"p") for n in (b"a", b"b", b"c")])
    return path


def _scan(r, n, pause=0.004):
    for i in range(n):
        assert r.get(b"item:%d" % i) == b"x" * 100
        time.sleep(pause)


def test_stride_prefetch_turns_a_scan_into_hits(origin_path):
    with predis_process("--origin", f"sqlite://{origin_path}", "--prefetch-enabled", "yes") as server:
        r = redis.Redis(port=server.port)
        _scan(r, 150)
        time.sleep(1.2)  # one reconcile pass
        info = r.info("prediction")
        stats = r.info("stats")
        assert info["prefetches_used"] >= 120, info
        assert stats["keyspace_hits"] >= 120  # clients never asked for these keys before
        assert float(info["prefetch_precision"]) >= 0.5
        assert info["origin_reads"] <= 1.5 * 150
        assert r.object("idletime", "item:1") is not None
        # marked entries: the one prefetched ahead of the scan is unread
        assert info["prefetches_unread"] >= 1


def test_prefetched_hits_count_in_pipelined_runs(origin_path):
    """GETs pipelined in fast runs still report prefetched hits to the prefetcher."""
    with predis_process("--origin", f"sqlite://{origin_path}", "--prefetch-enabled", "yes") as server:
        r = redis.Redis(port=server.port)
        _scan(r, 60)  # a stride: item:60.. get prefetched
        time.sleep(0.3)
        before = r.info("prediction")["prefetches_used"]
        pipe = r.pipeline(transaction=False)
        for i in range(60, 70):
            pipe.get(b"item:%d" % i)
        assert pipe.execute() == [b"x" * 100] * 10
        time.sleep(0.1)
        assert r.info("prediction")["prefetches_used"] > before


def test_prefetch_off_is_plain_read_through(origin_path):
    with predis_process("--origin", f"sqlite://{origin_path}") as server:
        r = redis.Redis(port=server.port)
        _scan(r, 30, 0)
        info = r.info("prediction")
        assert info["prefetch_enabled"] == 0 and info["prefetches_issued"] == 0
        assert r.info("stats")["keyspace_hits"] == 0 and info["origin_reads"] == 30


def test_transitions_are_prefetched_and_limits_apply(origin_path):
    with predis_process("--origin", f"sqlite://{origin_path}", "--prefetch-enabled", "yes",
                        "--prefetch-max-inflight", "0") as server:
        r = redis.Redis(port=server.port)
        _scan(r, 20)
        info = r.info("prediction")
        assert info["prefetches_issued"] == 0 and info["prefetch_skipped_inflight"] > 0
        r.config_set("prefetch-max-inflight", "16")
        for _ in range(4):  # teach a -> b -> c
            for name in (b"a", b"b", b"c"):
                r.get(b"page:" + name)
                time.sleep(0.005)
            r.delete("page:b", "page:c")
        time.sleep(0.05)
        r.get("page:a")
        time.sleep(0.1)
        assert r.exists("page:b") == 1  # fetched before anyone asked
        assert r.info("prediction")["prefetches_issued"] >= 1


def test_unused_prefetched_entries_are_evicted_first(origin_path):
    with predis_process("--origin", f"sqlite://{origin_path}", "--prefetch-enabled", "yes",
                        "--maxmemory-policy", "allkeys-predictive", "--maxmemory-samples", "64") as server:
        r = redis.Redis(port=server.port)
        for i in range(40):
            r.set(b"user:%d" % i, b"y" * 100)
        _scan(r, 60)
        time.sleep(0.1)
        unread_before = r.info("prediction")["prefetches_unread"]
        assert unread_before >= 1
        used = int(r.info("memory")["used_memory"])
        r.config_set("maxmemory", str(used - 600))
        r.set("trigger", "1")  # a write enforces maxmemory
        time.sleep(1.2)
        info = r.info("prediction")
        # the unread prefetched entry goes first (scored -2 below every other key)
        assert info["prefetches_wasted"] >= 1 and info["prefetches_unread"] < unread_before


# -- MLOps hooks (no server: a Prefetcher on stand-ins, the real ABTest and PromotionWatch) --------
class _Store:
    def __init__(self):
        self.prefetched = set()

    def is_prefetched(self, key):
        return key in self.prefetched

    def mark_prefetched(self, key, flag):
        (self.prefetched.add if flag else self.prefetched.discard)(key)


class _Db:
    id = 0

    def __init__(self):
        self.store = _Store()


class _Loader:
    def __init__(self, loop):
        self.loop = loop
        self.inflight = {}

    def load(self, key):
        return self.loop.create_future()


class _ConstantRanker:
    version = "const"

    def __init__(self, value):
        self.value = value

    def score(self, features):
        import numpy as np

        return np.full(len(features), self.value, dtype=np.float32)


def _prefetcher(mlops):
    import asyncio
    from types import SimpleNamespace

    from models.prefetch import Prefetcher
    from models.ranker import RankerService

    loop = asyncio.new_event_loop()
    server = SimpleNamespace(loop=loop, keyspace=SimpleNamespace(maxmemory=0))
    if mlops is not None:
        server.mlops = mlops
    return Prefetcher(server, _Loader(loop), RankerService()), loop


def test_ab_arms_score_record_lookups_prefetches_and_latency():
    from types import SimpleNamespace

    import numpy as np

    from models.abtest import CHALLENGER, ABTest

    abtest = ABTest("1", "2", share=0.5)
    abtest.challenger_ranker = _ConstantRanker(0.75)
    p, loop = _prefetcher(SimpleNamespace(abtest=abtest, watch=None))
    keys = [b"k%d" % i for i in range(200)]
    events = [(k, 0, i % 3 == 0, 8, 0) for i, k in enumerate(keys)]  # outcome 1 (miss) for every third
    p._mlops_outcomes(p.server.mlops, events)
    arms = [abtest.arm(k) for k in keys]
    chall = abtest.arms[CHALLENGER]
    assert 40 < chall.lookups < 160 and chall.lookups == arms.count(CHALLENGER)
    assert chall.hits == sum(1 for a, e in zip(arms, events) if a == CHALLENGER and e[2] != 1)
    assert abtest.arms["champion"].lookups == 200 - chall.lookups
    split = p._split_ranker(keys)
    scores = split.score(np.zeros((200, 9), dtype=np.float32))  # heuristic champion scores zeros as 0
    assert all((s == 0.75) == (a == CHALLENGER) for s, a in zip(scores.tolist(), arms))
    assert chall.latencies_us and abtest.arms["champion"].latencies_us
    # a challenger-scored prefetch and its use are the challenger's
    key = keys[arms.index(CHALLENGER)]
    db = _Db()
    p._issue(db, key, CHALLENGER)
    p.unread[key] = (0, 8)
    db.store.mark_prefetched(key, True)
    assert p.on_hit(db, key) is True
    assert (chall.prefetched, chall.prefetch_used) == (1, 1)
    assert abtest.arms["champion"].prefetched == 0
    loop.close()


def test_shadow_mode_counts_would_be_prefetches_per_arm():
    from types import SimpleNamespace

    from models.abtest import ABTest

    abtest = ABTest("1", "2", shadow=True)
    p, loop = _prefetcher(SimpleNamespace(abtest=abtest, watch=None))
    p._shadow_note(b"a", True, True)
    p._shadow_note(b"b", False, True)
    p._shadow_note(b"b", False, True)  # scored again: still one would-be prefetch
    p._mlops_outcomes(p.server.mlops, [(b"a", 0, 1, 0, 0), (b"b", 0, 1, 0, 0), (b"c", 0, 1, 0, 0)])
    champ, chall = abtest.arms["champion"], abtest.arms["challenger"]
    assert (champ.prefetched, champ.prefetch_used) == (1, 1)
    assert (chall.prefetched, chall.prefetch_used) == (2, 2)
    assert champ.lookups == 3 and chall.lookups == 0  # shadow: the champion serves every key
    loop.close()


def test_promotion_watch_gets_champion_figures_and_hooks_are_noops_without_mlops():
    from types import SimpleNamespace

    from models.rollback import Figures, PromotionWatch

    watch = PromotionWatch("2", "1", Figures(lookups=100, hits=50), min_lookups=4)
    p, loop = _prefetcher(SimpleNamespace(abtest=None, watch=watch))
    p.stored, p.used = 10, 7
    p.observe([(b"x%d" % i, 0, 1 if i < 3 else 0, 8, 0) for i in range(4)])
    assert (watch.current.lookups, watch.current.hits) == (4, 1)
    assert (watch.current.prefetched, watch.current.prefetch_used) == (10, 7)
    assert watch.verdict == "rollback"  # 25% hits vs the previous champion's 50%
    loop.close()
    bare, loop = _prefetcher(None)
    bare.observe([(b"x1", 0, 0, 8, 0), (b"x2", 0, 0, 8, 0)])  # no mlops: nothing to feed, no error
    assert bare._split_ranker([b"x1"]) is None and bare.events_seen == 2
    loop.close()


def test_ranker_cpu_time_is_charged_to_the_learning_budget():
    """Scoring runs on the ranker's worker thread, on the same cores as the server: its CPU
    time comes out of the prefetcher's learning budget, as the learning's own does."""
    import asyncio
    import time

    import numpy as np

    from models.features import FEATURE_NAMES

    p, loop = _prefetcher(None)
    features = np.random.default_rng(0).random((200_000, len(FEATURE_NAMES)), dtype=np.float32)
    scored = loop.create_future()
    assert p.ranker.submit(features, scored.set_result, loop)
    loop.run_until_complete(asyncio.wait_for(scored, 30))
    spent = p.ranker.cpu_seconds
    assert spent > 0
    before = p.tokens
    p.last_refill = time.perf_counter()
    p.observe([])
    assert p.tokens <= before - spent + 1e-3
    p.observe([])
    assert p.ranked_charged == spent  # charged once
    loop.close()
