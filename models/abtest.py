"""Live A/B test of a challenger against the champion.

Keys are split by a stable hash (BLAKE2b of the key with a per-test salt), so a key always
sees the same arm for the whole test and both arms see the same traffic mix; ``ab-share``
of the keys go to the challenger. Each arm counts lookups, hits, prefetches issued and
prefetches read, and keeps inference latencies.

The decision is a sequential two-proportion z-test on the hit ratio: looks happen every
``min_samples`` lookups per arm, up to ``max_looks``; each look tests at alpha/max_looks
(Bonferroni over looks), so the chance of promoting an equal challenger over the whole test
stays below alpha = 0.05 however long it runs. The challenger is promoted when it is
significantly better (and its precision not significantly worse, its latency <= 1.1x + 20 us);
rejected when significantly worse, or when the looks run out without a verdict.

In shadow mode the challenger scores the same candidates but never acts: only prefetch
precision (would-be prefetches later read) is measurable, and the same test runs on it.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .outcomes import Outcomes, proportion_z

CHAMPION, CHALLENGER = "champion", "challenger"


def _scipy_stats() -> Any:
    """scipy.stats, imported on first use: it costs seconds at server start otherwise."""
    from scipy import stats

    return stats


def arm_of(key: bytes, share: float, salt: bytes = b"predis-ab") -> str:
    """The arm a key is served by: challenger for a stable ``share`` of the key space."""
    digest = hashlib.blake2b(key, digest_size=8, key=salt[:64]).digest()
    return CHALLENGER if int.from_bytes(digest, "big") / 2.0**64 < share else CHAMPION


@dataclass
class ArmStats(Outcomes):
    latencies_us: list[float] = field(default_factory=list)

    @property
    def latency_p50_us(self) -> float:
        return float(np.median(self.latencies_us)) if self.latencies_us else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"lookups": self.lookups, "hits": self.hits, "hit_ratio": round(self.hit_ratio, 5),
                "prefetched": self.prefetched, "prefetch_used": self.prefetch_used,
                "precision": round(self.precision, 5), "latency_p50_us": round(self.latency_p50_us, 2)}


def one_sided_p(success_a: int, n_a: int, success_b: int, n_b: int) -> float:
    """P-value that proportion a > proportion b (pooled z-test); 1.0 when undefined."""
    z = proportion_z(success_a, n_a, success_b, n_b)
    return 1.0 if z is None else float(_scipy_stats().norm.sf(z))


class ABTest:
    def __init__(self, champion_version: str, challenger_version: str, share: float = 0.1,
                 min_samples: int = 1000, alpha: float = 0.05, max_looks: int = 10, shadow: bool = False,
                 latency_factor: float = 1.1, salt: bytes = b"predis-ab", latency_slack_us: float = 20.0) -> None:
        self.champion_version = champion_version
        self.challenger_version = challenger_version
        self.share = share
        self.min_samples = min_samples
        self.alpha = alpha
        self.max_looks = max_looks
        self.shadow = shadow
        self.latency_factor = latency_factor
        self.latency_slack_us = latency_slack_us
        self.salt = salt
        self.arms = {CHAMPION: ArmStats(), CHALLENGER: ArmStats()}
        self.looks = 0
        self.decision = "running"
        self.reason = ""
        self.p_value = 1.0
        self._lock = threading.Lock()

    def arm(self, key: bytes) -> str:
        if self.shadow:
            return CHAMPION  # every key is served by the champion; the challenger only scores
        return arm_of(key, self.share, self.salt)

    # -- recording (serving) ----------------------------------------------------------------
    def record_lookups(self, arm: str, lookups: int, hits: int) -> None:
        with self._lock:
            stats = self.arms[arm]
            stats.lookups += lookups
            stats.hits += hits

    def record_prefetches(self, arm: str, issued: int, used: int) -> None:
        with self._lock:
            stats = self.arms[arm]
            stats.prefetched += issued
            stats.prefetch_used += used

    def record_latency(self, arm: str, microseconds: float) -> None:
        with self._lock:
            samples = self.arms[arm].latencies_us
            samples.append(microseconds)
            if len(samples) > 4096:
                del samples[:2048]

    # -- deciding ---------------------------------------------------------------------------
    def decide(self) -> str:
        """'running', 'promote' or 'reject'; once decided the verdict stays."""
        with self._lock:
            if self.decision != "running":
                return self.decision
            champ, chall = self.arms[CHAMPION], self.arms[CHALLENGER]
            if self.shadow:
                a_n, a_s, b_n, b_s = chall.prefetched, chall.prefetch_used, champ.prefetched, champ.prefetch_used
            else:
                a_n, a_s, b_n, b_s = chall.lookups, chall.hits, champ.lookups, champ.hits
            due = min(a_n, b_n) // max(1, self.min_samples)
            if due <= self.looks:
                return self.decision
            self.looks = min(due, self.max_looks)
            level = self.alpha / self.max_looks
            better = one_sided_p(a_s, a_n, b_s, b_n)
            worse = one_sided_p(b_s, b_n, a_s, a_n)
            self.p_value = min(better, worse)
            precision_worse = one_sided_p(champ.prefetch_used, champ.prefetched,
                                          chall.prefetch_used, chall.prefetched) < level
            slow = champ.latency_p50_us > 0 and \
                chall.latency_p50_us > self.latency_factor * champ.latency_p50_us + self.latency_slack_us
            metric = "precision" if self.shadow else "hit ratio"
            if worse < level:
                self._end("reject", f"challenger {metric} significantly lower (p={worse:.2g})")
            elif better < level and not self.shadow and precision_worse:
                self._end("reject", "hit ratio better but prefetch precision significantly lower")
            elif better < level and slow:
                self._end("reject", f"better {metric} but latency {chall.latency_p50_us:.0f}us > "
                                    f"{self.latency_factor}x champion's")
            elif better < level:
                self._end("promote", f"challenger {metric} significantly higher (p={better:.2g})")
            elif self.looks >= self.max_looks:
                self._end("reject", f"no significant difference after {self.looks} looks")
            return self.decision

    def _end(self, decision: str, reason: str) -> None:
        self.decision = decision
        self.reason = reason

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"champion_version": self.champion_version, "challenger_version": self.challenger_version,
                    "share": self.share, "shadow": self.shadow, "decision": self.decision,
                    "reason": self.reason, "looks": self.looks, "p_value": self.p_value,
                    CHAMPION: self.arms[CHAMPION].to_dict(), CHALLENGER: self.arms[CHALLENGER].to_dict()}
