"""Rankers the prefetcher assembles per batch around the served model: an A/B split
(``SplitRanker``), per-tenant models over the global one (``TenantRanker``), and the stream
floor that keeps long-running streams at the heuristic's probability (``stream_floor``)."""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from .ranker import HeuristicRanker

log = logging.getLogger("predis.prefetch")

CHAMPION_ARM, CHALLENGER_ARM = "champion", "challenger"  # models.abtest's arm names


def stream_floor(features: np.ndarray, min_confidence: int) -> np.ndarray | None:
    """Least score of each candidate: the heuristic's for long-running streams, else 0.

    A model only knows the patterns of its training window: a range scan that did not occur
    there (database scans every few minutes, ML validation passes once an epoch) looks to it
    like the short false streams of random reads. A stream that has already continued
    ``min_confidence`` times (config ``prefetch-stream-floor``; 0 = off, the default, so the
    model alone decides) is no accident; its next steps keep the heuristic's probability
    (confidence^distance decay), so the model can raise but not veto them. None: no floor.
    """
    if min_confidence <= 0:
        return None
    confidence = np.expm1(features[:, 5])
    long_stream = (features[:, 4] > 0) & (confidence >= min_confidence)
    if not long_stream.any():
        return None
    return np.where(long_stream, HeuristicRanker().score(features), 0.0).astype(np.float32)


