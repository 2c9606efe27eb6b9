"""What prefetching costs a busy server: the learning budget bounds it, and work that would not
change what is learned or fetched is not done (issue 5: inline inference <= 10% throughput)."""
from __future__ import annotations

import random
import time
from types import SimpleNamespace

import numpy as np

from gpu.interface import EvictionPolicy
from models import prefetch as prefetch_module
from models.candidates import CandidateGenerator
from models.prefetch import BUDGET_BURST, IDLE_BONUS, LEARN_EVENTS, _thread_demand
from predis_server.config import Config
from tests.inprocess import in_process_server


class _Inline:
    """The ranker's pool, run at once (the tests read its results without a loop)."""

    def submit(self, fn):
        fn()

    def shutdown(self, **kwargs):
        pass


class _Loop:
    def __init__(self) -> None:
        self.ready: list = []

    def call_soon(self, callback, *args):
        self.ready.append((callback, args))

    call_soon_threadsafe = call_soon

    def call_later(self, *args):
        pass

    def time(self):
        return time.monotonic()

    def run_ready(self) -> None:
        while self.ready:
            callback, args = self.ready.pop(0)
            callback(*args)


def _server(origin: bool = False):
    config = Config()
    config.prefetch_enabled = True
    config.collector_sampling = 0.0
    server = in_process_server(config)
    server.loop = _Loop()
    server.prediction._reconfigure()
    prefetcher = server.prediction.prefetcher
    prefetcher.ranker.pool = _Inline()
    if origin:
        loaded = []

        class Loader:
            def __init__(self) -> None:
                self.inflight: dict = {}

            def load(self, key):
                import concurrent.futures

                loaded.append(key)
                future = concurrent.futures.Future()
                future.set_result(None)  # not in the origin
                return future

        prefetcher.loader = Loader()
        prefetcher.loaded = loaded
    return server, prefetcher


def test_budget_banks_at_most_a_burst_after_idle():
    """An idle spell refills the tokens only up to BUDGET_BURST: a load arriving after a pause
    does not get a long stretch of learning charged to its first second."""
    _, p = _server()
    p.last_refill = time.perf_counter() - 3600  # an hour idle
    p.observe([(b"k%d" % i, 0, 0, 1, 0, 0) for i in range(8)])
    assert p.tokens <= BUDGET_BURST
    assert p.budget_fraction == 0.04


def test_an_idle_loop_learns_more_a_saturated_one_the_base_share():
    """While the loop thread had CPU to spare since the last refill, the budget refills at up to
    budget_fraction + IDLE_BONUS (learning then costs clients nothing); a loop busy all the
    time gets budget_fraction, which bounds what prefetching costs a saturated server."""
    _, p = _server()
    p.tokens = -1.0
    now = time.perf_counter()
    p.last_refill = p.rate_at = now - 1.0
    p.last_demand = _thread_demand()  # a second without CPU
    p.observe([])
    assert p.refill_rate == p.budget_fraction + IDLE_BONUS
    assert abs(p.tokens - (-1.0 + p.refill_rate)) < 1e-3
    now = time.perf_counter()
    p.last_refill = p.rate_at = now - 0.5
    p.last_demand = _thread_demand() - 0.5  # busy throughout
    p.observe([])
    assert p.refill_rate == p.budget_fraction
    back = p.budget_back_at - p.last_refill
    assert abs(back - (-p.tokens) / p.budget_fraction) < 1e-6
    p.last_refill = time.perf_counter()
    p.observe([])  # within RATE_PERIOD of the last reading: the rate stays
    assert p.refill_rate == p.budget_fraction


def _hashed_lengths(monkeypatch, p) -> list[int]:
    """Feed a tick of 3 x LEARN_EVENTS events; the lengths key_codes was called with."""
    lengths = []
    real = prefetch_module.key_codes

    def spy(keys):
        lengths.append(len(keys))
        return real(keys)

    monkeypatch.setattr(prefetch_module, "key_codes", spy)
    p.observe([(b"key:%06d" % i, 0, 0, 1, 0, 0) for i in range(3 * LEARN_EVENTS)])
    return lengths


