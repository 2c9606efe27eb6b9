"""Each generator's statistics match its parameters."""

from __future__ import annotations

import numpy as np
import pytest

from workloads.generators import GENERATORS, make_generator
from workloads.generators.base import ZipfSampler, rank_frequency_slope
from workloads.generators.database import DatabaseGenerator
from workloads.generators.gaming import GamingGenerator
from workloads.generators.hft import HFTGenerator
from workloads.generators.ml_training import MLTrainingGenerator
from workloads.generators.web import WebGenerator
from workloads.trace import OP_GET, OP_SET, TRACE_DTYPE, concat


def _within(observed: float, expected: float, n: int) -> bool:
    """Binomial proportion within 4 standard deviations."""
    sd = np.sqrt(max(expected * (1 - expected), 1e-9) / n)
    return abs(observed - expected) <= 4 * sd + 1e-9


@pytest.mark.parametrize("kind", list(GENERATORS))
def test_seeded_exact_count_and_streaming(kind: str) -> None:
    a = list(make_generator(kind, seed=7).chunks(10_000, chunk_size=3000))
    b = concat(make_generator(kind, seed=7).chunks(10_000, chunk_size=4096))
    c = concat(make_generator(kind, seed=8).chunks(10_000))
    assert [len(x) for x in a] == [3000, 3000, 3000, 1000]
    assert all(x.dtype == TRACE_DTYPE for x in a)
    assert np.array_equal(concat(a), b)
    assert not np.array_equal(b["key"], c["key"])
    assert np.all(np.diff(b["ts"]) >= 0)
    assert np.all(b["size"] > 0)
    # The same object always has the same size.
    order = np.argsort(b["key"], kind="stable")
    k, s = b["key"][order], b["size"][order]
    same = k[1:] == k[:-1]
    assert np.array_equal(s[1:][same], s[:-1][same])


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(ValueError):
        make_generator("ml-training", shuffle="sideways")
    with pytest.raises(ValueError):
        make_generator("web", write_fraction=1.5)
    with pytest.raises(ValueError):
        make_generator("nope")


def test_zipf_sampler_matches_pmf() -> None:
    rng = np.random.default_rng(0)
    ranks = ZipfSampler(50, 1.0).sample(rng, 200_000)
    pmf = 1 / np.arange(1, 51)
    pmf /= pmf.sum()
    freq = np.bincount(ranks, minlength=50) / len(ranks)
    assert np.allclose(freq, pmf, atol=0.004)


@pytest.mark.parametrize("alpha", [0.7, 1.1])
def test_web_zipf_slope_matches_alpha(alpha: float) -> None:
    gen = WebGenerator(objects=20_000, alpha=alpha, diurnal_swap=0.0, churn_per_hour=0.0, seed=3)
    trace = concat(gen.chunks(200_000))
    assert abs(rank_frequency_slope(trace["key"], top=500, skip=2) + alpha) < 0.08


def test_web_write_mix_churn_and_diurnal_rate() -> None:
    p = dict(objects=10_000, write_fraction=0.1, churn_per_hour=0.05, rate=100.0, day_seconds=1000.0,
             diurnal_amplitude=0.6, seed=5)
    trace = concat(WebGenerator(**p).chunks(100_000))
    writes = float(np.mean(trace["op"] == OP_SET))
    assert _within(writes, 0.1, len(trace))
    hours = trace["ts"][-1] / 3600
    new_ids = np.unique(trace["key"][trace["key"] >= p["objects"]])
    expected_new = hours * p["churn_per_hour"] * p["objects"]
    assert len(new_ids) > 0.5 * expected_new and len(new_ids) <= expected_new + 1
    # Rate follows 1 + A sin: the first half-day is busier than the second by (1+2A/π)/(1-2A/π).
    phase = np.mod(trace["ts"], p["day_seconds"]) / p["day_seconds"]
    ratio = np.count_nonzero(phase < 0.5) / np.count_nonzero(phase >= 0.5)
    a = p["diurnal_amplitude"] * 2 / np.pi
    assert abs(ratio - (1 + a) / (1 - a)) < 0.25 * (1 + a) / (1 - a)