class SplitRanker:
    """Scores each row with its A/B arm's model; records each arm's inference latency."""

    def __init__(self, champion: Any, challenger: Any, challenger_rows: np.ndarray | None,
                 abtest: Any) -> None:
        self.champion = champion
        self.challenger = challenger
        self.challenger_rows = challenger_rows  # bool mask; None: shadow (both score every row)
        self.abtest = abtest
        self.version = f"{champion.version}|{challenger.version}"
        self.shadow_scores: np.ndarray | None = None

    def _timed(self, arm: str, ranker: Any, features: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        scores = np.asarray(ranker.score(features), dtype=np.float32)
        self.abtest.record_latency(arm, (time.perf_counter() - start) * 1e6)
        return scores

    def score(self, features: np.ndarray) -> np.ndarray:
        mask = self.challenger_rows
        if mask is None:
            self.shadow_scores = self._timed(CHALLENGER_ARM, self.challenger, features)
            return self._timed(CHAMPION_ARM, self.champion, features)
        scores = np.zeros(len(features), dtype=np.float32)
        if (~mask).any():
            scores[~mask] = self._timed(CHAMPION_ARM, self.champion, features[~mask])
        if mask.any():
            scores[mask] = self._timed(CHALLENGER_ARM, self.challenger, features[mask])
        return scores

class TenantRanker:
    """The global ranker (or A/B split) for every row, then each tenant's own model for its rows.

    The base scores every row so an A/B split's per-row arms and shadow scores stay aligned
    with the batch; a tenant model that fails leaves its rows the base's scores."""

    def __init__(self, base: Any, owned: list[tuple[Any, np.ndarray]]) -> None:
        self.base = base
        self.owned = owned  # (tenant's ranker, bool row mask)
        self.version = "|".join([str(base.version)] + [str(r.version) for r, _ in owned])

    def score(self, features: np.ndarray) -> np.ndarray:
        scores = np.array(self.base.score(features), dtype=np.float32)
        for ranker, rows in self.owned:
            try:
                scores[rows] = np.asarray(ranker.score(features[rows]), dtype=np.float32)
            except Exception:  # a broken tenant model: the global model serves the tenant
                log.warning("tenant model %s failed; the global model scored its rows", ranker.version,
                            exc_info=True)
        return scores


SHADOW_HORIZON = 4096  # would-be (shadow) prefetches remembered: 2-4x this many


class MlopsHooks:
    """The prefetcher's MLOps hooks (``models.prefetch.Prefetcher`` inherits them): the A/B
    split of each batch, shadow would-be prefetches, per-arm outcomes and the promotion
    watch's figures. They read the prefetcher's server, ranker, counters and hook state."""

    def _split_ranker(self, keys: list[bytes]) -> SplitRanker | None:
        abtest = getattr(getattr(self.server, "mlops", None), "abtest", None)
        if abtest is None or getattr(abtest, "decision", "running") != "running":
            return None
        challenger = self._challenger_ranker(abtest)
        if challenger is None:
            return None
        if abtest.shadow:
            mask = None
        else:
            mask = np.fromiter((abtest.arm(k) == CHALLENGER_ARM for k in keys), dtype=bool, count=len(keys))
        return SplitRanker(self.ranker.active, challenger, mask, abtest)

    def _challenger_ranker(self, abtest: Any) -> Any:
        ranker = getattr(abtest, "challenger_ranker", None)
        if ranker is not None:
            return ranker
        version = str(abtest.challenger_version)
        if version not in self.challenger_rankers:
            self.challenger_rankers.clear()
            try:
                from .ranker import OnnxRanker

                self.challenger_rankers[version] = OnnxRanker(self.server.mlops.get_registry().fetch(version))
            except Exception:  # no registry copy: the champion serves every arm, recorded as such
                self.challenger_rankers[version] = None
        return self.challenger_rankers[version]

    def _shadow_note(self, key: bytes, champion_would: bool, challenger_would: bool) -> None:
        bits = (1 if champion_would else 0) | (2 if challenger_would else 0)
        if not bits:
            return
        abtest = self.server.mlops.abtest
        pending = self.shadow_pending
        earlier = pending.pop(key, 0)  # re-inserted: the dict's order stays oldest-first
        new = bits & ~earlier
        if new & 1:
            abtest.record_prefetches(CHAMPION_ARM, 1, 0)
        if new & 2:
            abtest.record_prefetches(CHALLENGER_ARM, 1, 0)
        pending[key] = earlier | bits
        if len(pending) > 4 * SHADOW_HORIZON:
            for stale in list(pending)[:len(pending) - 2 * SHADOW_HORIZON]:
                del pending[stale]

    def _mlops_outcomes(self, mlops: Any, events: list[tuple]) -> None:
        """Per-arm lookups/hits (and shadow uses) for the A/B test; the champion's figures for the watch."""
        abtest = getattr(mlops, "abtest", None)
        if abtest is not None and getattr(abtest, "decision", "running") != "running":
            abtest = None
        lookups = {CHAMPION_ARM: 0, CHALLENGER_ARM: 0}
        hits = {CHAMPION_ARM: 0, CHALLENGER_ARM: 0}
        if abtest is not None:
            shadow = abtest.shadow
            pending = self.shadow_pending
            for event in events:  # (key, op, outcome, size, db[, tenant])
                key = event[0]
                arm = abtest.arm(key)
                lookups[arm] += 1
                if event[2] != 1:
                    hits[arm] += 1
                if shadow and pending:
                    bits = pending.pop(key, 0)
                    if bits & 1:
                        abtest.record_prefetches(CHAMPION_ARM, 0, 1)
                    if bits & 2:
                        abtest.record_prefetches(CHALLENGER_ARM, 0, 1)
            for arm in (CHAMPION_ARM, CHALLENGER_ARM):
                if lookups[arm]:
                    abtest.record_lookups(arm, lookups[arm], hits[arm])
        else:
            lookups[CHAMPION_ARM] = len(events)
            hits[CHAMPION_ARM] = sum(1 for e in events if e[2] != 1)
        watch = getattr(mlops, "watch", None)
        if watch is not None and getattr(watch, "verdict", "watching") == "watching":
            stored, used = self.watch_fed
            if abtest is not None and not abtest.shadow:
                # the challenger arm's prefetches are not the champion's
                prefetched, prefetch_used = 0, 0
            else:
                prefetched, prefetch_used = self.stored - stored, self.used - used
            self.watch_fed = (self.stored, self.used)
            watch.observe(lookups[CHAMPION_ARM], hits[CHAMPION_ARM], prefetched, prefetch_used)