def test_only_the_learned_events_are_hashed(monkeypatch):
    """Without access counting, a tick's events beyond LEARN_EVENTS are seen, not hashed."""
    _, p = _server()
    lengths = _hashed_lengths(monkeypatch, p)
    assert lengths and lengths[0] == LEARN_EVENTS
    assert p.events_seen == 3 * LEARN_EVENTS and p.events_learned <= LEARN_EVENTS


def test_counting_still_hashes_every_event(monkeypatch):
    """allkeys-predictive counts every access: all of a tick's events are hashed."""
    server, p = _server()
    server.keyspace.policy = EvictionPolicy.ALLKEYS_PREDICTIVE
    assert _hashed_lengths(monkeypatch, p)[0] == 3 * LEARN_EVENTS


def test_wants_events_reasons():
    """Events are wanted while the budget is back, while allkeys-predictive counts accesses,
    and while an A/B test or a promotion watch reads outcomes; else not."""
    server, p = _server()
    p.tokens = -1e9
    p.observe([])
    assert not p.wants_events()
    server.keyspace.policy = EvictionPolicy.ALLKEYS_PREDICTIVE
    assert p.wants_events()
    server.keyspace.policy = EvictionPolicy.ALLKEYS_LRU
    assert not p.wants_events()
    server.mlops = SimpleNamespace(abtest=None, watch=None)
    assert not p.wants_events()
    server.mlops.watch = object()
    assert p.wants_events()
    server.mlops.watch = None
    server.mlops.abtest = object()
    assert p.wants_events()
    server.mlops = None
    assert not p.wants_events()
    p.budget_back_at = 0.0
    assert p.wants_events()


def test_acting_on_scores_is_charged_to_the_budget():
    """The scores' callback (lookups, issuing loads) runs on the loop: its CPU time comes out
    of the learning budget, and wants_events waits for the refill."""
    server, p = _server(origin=True)
    charged = []
    real = p._charge

    def spy(spent):
        charged.append(spent)
        real(spent)

    p._charge = spy
    rng = random.Random(3)
    for _ in range(6):
        p.tokens = BUDGET_BURST
        p.observe([(b"key:%06d" % rng.randrange(50), 0, 0, 1, 0, 0) for _ in range(200)])
        server.loop.run_ready()
    assert charged and all(c >= 0 for c in charged)
    p.tokens = -0.001
    p._charge(0.0)
    assert p.budget_back_at >= p.last_refill + 0.001 / p.refill_rate - 1e-9


def _scores_act(monkeypatch, p, keys, scores):
    peeked = []
    db = p.server.keyspace.dbs[0]
    real = type(db).peek

    def peek(self, key):
        peeked.append(key)
        return real(self, key)

    with monkeypatch.context() as patch:
        patch.setattr(type(db), "peek", peek)
        p._act(keys, [0] * len(keys), np.asarray(scores, dtype=np.float32))
    return peeked


def test_act_looks_up_only_what_may_be_fetched(monkeypatch):
    """Without an origin (and no reuse scores or shadow figures) nothing is looked up; with one,
    only candidates scoring at least the gate, best first, are; loads are issued as before."""
    _, p = _server()
    keys = [b"c%d" % i for i in range(6)]
    assert _scores_act(monkeypatch, p, keys, [0.9, 0.1, 0.7, 0.2, 0.95, 0.3]) == []
    assert p.candidates_scored == 6
    server, p = _server(origin=True)
    server.keyspace.dbs[0].set(b"c2", b"here", 0)
    peeked = _scores_act(monkeypatch, p, keys, [0.9, 0.1, 0.7, 0.2, 0.95, 0.3])
    assert peeked == [b"c4", b"c0", b"c2"]
    assert p.loaded == [b"c4", b"c0"]  # c2 is cached


