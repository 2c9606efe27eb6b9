"""Serving outcomes shared by the A/B test, the validation gate and the promotion watch."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Outcomes:
    """Lookups, hits and prefetch results of one model (or arm) over some traffic."""

    lookups: int = 0
    hits: int = 0
    prefetched: int = 0
    prefetch_used: int = 0

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0

    @property
    def precision(self) -> float:
        return self.prefetch_used / self.prefetched if self.prefetched else 0.0


def proportion_z(success_a: int, n_a: int, success_b: int, n_b: int) -> float | None:
    """z statistic of the pooled two-proportion test (a minus b); None when undefined."""
    if n_a <= 0 or n_b <= 0:
        return None
    pooled = (success_a + success_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return None
    return (success_a / n_a - success_b / n_b) / se