def test_ml_training_sample_shuffle_epochs_are_permutations() -> None:
    gen = MLTrainingGenerator(samples=3000, shards=30, jobs=1, validation_samples=0, checkpoint_parts=0, seed=1)
    trace = concat(gen.chunks(9000))
    epochs = trace["key"].reshape(3, 3000)
    for e in epochs:
        assert np.array_equal(np.sort(e), np.arange(3000))
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled per epoch
    assert float(np.mean(np.diff(trace["key"].astype(np.int64)) == 1)) < 0.01  # no sequential runs
    assert np.all(trace["op"] == OP_GET)


def test_ml_training_shard_shuffle_sequentiality() -> None:
    samples, shards = 5000, 50
    gen = MLTrainingGenerator(samples=samples, shards=shards, shuffle="shard", jobs=1, validation_samples=0,
                              checkpoint_parts=0, seed=2)
    keys = concat(gen.chunks(2 * samples))["key"].astype(np.int64)
    seq = float(np.mean(np.diff(keys[:samples]) == 1))
    assert abs(seq - (samples - shards) / (samples - 1)) < 0.01
    assert len(np.unique(keys)) == samples  # working set is exactly the dataset


def test_ml_training_jobs_validation_and_checkpoints() -> None:
    p = dict(samples=2000, shards=20, jobs=3, validation_samples=200, checkpoint_parts=4, restart_prob=0.0, seed=4)
    gen = MLTrainingGenerator(**p)
    trace = concat(gen.chunks(30_000))
    keys = trace["key"].astype(np.int64)
    # Working set: samples + validation + one checkpoint per job.
    assert len(np.unique(keys)) == 2000 + 200 + 3 * 4
    assert set(np.unique(trace["tenant"]).tolist()) == {0, 1, 2}
    ckpt = keys >= 2200
    assert np.all(trace["op"][~ckpt] == OP_GET)
    writes = trace["op"] == OP_SET
    assert writes.any() and np.all(ckpt[writes])
    # Validation of one job reads in id order.
    job0 = trace[(trace["tenant"] == 0)]
    val = job0["key"][(job0["key"] >= 2000) & (job0["key"] < 2200)].astype(np.int64)
    assert np.all(np.diff(val[:200]) == 1)


def test_hft_symbol_skew_group_reads_write_mix_and_bursts() -> None:
    p = dict(symbols=2000, alpha=1.0, book_depth=3, group_read_prob=0.5, write_fraction=0.25, rate=100.0,
             session_seconds=1000.0, auction_seconds=100.0, burst_factor=4.0, seed=9)
    gen = HFTGenerator(**p)
    trace = concat(gen.chunks(150_000))
    f = gen.fields
    keys = trace["key"].astype(np.int64)
    field_no = keys % f
    events = field_no == 0
    event_writes = (trace["op"] == OP_SET) & events
    assert _within(float(event_writes.sum() / events.sum()), 0.25, int(events.sum()))
    # Requests per event: writes 2, group reads f, quote reads 1.
    w, g = 0.25, 0.5
    expected_writes = 2 * w / (2 * w + (1 - w) * (g * f + (1 - g)))
    assert abs(float(np.mean(trace["op"] == OP_SET)) - expected_writes) < 0.01
    # A group is read back to back: every book-level key follows its symbol's previous field.
    later = np.flatnonzero(field_no[1:] > 0) + 1
    assert np.all(keys[later] == keys[later - 1] + 1)
    sym = keys[events] // f
    assert abs(rank_frequency_slope(sym, top=300, skip=2) + 1.0) < 0.1
    t = trace["ts"][events]
    gaps, auction = np.diff(t), gen.in_auction(t[:-1])
    assert auction.any() and (~auction).any()
    rate_in, rate_out = 1 / gaps[auction].mean(), 1 / gaps[~auction].mean()
    assert 3.0 < rate_in / rate_out < 5.0