def test_act_with_reuse_scores_looks_at_every_row(monkeypatch):
    server, p = _server(origin=True)
    server.keyspace.policy = EvictionPolicy.ALLKEYS_PREDICTIVE
    for key in (b"c1", b"c3"):
        server.keyspace.dbs[0].set(key, b"here", 0)
    keys = [b"c%d" % i for i in range(4)]
    peeked = _scores_act(monkeypatch, p, keys, [0.9, 0.1, 0.7, 0.2])
    assert sorted(peeked) == sorted(keys)
    assert p.loaded == [b"c0", b"c2"]
    store = server.keyspace.dbs[0].store
    assert store.reuse[store._index[b"c1"]] > 0  # a cached candidate got its predicted reuse


def _reference_advance(gen, prefix_id, suffix):
    """CandidateGenerator._advance_stream as first written (the loop and its min over a lambda)."""
    streams = gen.strides.get(prefix_id)
    if streams is None:
        streams = gen.strides[prefix_id] = []
    position = gen.position
    young = None
    young_distance = gen.max_step + 1
    for st in streams:
        last, step = st[0], st[1]
        if step and last + step == suffix:
            st[0] = suffix
            st[2] = min(st[2] + 1, 1000)
            st[3] = position
            return st
        if last == suffix:
            st[3] = position
            return st
        distance = abs(suffix - last)
        if st[2] == 0 and distance < young_distance:
            young, young_distance = st, distance
    if young is not None:
        young[1] = suffix - young[0]
        young[0] = suffix
        young[3] = position
        young[4] = suffix
        return young
    stream = [suffix, 0, 0, position, suffix]
    if len(streams) < gen.max_streams:
        streams.append(stream)
    else:
        oldest = min(range(len(streams)), key=lambda i: streams[i][3])
        streams[oldest] = stream
    return stream


def test_stream_tracking_matches_the_reference():
    """The faster stream update keeps every stream and candidate exactly as before: scans,
    interleaved scans, re-reads, negative steps and random reads over few prefixes."""
    rng = random.Random(11)
    accesses = []
    scans = [[rng.randrange(3), rng.randrange(10_000), rng.choice([1, 2, 3, -1, -4, 7])] for _ in range(24)]
    for _ in range(30_000):
        r = rng.random()
        if r < 0.6:
            scan = rng.choice(scans)
            accesses.append((scan[0], scan[1]))
            scan[1] += scan[2] if rng.random() < 0.9 else 0
        elif r < 0.7:
            accesses.append((rng.randrange(3), accesses[-1][1] if accesses else 0))
        else:
            accesses.append((rng.randrange(3), rng.randrange(50_000)))
    fast, reference = CandidateGenerator(), CandidateGenerator()
    reference._advance_stream = lambda pid, sfx: _reference_advance(reference, pid, sfx)
    for n, (prefix, suffix) in enumerate(accesses):
        key = prefix * 1_000_000 + suffix
        for gen in (fast, reference):
            gen.observe(key, prefix, suffix)
        rows_fast, rows_reference = [], []
        fast.candidates(key, prefix, suffix, rows_fast)
        reference.candidates(key, prefix, suffix, rows_reference)
        assert rows_fast == rows_reference, n
    assert fast.strides == reference.strides


def test_follower_ranking_keeps_ties_in_insertion_order():
    gen = CandidateGenerator(window=1)
    for follower in (5, 6, 7, 6, 8):
        gen.observe(1, 0, -1)
        gen.observe(follower, 0, -1)
    rows = []
    gen.candidates(1, 0, -1, rows)
    assert [row[0] for row in rows] == [6, 5, 7, 8]


def test_a_busy_tick_out_of_budget_costs_little():
    """A prefetcher out of budget refuses events at once (the C path then only counts them)."""
    _, p = _server()
    p.tokens = -1.0
    p.observe([])
    assert not p.wants_events()
    started = time.perf_counter()
    for _ in range(20_000):
        p.wants_events()
    assert (time.perf_counter() - started) / 20_000 < 20e-6  # generous: a shared CI machine

