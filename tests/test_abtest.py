"""A/B split, the sequential test, the validation gate and the rollback watch (unit level,
real ONNX models for the gate)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx_models import write_model_dir

from models.abtest import CHALLENGER, CHAMPION, ABTest, arm_of
from models.keycodes import key_codes
from models.ranker import OnnxRanker
from models.rollback import Figures, PromotionWatch
from models.validation import held_out, replay, validate


def test_arms_are_stable_per_key_and_match_the_share():
    keys = [b"user:%d" % i for i in range(20_000)]
    arms = [arm_of(k, 0.2) for k in keys]
    assert arms == [arm_of(k, 0.2) for k in keys]  # same key, same arm, every time
    share = arms.count(CHALLENGER) / len(arms)
    assert 0.19 < share < 0.21
    # another test (salt) reshuffles which keys are in the challenger arm
    other = [arm_of(k, 0.2, salt=b"test-2") for k in keys]
    assert other != arms


def simulate(test: ABTest, p_champion: float, p_challenger: float, seed: int, rounds: int = 200) -> str:
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        test.record_lookups(CHAMPION, 500, int(rng.binomial(500, p_champion)))
        test.record_lookups(CHALLENGER, 500, int(rng.binomial(500, p_challenger)))
        if test.decide() != "running":
            break
    return test.decision


def test_better_challenger_is_promoted_after_the_minimum_sample():
    test = ABTest("1", "2", min_samples=2000)
    test.record_lookups(CHAMPION, 1000, 400)
    test.record_lookups(CHALLENGER, 1000, 600)
    assert test.decide() == "running"  # below the minimum sample: no look yet, however clear
    assert simulate(test, 0.40, 0.46, seed=1) == "promote"
    assert test.p_value < 0.05 / test.max_looks


def test_worse_challenger_is_rejected():
    test = ABTest("1", "2", min_samples=2000)
    assert simulate(test, 0.45, 0.40, seed=2) == "reject"
    assert "lower" in test.reason


def test_equal_arms_rarely_promote():
    promoted = sum(simulate(ABTest("1", "2", min_samples=1000), 0.4, 0.4, seed=s) == "promote"
                   for s in range(40))
    assert promoted <= 2  # sequential looks at alpha/looks keep the error rate near 5% or below


def test_shadow_mode_serves_everything_with_the_champion_and_tests_precision():
    test = ABTest("1", "2", min_samples=500, shadow=True)
    assert {test.arm(b"k%d" % i) for i in range(1000)} == {CHAMPION}
    test.record_prefetches(CHAMPION, 1000, 300)
    test.record_prefetches(CHALLENGER, 1000, 450)
    assert test.decide() == "promote" and "precision" in test.reason


def test_slow_challenger_is_not_promoted():
    test = ABTest("1", "2", min_samples=1000)
    for _ in range(50):
        test.record_latency(CHAMPION, 100.0)
        test.record_latency(CHALLENGER, 150.0)
    assert simulate(test, 0.40, 0.50, seed=3) == "reject" and "latency" in test.reason


def test_watch_rolls_back_on_a_drop_beyond_the_margin():
    baseline = Figures(lookups=10_000, hits=5000, prefetched=1000, prefetch_used=600)
    watch = PromotionWatch("3", "2", baseline, margin=0.1, min_lookups=2000, window_lookups=10_000)
    assert watch.observe(1000, 300) == "watching"  # too few lookups to judge
    assert watch.observe(1500, 700) == "rollback"
    assert "hit ratio" in watch.reason
    good = PromotionWatch("3", "2", baseline, margin=0.1, min_lookups=2000, window_lookups=10_000)
    assert good.observe(5000, 2400) == "watching"  # 0.48 is within 10% of 0.50
    assert good.observe(5000, 2400) == "ok"


def test_watch_rolls_back_on_a_precision_drop():
    baseline = Figures(lookups=10_000, hits=5000, prefetched=1000, prefetch_used=600)
    watch = PromotionWatch("3", "2", baseline, margin=0.1, min_lookups=1000)
    assert watch.observe(2000, 1000, prefetched=500, prefetch_used=100) == "rollback"
    assert "precision" in watch.reason


def sequential_events(n: int = 12_000, seed: int = 0) -> dict[str, np.ndarray]:
    """Traffic with learnable successors: pages read in runs of a few fixed sequences."""
    rng = np.random.default_rng(seed)
    chains = rng.integers(0, 100_000, size=(300, 6))
    keys = []
    while len(keys) < n:
        chain = chains[int(rng.zipf(1.3)) % len(chains)]
        keys.extend(b"page:%d" % k for k in chain)
        keys.append(b"noise:%d" % rng.integers(0, 10**9))
    key_hash, prefix_hash, suffix = key_codes(keys[:n])
    return {"key_hash": key_hash, "prefix_hash": prefix_hash, "suffix": suffix}


@pytest.fixture(scope="module")
def rankers(tmp_path_factory):
    base = tmp_path_factory.mktemp("gate")
    good = OnnxRanker(write_model_dir(str(base / "good"), seed=1))
    bad = OnnxRanker(write_model_dir(str(base / "bad"), seed=1, inverted=True))
    return good, bad


def test_simulator_counts_hits_and_useful_prefetches(rankers):
    events = sequential_events()
    with_model, _ = replay(events, rankers[0], cache_size=200)
    without, _ = replay(events, _NeverPrefetch(), cache_size=200)
    assert without.prefetched == 0 and without.hits > 0
    assert with_model.prefetched > 0 and with_model.prefetch_used > 0
    assert with_model.hit_ratio > without.hit_ratio  # each useful prefetch turned a miss into a hit
    assert with_model.hits - without.hits >= with_model.prefetch_used // 2


def test_gate_passes_an_equal_model_and_refuses_a_bad_one(rankers):
    good, bad = rankers
    _, recent = held_out(sequential_events(), share=0.5)
    same = validate(good, good, recent, cache_size=200)
    assert same.passed, same.reasons
    refused = validate(good, bad, recent, cache_size=200)
    assert not refused.passed
    assert any("hit ratio" in r or "precision" in r for r in refused.reasons)


class _NeverPrefetch:
    def score(self, features):
        return np.zeros(len(features), dtype=np.float32)
