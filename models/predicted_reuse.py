"""Predicted reuse for ``allkeys-predictive``: every access is counted in a ``FrequencySketch``
(aged, and remembering evicted keys), and the accessed key's reuse score becomes its count;
a scored candidate already cached gets count + the model's probability. So the policy is an
LFU with history (TinyLFU's idea) where the model adds what the past alone does not show.

Recency fallback: where the served model's recorded holdout AUC is below ``MIN_HOLDOUT_AUC``
(it could not rank unseen accesses, so its past is no guide), allkeys-predictive writes no
reuse scores and admits every load: keys are evicted by recency, as under allkeys-lru
(``recency_only``; prefetched entries too, their unread penalty cancelled until read).

Admission (same policy): once memory is full, a demand-loaded key whose count is below a
quantile of the cached keys' reuse is answered but not stored (``AdmissionFilter``).

``PredictedReuse`` is a part of ``models.prefetch.Prefetcher`` (which provides ``server`` and
``ranker``): the counting, scoring and admission the eviction order rests on.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from gpu.interface import EvictionPolicy

from .collector import MISS
from .frequency import ADMIT_WHEN_FULL, AdmissionFilter, FrequencySketch
from .keycodes import key_codes

log = logging.getLogger("predis.prefetch")

# allkeys-predictive orders keys by predicted reuse (sketch count + the model's probability) and
# admits loads by it. Where the model could not rank its own holdout (models.train's holdout AUC
# below this; 0.5 is chance) the future is not what the past shows (ml-training's epochs: AUC
# 0.43, and the policy's frequency order lost to plain LRU, 0.80x at 10% where allkeys-lru with
# prefetching had 1.32x): the policy then orders by recency alone (``recency_only``). 0.6 leaves
# a margin over chance for the holdout's noise; the bench's informative models are at 0.79-0.98.
MIN_HOLDOUT_AUC = 0.6
# A model whose recorded holdout precision at its threshold is below this picks almost nothing
# that is then read: its scores neither order keys (the recency fallback, as for a low AUC) nor
# issue prefetches (``picks_useless``: only the stream floor's scores stand). ml-training's model
# with followers within 6 accesses had AUC 0.605 but holdout precision 0.003 and, served as it
# was, cut prefetch-lru's hit ratio from 8.5% to 3.5% (bench/results/prefetch/prefetch.md at
# 514b856); the informative models of the bench are at 0.44-0.98.
MIN_HOLDOUT_PRECISION = 0.1
PREDICTIVE = EvictionPolicy.ALLKEYS_PREDICTIVE
MISSED_KEYS_MAX = 4096  # missed keys whose tick count admission may take (more: forgotten at once)


class PredictedReuse:
    """The allkeys-predictive part of the prefetcher (see the module docstring)."""

    server: Any
    ranker: Any

    def _init_reuse(self) -> None:
        self.judged_model: Any = None  # the ranker the two verdicts below were reached for
        self.recency_only = False  # allkeys-predictive falls back to LRU order (MIN_HOLDOUT_AUC)
        self.picks_useless = False  # its holdout precision is under MIN_HOLDOUT_PRECISION
        self.frequency = FrequencySketch()
        self.admission = AdmissionFilter()
        self.admitted_count: dict[bytes, tuple[float, int]] = {}  # the last admits() count (on_stored)
        # in-flight prefetch -> (its access count, the sketch's halvings then), for on_stored
        self.pending_count: dict[bytes, tuple[float, int]] = {}
        # missed key -> (its count, halvings) as the miss's tick counted it, for admits: the tick
        # runs while the client's origin read is on its way, admission when the value is back
        self.missed_count: dict[bytes, tuple[float, int]] = {}

    def _scores_reuse(self) -> bool:
        if getattr(self.server.keyspace, "policy", None) is not PREDICTIVE:
            return False
        self._judge_model()
        return not self.recency_only

    def _recency_order(self) -> bool:
        """allkeys-predictive in its recency fallback: prefetched entries need their reuse set so
        that the unread penalty (gpu.scoring) cancels and they take their place by recency."""
        return self.recency_only and getattr(self.server.keyspace, "policy", None) is PREDICTIVE

    def _model_picks_useless(self) -> bool:
        """Whether the served model's recorded holdout precision at its threshold is below
        MIN_HOLDOUT_PRECISION (no record, e.g. the heuristic ranker: False)."""
        self._judge_model()
        return self.picks_useless

    def _judge_model(self) -> None:
        """Both verdicts on the served model, once per model, from its recorded holdout figures
        (no record, e.g. the heuristic ranker: neither): its picks are useless where the
        precision at its threshold is below MIN_HOLDOUT_PRECISION; recency only where that, or
        its AUC is below MIN_HOLDOUT_AUC."""
        active = self.ranker.active
        if active is self.judged_model:
            return
        self.judged_model = active
        holdout = (getattr(active, "metrics", None) or {}).get("holdout") or {}
        auc, precision = holdout.get("auc"), holdout.get("precision_at_threshold")
        self.picks_useless = precision is not None and float(precision) < MIN_HOLDOUT_PRECISION
        recency = (auc is not None and float(auc) < MIN_HOLDOUT_AUC) or self.picks_useless
        if recency and not self.recency_only:
            for db in self.server.keyspace.dbs:  # scores written so far would still order keys
                reuse = getattr(db.store, "reuse", None)
                if reuse is not None:
                    reuse[:] = 0.0
        if recency:
            log.info("model %s: holdout AUC %s (min %.2f), precision %s (min %.2f): allkeys-predictive "
                     "evicts by recency%s", getattr(active, "version", "?"), auc, MIN_HOLDOUT_AUC, precision,
                     MIN_HOLDOUT_PRECISION, "; its scores issue no prefetches" if self.picks_useless else "")
        self.recency_only = recency

    def _clear_recency_reuse(self, db: Any, key: bytes) -> None:
        """A prefetched entry read or overwritten: back to reuse 0, a key like any other."""
        if self._recency_order():
            db.store.set_reuse_scores([key], [0.0])

    def _count_accesses(self, events: list[tuple], key_hash: np.ndarray) -> None:
        """Count every access (budget or not: counting is what the eviction order rests on).
        Only allkeys-predictive reads the counts (eviction order, admission)."""
        if not self._scores_reuse():
            return
        aged, estimates = self.frequency.add_and_estimate(key_hash)
        dbs = self.server.keyspace.dbs
        if aged:
            # the stored counts age with the sketch, so resident keys and newcomers compare fairly
            for db in dbs:
                reuse = getattr(db.store, "reuse", None)
                if reuse is not None and len(db.store):
                    reuse *= 0.5
            self.frequency.fit_window(sum(len(db.store) for db in dbs))
        counts = estimates.tolist()
        by_db: dict[int, tuple[list[bytes], list[float]]] = {}
        pending, halvings = self.pending_count, self.frequency.halvings
        missed = self.missed_count
        if len(missed) > MISSED_KEYS_MAX:
            missed.clear()
        for event, count in zip(events, counts):
            if event[2] == MISS:
                missed[event[0]] = (count, halvings)
            # a miss's key is usually stored later (on_stored), but one that joined a prefetch
            # may be there already, counted when the prefetch was issued: absent keys are skipped
            ks, vs = by_db.setdefault(event[4], ([], []))
            ks.append(event[0])
            vs.append(count)
            if pending and event[0] in pending:  # read while its prefetch is in flight: the
                pending[event[0]] = (count, halvings)  # stored entry starts at the newer count
        for db_id, (ks, vs) in by_db.items():
            if db_id < len(dbs):
                dbs[db_id].store.set_reuse_scores(ks, vs)

    def on_stored(self, db: Any, key: bytes, counted: tuple[float, int] | None = None) -> None:
        """A demand load or a prefetch stored ``key``: it starts at its remembered access count.
        ``counted``: (count, the sketch's halvings then) where it was read before (a prefetch's
        when it was issued, a demand load's by ``admits``): stored keys are many, and each
        count read alone is a hash and a sketch lookup on the loop while clients wait."""
        if not self._scores_reuse():
            return
        if counted is None:
            counted = self.admitted_count.get(key)
        self.admitted_count.clear()
        db.store.set_reuse_scores([key], [self._key_count(key) if counted is None else self._aged(counted)])

    def _key_count(self, key: bytes) -> float:
        return float(self.frequency.estimate(key_codes([key])[0])[0])

    def _aged(self, counted: tuple[float, int]) -> float:
        """A count read earlier, (count, the sketch's halvings then), aged since as cached keys' were."""
        return counted[0] * 0.5 ** (self.frequency.halvings - counted[1])

    def admits(self, db: Any, key: bytes) -> bool:
        """Whether a demand-loaded ``key`` is worth storing (``AdmissionFilter``; predictive policy only)."""
        keyspace = self.server.keyspace
        store = db.store
        live = getattr(store, "live", None)
        # the reading the last store's eviction left (used_memory() itself costs ~25 µs, and
        # this runs before every demand-loaded store, on the client's reply path)
        if not self._scores_reuse() or not keyspace.maxmemory or live is None or not len(store) \
                or keyspace.used_memory_seen < ADMIT_WHEN_FULL * keyspace.maxmemory:
            return True
        n = len(live)
        # read by the miss's tick where it can: a hash and a sketch lookup fewer on the reply path
        counted = self.missed_count.pop(key, None)
        count = self._key_count(key) if counted is None else self._aged(counted)
        self.admitted_count = {key: (count, self.frequency.halvings)}  # on_stored's, if stored next
        return self.admission.admits(count, store.reuse[:n], live[:n])
