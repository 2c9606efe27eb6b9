"""After a promotion: watch the new champion, and put the old one back if it does worse.

``PromotionWatch`` holds the previous champion's live figures (its A/B arm, or the window
before the promotion) and the new champion's since the promotion. Once the watch window has
``min_lookups`` lookups, a relative drop of hit ratio or prefetch precision beyond
``model-rollback-margin`` (0.1 = 10% below the old figure) calls for a rollback; a window
that ends without one closes the watch.

``roll_back`` does the flip: registry aliases (champion <- previous), a hot reload of the
old model through the serving reloader (validated like any load), and an audit entry. It is
what both the automatic watch and ``PREDIS.MODEL ROLLBACK`` call.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .outcomes import Outcomes

log = logging.getLogger("predis.models")


Figures = Outcomes  # what the watch compares: the champion's live figures


class PromotionWatch:
    def __init__(self, new_version: str, previous_version: str, baseline: Figures, margin: float = 0.1,
                 min_lookups: int = 2000, window_lookups: int = 50_000, min_prefetches: int = 200) -> None:
        self.new_version = new_version
        self.previous_version = previous_version
        self.baseline = baseline
        self.margin = margin
        self.min_lookups = min_lookups
        self.window_lookups = window_lookups
        self.min_prefetches = min_prefetches
        self.current = Figures()
        self.started = time.time()
        self.verdict = "watching"
        self.reason = ""

    def observe(self, lookups: int, hits: int, prefetched: int = 0, prefetch_used: int = 0) -> str:
        """Add live figures of the new champion; returns 'watching', 'ok' or 'rollback'."""
        if self.verdict != "watching":
            return self.verdict
        c = self.current
        c.lookups += lookups
        c.hits += hits
        c.prefetched += prefetched
        c.prefetch_used += prefetch_used
        if c.lookups < self.min_lookups:
            return self.verdict
        floor_hit = self.baseline.hit_ratio * (1 - self.margin)
        if c.hit_ratio < floor_hit:
            self.verdict = "rollback"
            self.reason = f"hit ratio {c.hit_ratio:.4f} < {floor_hit:.4f} ({self.margin:.0%} below " \
                          f"v{self.previous_version}'s {self.baseline.hit_ratio:.4f})"
        elif c.prefetched >= self.min_prefetches and self.baseline.prefetched >= self.min_prefetches \
                and c.precision < self.baseline.precision * (1 - self.margin):
            self.verdict = "rollback"
            self.reason = f"prefetch precision {c.precision:.4f} more than {self.margin:.0%} below " \
                          f"v{self.previous_version}'s {self.baseline.precision:.4f}"
        elif c.lookups >= self.window_lookups:
            self.verdict = "ok"
        return self.verdict

    def status(self) -> dict[str, Any]:
        return {"new_version": self.new_version, "previous_version": self.previous_version,
                "verdict": self.verdict, "reason": self.reason, "margin": self.margin,
                "baseline_hit_ratio": round(self.baseline.hit_ratio, 5),
                "current_hit_ratio": round(self.current.hit_ratio, 5),
                "baseline_precision": round(self.baseline.precision, 5),
                "current_precision": round(self.current.precision, 5), "lookups": self.current.lookups}


def roll_back(registry: Any, load: Callable[[str], tuple[bool, str]], audit: Callable[..., None] | None,
              reason: str, tenant: str = "", by: str = "auto") -> tuple[str, str]:
    """Champion back to the previous version, hot-reloaded; returns (bad, restored) versions.

    The old model is loaded before the aliases move, so a restore that fails validation leaves
    the registry saying what actually serves.
    """
    from .registry import CHAMPION, PREVIOUS, RegistryError

    previous = registry.alias_version(PREVIOUS, tenant)
    current = registry.alias_version(CHAMPION, tenant)
    if previous is None or current is None:
        raise RegistryError("no previous champion to roll back to")
    path = registry.fetch(previous, tenant)
    ok, message = load(path)
    if not ok:
        raise RegistryError(f"restoring v{previous} failed: {message}")
    bad, restored = registry.rollback(tenant)
    log.warning("model rollback (%s): v%s -> v%s: %s", by, bad, restored, reason)
    if audit is not None:
        audit("model-rollback", by=by, from_version=bad, to_version=restored, reason=reason,
              tenant=tenant or "global")
    return bad, restored
