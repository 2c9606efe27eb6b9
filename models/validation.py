"""Offline validation gate: replay held-out recent traffic through a prefetching cache simulator
with the champion and with the challenger; the challenger passes only with

* hit ratio >= the champion's,
* prefetch precision (prefetched entries read before eviction / prefetched) >= the champion's,
* inference latency <= 1.1 x the champion's + 20 us (median per batch, the two measured
  interleaved on the same feature batches so machine noise hits both alike; the absolute
  slack keeps two tiny models, a few microseconds apart, from failing on noise).

The simulator is the serving loop in miniature: an LRU cache of key ids, the serving
``CandidateGenerator`` and feature function, candidates scored in batches of ``batch``
accesses (serving scores one event-loop tick at a time) and those scoring >= ``threshold``
prefetched. Collector events carry key hashes only, so a stride candidate is resolved
through the (prefix, suffix) -> key map of the replayed traffic; a stride key the traffic
never reads cannot be a hit, and counts as an imprecise prefetch when issued.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .candidates import CandidateGenerator
from .features import candidate_features
from .outcomes import Outcomes

LATENCY_FACTOR = 1.1
LATENCY_SLACK_US = 20.0  # below this absolute difference a latency gap is timer and scheduler noise


@dataclass
class SimResult(Outcomes):
    latency_us: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hit_ratio": self.hit_ratio, "precision": self.precision}


@dataclass
class GateResult:
    passed: bool
    champion: SimResult
    challenger: SimResult
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": self.reasons, "champion": self.champion.to_dict(),
                "challenger": self.challenger.to_dict()}


def replay(events: dict[str, np.ndarray], ranker: Any, cache_size: int, threshold: float = 0.5,
           batch: int = 64, warmup: float = 0.25) -> tuple[SimResult, list[np.ndarray]]:
    """Simulate ``ranker`` on the events; returns the result and the feature batches it scored."""
    keys = events["key_hash"].tolist()
    prefixes = events["prefix_hash"].tolist()
    suffixes = events["suffix"].tolist()
    by_stride = {(p, s): k for k, p, s in zip(keys, prefixes, suffixes) if s >= 0}
    cache: OrderedDict[int, bool] = OrderedDict()  # key -> still an unread prefetch
    gen = CandidateGenerator()
    result = SimResult()
    start = int(len(keys) * warmup)
    pending: list[tuple[int, int, int, tuple]] = []
    batches: list[np.ndarray] = []
    latencies: list[float] = []

    def insert(key: int, prefetched: bool) -> None:
        cache[key] = prefetched
        cache.move_to_end(key)
        if len(cache) > cache_size:
            cache.popitem(last=False)

    for i, (key, prefix, suffix) in enumerate(zip(keys, prefixes, suffixes)):
        counted = i >= start
        if key in cache:
            if counted:
                result.hits += 1
                result.prefetch_used += cache[key]
            cache[key] = False
            cache.move_to_end(key)
        else:
            insert(key, False)
        result.lookups += counted
        gen.observe(key, prefix, suffix)
        gen.candidates(key, prefix, suffix, pending)
        if len(pending) >= batch or i == len(keys) - 1:
            if not pending:
                continue
            features = candidate_features(np.asarray([c[3] for c in pending], dtype=np.float64))
            began = time.perf_counter()
            scores = ranker.score(features)
            latencies.append((time.perf_counter() - began) * 1e6)
            batches.append(features)
            for (cand, stride_suffix, cand_prefix, _), score in zip(pending, scores.tolist()):
                if score < threshold:
                    continue
                target = cand if cand >= 0 else by_stride.get((cand_prefix, stride_suffix), -1)
                if target in cache:
                    continue
                result.prefetched += counted
                if target >= 0:
                    insert(target, counted)
            pending = []
    result.latency_us = float(np.median(latencies)) if latencies else 0.0
    return result, batches


def paired_latency_us(a: Any, b: Any, batches: list[np.ndarray], rounds: int = 3) -> tuple[float, float]:
    """Median inference time per batch of two models, measured alternately on the same batches."""
    times_a: list[float] = []
    times_b: list[float] = []
    sample = batches[:: max(1, len(batches) // 200)] or [np.zeros((1, 9), dtype=np.float32)]
    for _ in range(rounds):
        for features in sample:
            for model, out in ((a, times_a), (b, times_b)):
                began = time.perf_counter()
                model.score(features)
                out.append(time.perf_counter() - began)
    return float(np.median(times_a)) * 1e6, float(np.median(times_b)) * 1e6


def validate(champion: Any, challenger: Any, events: dict[str, np.ndarray], cache_size: int,
             threshold: float = 0.5, tolerance: float = 0.0) -> GateResult:
    """The gate. ``tolerance``: how far below the champion's hit ratio/precision still passes (0)."""
    champ, batches = replay(events, champion, cache_size, threshold)
    chall, _ = replay(events, challenger, cache_size, threshold)
    champ.latency_us, chall.latency_us = paired_latency_us(champion, challenger, batches)
    reasons = []
    if chall.hit_ratio < champ.hit_ratio - tolerance:
        reasons.append(f"hit ratio {chall.hit_ratio:.4f} < champion's {champ.hit_ratio:.4f}")
    if chall.precision < champ.precision - tolerance:
        reasons.append(f"prefetch precision {chall.precision:.4f} < champion's {champ.precision:.4f}")
    if champ.latency_us > 0 and chall.latency_us > LATENCY_FACTOR * champ.latency_us + LATENCY_SLACK_US:
        reasons.append(f"inference latency {chall.latency_us:.1f}us > {LATENCY_FACTOR}x champion's "
                       f"{champ.latency_us:.1f}us")
    return GateResult(not reasons, champ, chall, reasons)


def held_out(events: dict[str, np.ndarray], share: float = 0.2) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(training part, held-out most recent ``share``): the gate replays traffic the model never saw."""
    n = len(next(iter(events.values())))
    cut = int(n * (1 - share))
    return ({k: v[:cut] for k, v in events.items()}, {k: v[cut:] for k, v in events.items()})
