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