def test_gaming_zone_loads_neighbours_and_working_set() -> None:
    p = dict(worlds=2, grid=4, assets_per_zone=20, shared_assets=50, shared_per_load=5, concurrent_players=1,
             session_moves=10_000.0, save_prob=0.3, seed=11)
    gen = GamingGenerator(**p)
    trace = concat(gen.chunks(30_000))
    keys = trace["key"].astype(np.int64)
    zone = gen.zone_of(keys)
    # Zone assets load together and in order.
    own = zone >= 0
    starts = np.flatnonzero(own & (keys % 20 == 0))
    for s in starts[:-1]:
        assert np.array_equal(keys[s:s + 20], np.arange(keys[s], keys[s] + 20))
    # One player with a very long session moves only between grid neighbours.
    loads = zone[starts]
    for a, b in zip(loads[:-1], loads[1:]):
        assert b in gen.neighbours(int(a))
    assert len(np.unique(keys)) <= gen.zones * 20 + 50 + 1
    writes = trace["op"] == OP_SET
    assert np.all(keys[writes] >= gen.profile_base)
    # About save_prob saves per move.
    assert abs(writes.sum() / len(starts) - 0.3) < 0.05


def test_gaming_sessions_start_and_end() -> None:
    gen = GamingGenerator(concurrent_players=20, session_moves=5.0, seed=2)
    trace = concat(gen.chunks(50_000))
    profiles = np.unique(trace["key"][trace["key"] >= gen.profile_base])
    assert len(profiles) > 100  # players come and go
    loads = np.count_nonzero((gen.zone_of(trace["key"]) >= 0) & (trace["key"] % gen.params.assets_per_zone == 0))
    assert abs(loads / len(profiles) - (5.0 + 1)) < 1.5  # spawn + ~5 moves per session


def test_database_skew_without_locality() -> None:
    gen = DatabaseGenerator(pages=20_000, alpha=0.9, locality=0.0, index_reads=False, scan_interval=0,
                            write_fraction=0.3, seed=3)
    trace = concat(gen.chunks(200_000))
    assert abs(rank_frequency_slope(trace["key"], top=500, skip=2) + 0.9) < 0.08
    assert _within(float(np.mean(trace["op"] == OP_SET)), 0.3, len(trace))


def test_database_locality_index_and_scans() -> None:
    p = dict(pages=5000, locality=1.0, locality_window=8, clients=1, index_reads=True, fanout=100,
             scan_interval=6000, scan_length=500, write_fraction=0.2, seed=5)
    gen = DatabaseGenerator(**p)
    trace = concat(gen.chunks(60_000))
    keys = trace["key"].astype(np.int64)
    root = keys == 5000
    leaf_after_index = np.flatnonzero(root) + 2
    leaves = keys[leaf_after_index]
    assert np.all(keys[leaf_after_index - 1] == 5001 + leaves // 100)  # inner page above the leaf
    assert np.all(np.abs(np.diff(leaves)) <= 8)  # one client walks within the window
    # Writes only on leaves, about write_fraction of point operations.
    writes = trace["op"] == OP_SET
    assert np.all(keys[writes] < 5000)
    assert _within(writes.sum() / root.sum(), 0.2, int(root.sum()))
    # Scans: runs of scan_length consecutive leaves, one per scan_interval requests.
    d = np.diff(keys) == 1
    runs, run = [], 0
    for x in d:
        run = run + 1 if x else 0
        if run == 499:
            runs.append(1)
    assert len(runs) == pytest.approx(60_000 / (6000 + 500), abs=2)
    # Working set bounded by leaves + root + inner pages.
    assert len(np.unique(keys)) <= 5000 + 1 + 50
