"""The prefetch queue: learn from each tick's accesses, rank candidates, load the likely ones.

Per event-loop tick the server's access hook hands over the tick's events. Within a CPU
budget the prefetcher updates the candidate statistics from the tick's first
``LEARN_EVENTS`` events, collects candidates, computes their features (``models.features``)
and sends one batch to the ranker's worker thread. The budget: ``budget_fraction`` of wall
time (4% by default; up to ``IDLE_BONUS`` more while the loop thread wanted the CPU less than
``BUSY_FULL`` of the time, as learning with spare CPU costs clients nothing), spent in thread
CPU time (so a busy server sheds learning rather than slowing clients, and a busy machine's
preemptions are not charged); the ranker worker's scoring and the loop's acting on the scores
are charged too, and an idle spell banks at most ``BUDGET_BURST``. Out of budget,
``wants_events`` is False and the C fast path only counts the GETs: a saturated server then
pays the budget plus a few hundred ns of Python per pipelined run.

Scored candidates already cached get their predicted reuse written to the store
(``allkeys-predictive``); absent ones scoring at least ``threshold`` are loaded through the
origin loader (single-flight with client misses), bounded by ``max_inflight`` concurrent
loads and by ``memory_share`` of maxmemory for prefetched-but-unread bytes. Loaded entries
are marked (``store.mark_prefetched``) so the predictive policy evicts unused ones first.

With ``prefetch-stream-floor`` N > 0, a stream that continued N times keeps the heuristic's
score as a floor (``stream_floor``): scans absent from the training window are still fetched.

Predicted reuse for ``allkeys-predictive`` (counts, the model's score, the recency fallback,
admission): ``models.predicted_reuse.PredictedReuse``.

Precision control (``models.precision_control``, config ``prefetch-precision-floor``): where
the model's guesses are mostly wrong (Zipf web traffic: nothing sequential to learn),
prefetching only spends memory and origin reads. Each ``reconcile`` hands the used / wasted
counts to ``control``: recent precision below the floor raises the effective threshold toward
1, then pauses issuing (probing now and then, backing off); good precision brings it back.

Counters: issued (loads started), stored, used (a client read a prefetched entry), wasted
(evicted, expired or overwritten before any read), late (a client missed while the
prefetch was in flight), absent (the origin had no such key: neither used nor wasted, for the
counters, the precision control and the candidate's class alike; the key is not prefetched
again for a while, models/absent_keys.py; ``skipped_absent`` counts those).

MLOps hooks (no-ops unless ``server.mlops`` has them): while ``server.mlops.abtest`` runs,
``abtest.arm(key)`` picks the model that scores each candidate (champion: the active model;
challenger: ``abtest.challenger_ranker`` or the registry's copy of ``challenger_version``) and
per-arm lookups, hits, prefetches, uses and inference latencies go to ``abtest.record_*``; in
shadow mode both models score every candidate, only the champion acts, and each arm's
would-be prefetches (absent keys scoring >= threshold) count as used when read while still
among the last 2-4 x ``SHADOW_HORIZON`` would-be prefetches (``models.batch_rankers.MlopsHooks``). While ``server.mlops.watch`` watches a promotion, each tick's
lookups, hits and the champion's prefetch deltas go to ``watch.observe``.

Tenants: events are (key, op, outcome, size, db, tenant) (5-tuples: tenant 0). A candidate
belongs to the tenant of the access that triggered it; when
``server.mlops.ranker_for_tenant(tenant)`` returns a model, that model scores the tenant's
candidates (``TenantRanker``) and the global model (or the A/B split) scores the rest. The
A/B test compares global models: prefetches scored by a tenant's own model count for no arm.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from gpu.scoring import PREFETCHED_UNREAD_PENALTY

from .absent_keys import AbsentKeys
from .batch_rankers import CHALLENGER_ARM, CHAMPION_ARM, MlopsHooks, SplitRanker, TenantRanker, stream_floor
from .candidates import CandidateGenerator, raw_matrix
from .features import candidate_features
from .keycodes import key_codes, prefix_of
from .precision_control import DEFAULT_FLOOR, PrecisionControl, SelectionGate, candidate_classes
from .predicted_reuse import PREDICTIVE, PredictedReuse
from .ranker import RankerService

log = logging.getLogger("predis.prefetch")

BUDGET_BURST = 0.01     # CPU seconds of learning an idle spell may bank (a few ticks' worth)
IDLE_BONUS = 0.20       # extra budget share while the event loop has CPU to spare (see observe);
# 0.06 learned ~76% of hft's events with one client (loop ~30% busy), so a quarter of the misses
# that start a symbol's group read were never learned and their group was left to the strides
BUSY_FULL, BUSY_IDLE = 0.8, 0.4  # loop thread busy share: no bonus at/above, the whole bonus at/below
RATE_PERIOD = 0.02      # seconds between two readings of the loop thread's busy share
LEARN_EVENTS = 256      # a tick's first this many events are learned (the rest only seen/counted)
# A prefetch's value is stored when its read ends, but the eviction that makes room for it waits
# (``evict_owed``) for a moment when the loop's work costs no client anything: prefetches issued
# by the learning that runs as a client's origin read starts end at about the time that read
# does, and their evictions (4-16 sampled victims each) held the loop, and the interpreter,
# while the client's read needed both to finish (the largest share of the prefetch bench's
# slowest gaming misses). The owed eviction runs as the next client's origin read starts
# (AccessHook), at once when the owed bytes reach EVICT_DEFER_SHARE of maxmemory, and at the
# latest EVICT_DEFER_S after the first owed store (a timer: fired at any moment, it could meet
# a client's request, so it is only the backstop for a server with no misses).
EVICT_DEFER_S = 0.02
EVICT_DEFER_SHARE = 0.05
_perf = time.perf_counter


def _thread_demand() -> float:
    """Seconds this thread ran plus (Linux schedstat, where kept) waited for a core."""
    ran = time.thread_time()
    try:
        with open("/proc/thread-self/schedstat", "rb") as handle:
            return ran + int(handle.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return ran


if TYPE_CHECKING:
    from predis_server.origin import OriginLoader


class Prefetcher(MlopsHooks, PredictedReuse):
    def __init__(self, server: Any, loader: OriginLoader | None, ranker: RankerService,
                 threshold: float = 0.5, max_inflight: int = 64, memory_share: float = 0.2,
                 ttl_ms: int = 0, budget_fraction: float = 0.04, max_candidates: int = 512,
                 stream_floor: int = 0, precision_floor: float = DEFAULT_FLOOR) -> None:
        self.server = server
        self.loader = loader
        self.ranker = ranker
        self.generator = CandidateGenerator()
        self.threshold = threshold
        self.max_inflight = max_inflight
        self.memory_share = memory_share
        self.ttl_ms = ttl_ms
        self.budget_fraction = budget_fraction
        self.max_candidates = max_candidates
        self.stream_floor = stream_floor
        self.control = PrecisionControl(threshold, precision_floor)  # effective threshold, pauses
        self.selection = SelectionGate()  # which candidate classes are worth prefetching
        self.pending_class: dict[bytes, int] = {}  # in-flight prefetch -> its candidate class
        self.unread_class: dict[bytes, int] = {}   # unread prefetched key -> its candidate class
        self.absent_keys = AbsentKeys()  # prefetched, not in the origin: not prefetched again for a while
        self._init_reuse()
        self.keys: dict[int, bytes] = {}            # key hash -> key (candidates we may fetch)
        self.prefixes: dict[int, tuple[bytes, int]] = {}  # prefix hash -> (prefix, digit width)
        self.unread: dict[bytes, tuple[int, int]] = {}    # prefetched, not yet read: key -> (db, size)
        self.inflight = 0
        self.unread_bytes = 0
        self.tokens = BUDGET_BURST
        self.last_refill = time.perf_counter()
        self.refill_rate = budget_fraction  # budget_fraction, plus IDLE_BONUS's share while idle
        self.rate_at = self.last_refill     # when refill_rate was last updated (_update_rate)
        self.last_demand: float | None = None  # the loop thread's _thread_demand() then
        self.ranked_charged = 0.0  # ranker CPU seconds already taken from the tokens
        self.budget_back_at = 0.0  # perf_counter time the tokens are back above 0 (wants_events)
        self.recent_features: list[np.ndarray] = []   # for shadow scoring at model reload
        self.evict_owed = 0  # bytes prefetches stored whose eviction is deferred (EVICT_DEFER_S)
        self.evict_timer: asyncio.TimerHandle | None = None
        # counters
        self.issued = self.stored = self.used = self.wasted = self.late = 0
        self.absent = self.skipped_absent = 0  # prefetches the origin had no value for; not retried
        self.events_seen = self.events_learned = 0
        self.candidates_scored = 0
        self.skipped_inflight = self.skipped_memory = self.skipped_precision = 0
        self.learn_seconds = 0.0
        self.last_reconcile = 0.0
        # MLOps hooks
        self.challenger_rankers: dict[str, Any] = {}   # challenger version -> loaded ranker
        self.key_arm: dict[bytes, str] = {}            # unread prefetched key -> A/B arm
        self.shadow_pending: dict[bytes, int] = {}     # would-be prefetch -> arm bits (1 champ, 2 chall)
        self.watch_fed = (0, 0)                        # (stored, used) already given to the watch

    # -- learning and ranking (event loop, once per tick) -------------------------------------
    def wants_events(self) -> bool:
        """Whether events would be used now: learning budget back (``observe`` noted when its
        refill brings the tokens above 0), access counting for allkeys-predictive, or an A/B
        test or a promotion watch reading outcomes. When not, the C fast path does not build
        them and only counts them (``skipped``). Asked once per pipelined run (on a busy
        server, once per 16 requests at redis-benchmark -P 16): the checks are inlined, the
        cheapest first."""
        if _perf() >= self.budget_back_at:
            return True
        server = self.server
        if getattr(server.keyspace, "policy", None) is PREDICTIVE and not self.recency_only:
            return True
        mlops = getattr(server, "mlops", None)
        return mlops is not None and (getattr(mlops, "abtest", None) is not None
                                      or getattr(mlops, "watch", None) is not None)

    def _outcomes_watcher(self) -> Any:
        """server.mlops while an A/B test or a promotion watch reads per-event outcomes."""
        mlops = getattr(self.server, "mlops", None)
        if mlops is not None and (getattr(mlops, "abtest", None) is not None
                                  or getattr(mlops, "watch", None) is not None):
            return mlops
        return None

    def skipped(self, count: int) -> None:
        """GET events the C fast path did not build (``wants_events`` was False): seen, not learned."""
        self.events_seen += count

    def observe(self, events: list[tuple]) -> None:
        self.events_seen += len(events)
        mlops = self._outcomes_watcher()
        if mlops is not None:
            self._mlops_outcomes(mlops, events)
        now = _perf()
        elapsed = now - self.last_refill
        if now - self.rate_at >= RATE_PERIOD:
            self._update_rate(now)
        # the ranker's worker thread scores off the loop but on the same cores: its CPU time
        # is spent from the same budget as the learning below
        ranked = self.ranker.cpu_seconds
        self.tokens = min(BUDGET_BURST, self.tokens + elapsed * self.refill_rate) \
            - (ranked - self.ranked_charged)
        self.ranked_charged = ranked
        self.last_refill = now
        counting = self._scores_reuse()
        if self.tokens <= 0 and not counting:
            self._note_budget()
            return  # no budget to learn this tick and no counts to keep: the events cost nothing
        # spending is CPU time: on a busy machine a tick's wall time also holds other processes' turns
        cpu_start = time.thread_time()
        if not counting and len(events) > LEARN_EVENTS:
            events = events[:LEARN_EVENTS]  # the rest would not be learned: not even hashed
        keys = [e[0] for e in events]
        key_hash, prefix_hash, suffix = key_codes(keys)
        if counting:
            counted_from = time.thread_time()
            self._count_accesses(events, key_hash)
            cpu_start += time.thread_time() - counted_from  # counting is not charged to learning
            if self.tokens <= 0:
                return
            if len(events) > LEARN_EVENTS:
                events, keys = events[:LEARN_EVENTS], keys[:LEARN_EVENTS]
                key_hash, prefix_hash, suffix = \
                    key_hash[:LEARN_EVENTS], prefix_hash[:LEARN_EVENTS], suffix[:LEARN_EVENTS]
        gen = self.generator
        rows: list[tuple[int, int, int, tuple]] = []
        triggers: list[tuple[int, int]] = []  # (db, tenant) of each row's triggering access
        has_tenant = bool(events) and len(events[0]) > 5
        known = self.keys
        prefixes = self.prefixes
        for i, (kid, pid, sfx) in enumerate(zip(key_hash.tolist(), prefix_hash.tolist(), suffix.tolist())):
            key = keys[i]
            known[kid] = key
            if sfx >= 0 and pid not in prefixes:
                prefix, _, width = prefix_of(key)
                prefixes[pid] = (prefix, width)
            gen.observe(kid, pid, sfx)
            before = len(rows)
            gen.candidates(kid, pid, sfx, rows)
            if len(rows) > before:
                event = events[i]
                triggers.extend([(event[4], event[5] if has_tenant else 0)] * (len(rows) - before))
            if len(rows) >= self.max_candidates:
                break
        if len(known) > 2 * gen.max_keys:
            known.clear()
        self.events_learned += i + 1 if events else 0
        if rows:
            self._rank(rows, triggers)
        spent = time.thread_time() - cpu_start
        self.tokens -= spent
        self.learn_seconds += spent
        self._note_budget()

    def _update_rate(self, now: float) -> None:
        """Learning with CPU the loop would not use costs clients nothing: while the loop thread
        wanted the CPU (ran, or waited for a core: /proc's schedstat; without it, ran) less than
        BUSY_FULL of the time since the last update, the budget refills at up to
        budget_fraction + IDLE_BONUS; a saturated server's (or a crowded machine's) at
        budget_fraction. Read at most every RATE_PERIOD."""
        demand = _thread_demand()
        wall = now - self.rate_at
        if self.last_demand is not None and wall > 0:
            busy = (demand - self.last_demand) / wall
            spare = min(1.0, max(0.0, (BUSY_FULL - busy) / (BUSY_FULL - BUSY_IDLE)))
            self.refill_rate = self.budget_fraction + IDLE_BONUS * spare
        self.last_demand = demand
        self.rate_at = now

    def _note_budget(self) -> None:
        """When the refill brings the tokens back above 0 (``wants_events`` reads it). The
        tokens are as of ``last_refill``."""
        self.budget_back_at = self.last_refill + max(0.0, -self.tokens) / self.refill_rate

    def _charge(self, spent: float) -> None:
        """Learning CPU seconds spent outside ``observe`` (acting on the ranker's scores)."""
        self.tokens -= spent
        self.learn_seconds += spent
        self._note_budget()

    def _rank(self, rows: list[tuple[int, int, int, tuple]], triggers: list[tuple[int, int]]) -> None:
        seen: set[tuple[int, bytes]] = set()
        keys: list[bytes] = []
        dbs: list[int] = []
        tenants: list[int] = []
        raw: list[tuple] = []
        hashes: list[int] = []  # each key's hash where the candidate is one (a follower), else -1
        for (cand, stride_suffix, pid, columns), (db_id, tenant) in zip(rows, triggers):
            if cand >= 0:
                key = self.keys.get(cand)
            else:
                prefix = self.prefixes.get(pid)
                key = None if prefix is None else prefix[0] + str(stride_suffix).zfill(prefix[1]).encode()
            if key is None or (db_id, key) in seen:
                continue
            seen.add((db_id, key))
            keys.append(key)
            hashes.append(cand)
            dbs.append(db_id)
            tenants.append(tenant)
            raw.append(columns)
        if not keys:
            return
        matrix = raw_matrix(raw)
        features = candidate_features(matrix)
        classes = candidate_classes(matrix)
        floor = stream_floor(features, self.stream_floor)
        self.recent_features.append(features)
        if len(self.recent_features) > 32:
            del self.recent_features[:16]
        loop = self.server.loop
        split = self._split_ranker(keys)
        by_tenant = self._tenant_ranker(tenants, split)
        owned = None if by_tenant is None else np.logical_or.reduce([m for _, m in by_tenant.owned])

        def done(scores: np.ndarray) -> None:
            started = time.thread_time()  # acting on the scores is learning's work too: charged
            scores = self._usable_scores(scores, split, by_tenant)
            try:
                self._act(keys, dbs, scores if floor is None else np.maximum(scores, floor), split, owned,
                          classes, hashes)
            finally:
                self._charge(time.thread_time() - started)

        self.ranker.submit(features, done, loop, ranker=by_tenant or split)

    def _usable_scores(self, scores: np.ndarray, split: SplitRanker | None,
                       by_tenant: TenantRanker | None) -> np.ndarray:
        """The served model's scores, or zeros where its holdout picks are no guide
        (``MIN_HOLDOUT_PRECISION``): the stream floor's scores then stand alone. A/B arms and
        tenants' own models keep theirs."""
        if by_tenant is None and split is None and self._model_picks_useless():
            return np.zeros_like(scores)
        return scores

    def _tenant_ranker(self, tenants: list[int], split: SplitRanker | None) -> TenantRanker | None:
        """A ranker scoring tenants' rows with their own models; None: no tenant has one."""
        mlops = getattr(self.server, "mlops", None)
        lookup = getattr(mlops, "ranker_for_tenant", None)
        if lookup is None or not getattr(mlops, "tenant_rankers", True) or not any(tenants):
            return None
        ids = np.fromiter(tenants, dtype=np.int64, count=len(tenants))
        owned = []
        for tenant in set(tenants):
            ranker = lookup(tenant) if tenant else None
            if ranker is not None:
                owned.append((ranker, ids == tenant))
        if not owned:
            return None
        return TenantRanker(split if split is not None else self.ranker.active, owned)

    def _act(self, keys: list[bytes], dbs: list[int], scores: np.ndarray,
             split: SplitRanker | None = None, owned: np.ndarray | None = None,
             classes: np.ndarray | None = None, hashes: list[int] | None = None) -> None:
        """``owned``: rows a tenant's own model scored (no A/B arm's merit or shadow figure);
        ``classes``: each row's candidate class (``SelectionGate``; None: not gated);
        ``hashes``: each key's hash where known (-1: not; None: none are)."""
        self.candidates_scored += len(keys)
        shadow = split.shadow_scores if split is not None else None
        keyspace = self.server.keyspace
        order = np.argsort(-scores, kind="stable").tolist()
        present_keys: dict[int, list[bytes]] = {}
        present_scores: dict[int, list[float]] = {}
        bar = self.control.effective_bar
        # without reuse scores or shadow figures only absent keys scoring >= bar matter; the
        # order is by score, so the rest (on a busy server with little to learn, nearly all)
        # need no lookup
        scoring_reuse = self._scores_reuse()
        every_row = shadow is not None or scoring_reuse
        fetching = self.loader is not None
        # every row's access count at once (allkeys-predictive): cached keys' reuse is count +
        # score, and an issued prefetch's stored entry starts at its count (on_stored)
        counts = self._row_counts(keys, hashes) if scoring_reuse else None
        halvings = self.frequency.halvings
        for i in order:
            key, db_id, score = keys[i], dbs[i], float(scores[i])
            if not every_row and (score < bar or not fetching):
                break
            db = keyspace.dbs[db_id] if db_id < len(keyspace.dbs) else keyspace.dbs[0]
            if db.peek(key) is not None:
                present_keys.setdefault(db_id, []).append(key)
                present_scores.setdefault(db_id, []).append(score + (counts[i] if counts is not None else 0.0))
                continue
            tenant_scored = owned is not None and owned[i]
            if shadow is not None and not tenant_scored:
                self._shadow_note(key, score >= self.threshold, float(shadow[i]) >= self.threshold)
            if score < bar or not fetching:
                continue
            self._issue(db, key, None if split is None or shadow is not None or tenant_scored else
                        (CHALLENGER_ARM if split.challenger_rows[i] else CHAMPION_ARM),
                        None if classes is None else int(classes[i]),
                        None if counts is None else (counts[i], halvings))
            bar = self.control.effective_bar  # _issue may reconcile, which moves the bar
        if present_keys and scoring_reuse:
            for db_id, ks in present_keys.items():
                keyspace.dbs[db_id].store.set_reuse_scores(ks, present_scores[db_id])

    def _row_counts(self, keys: list[bytes], hashes: list[int] | None) -> list[float]:
        """Each key's access count; keys are hashed only where ``hashes`` lacks theirs (stride
        candidates: built from a prefix and a number; hashing is half of acting's cost)."""
        if hashes is None:
            return self.frequency.estimate(key_codes(keys)[0]).tolist()
        unknown = [i for i, h in enumerate(hashes) if h < 0]
        if unknown:
            hashes = list(hashes)
            for i, h in zip(unknown, key_codes([keys[i] for i in unknown])[0].tolist()):
                hashes[i] = h
        return self.frequency.estimate(np.array(hashes, dtype=np.uint64)).tolist()

    def _issue(self, db: Any, key: bytes, arm: str | None = None, cls: int | None = None,
               counted: tuple[float, int] | None = None) -> None:
        """``counted``: the key's (access count, sketch halvings) now, for its stored entry (on_stored)."""
        assert self.loader is not None
        if key in self.loader.inflight:
            return
        if self.absent_keys.recent(key):
            self.skipped_absent += 1
            return
        if self.inflight >= self.max_inflight:
            self.skipped_inflight += 1
            return
        maxmemory = self.server.keyspace.maxmemory
        if maxmemory and self.unread_bytes >= self.memory_share * maxmemory:
            now = time.monotonic()
            if now - self.last_reconcile >= 0.01:
                self.reconcile()  # evicted unread entries no longer hold memory: count them out now
            if self.unread_bytes >= self.memory_share * maxmemory:
                self.skipped_memory += 1
                return
        if cls is not None and not self.selection.allows(cls, self.control.floor):
            return  # candidates like this one were mostly wasted (counted in selection.skipped)
        if not self.control.allows(time.monotonic()):
            self.skipped_precision += 1  # recent prefetches were mostly wasted: paused or probing
            return
        if cls is not None:
            self.pending_class[key] = cls
        if counted is not None:
            self.pending_count[key] = counted
        self.inflight += 1
        self.issued += 1
        if arm is not None:
            self.key_arm[key] = arm
            self.server.mlops.abtest.record_prefetches(arm, 1, 0)
        future = self.loader.load(key)
        future.add_done_callback(lambda f: self._loaded(f, db, key))

    def _loaded(self, future: asyncio.Future, db: Any, key: bytes) -> None:
        self.inflight -= 1
        cls = self.pending_class.pop(key, None)
        counted = self.pending_count.pop(key, None)
        if future.cancelled() or future.exception() is not None:
            return
        value = future.result()
        if value is None:
            self._absent(key, cls)
            return
        if db.peek(key) is not None:
            return  # a client wrote/loaded it meanwhile
        expire_at = db.clock() + self.ttl_ms if self.ttl_ms else 0
        try:
            db.set(key, value, expire_at)
        except Exception:  # OOM under noeviction: a prefetch is optional
            return
        db.store.mark_prefetched(key, True)
        if self._recency_order():
            # reuse - penalty = 0: by recency like every other key, as under allkeys-lru
            db.store.set_reuse_scores([key], [PREFETCHED_UNREAD_PENALTY])
        else:
            self.on_stored(db, key, counted)
        size = len(value)
        earlier = self.unread.pop(key, None)  # evicted unread, not yet reconciled: bytes gone
        if earlier is not None:
            self.unread_bytes -= earlier[1]
            self.wasted += 1
            self._class_outcome(key, False)
        self.unread[key] = (db.id, size)
        if cls is not None:
            self.unread_class[key] = cls
        self.unread_bytes += size
        self.stored += 1
        self._owe_eviction(size)

    # -- deferred eviction (EVICT_DEFER_S) ------------------------------------------------------
    def _owe_eviction(self, size: int) -> None:
        """A prefetch stored ``size`` bytes: evict for them later (``evict_owed_now``), or now
        when the owed bytes reach EVICT_DEFER_SHARE of maxmemory or no loop can run it later."""
        keyspace = self.server.keyspace
        if not keyspace.maxmemory:
            return
        loop = self.server.loop
        self.evict_owed += size
        if loop is None or self.evict_owed >= EVICT_DEFER_SHARE * keyspace.maxmemory:
            self.evict_owed_now()
        elif self.evict_timer is None:
            self.evict_timer = loop.call_later(EVICT_DEFER_S, self.evict_owed_now)

    def evict_owed_now(self) -> None:
        """Run the eviction that prefetched stores deferred (the access hook calls this as a client's
        origin read starts: the client waits for the origin, so the loop's work costs it nothing)."""
        if self.evict_timer is not None:
            self.evict_timer.cancel()
            self.evict_timer = None
        if self.evict_owed:
            self.evict_owed = 0
            keyspace = self.server.keyspace
            if keyspace.maxmemory:
                keyspace.enforce_maxmemory()

    # -- bookkeeping ---------------------------------------------------------------------------
    def on_hit(self, db: Any, key: bytes) -> bool:
        """A client read ``key``: True when it was an unread prefetched entry (now used)."""
        entry = self.unread.pop(key, None)
        if entry is None:
            return False
        self.unread_bytes -= entry[1]
        arm = self.key_arm.pop(key, None) if self.key_arm else None
        if db.store.is_prefetched(key):
            db.store.mark_prefetched(key, False)
            self._clear_recency_reuse(db, key)
            self.used += 1
            self._class_outcome(key, True)
            if arm is not None:
                abtest = getattr(getattr(self.server, "mlops", None), "abtest", None)
                if abtest is not None:
                    abtest.record_prefetches(arm, 0, 1)
            return True
        self.wasted += 1  # overwritten by a client write, then read: not the prefetch's merit
        self._clear_recency_reuse(db, key)
        self._class_outcome(key, False)
        return False

    def on_demand_load(self, db: Any, key: bytes) -> None:
        """A client miss shared an in-flight prefetch: the entry is read, no longer 'unread'."""
        entry = self.unread.pop(key, None)
        if entry is not None:
            self.unread_bytes -= entry[1]
            db.store.mark_prefetched(key, False)
            self._clear_recency_reuse(db, key)
            self.late += 1
            self.unread_class.pop(key, None)  # late: neither read in time nor wasted (as in precision)

    def reconcile(self) -> None:
        """Count prefetched entries that left the store (evicted, expired, overwritten) unread."""
        self.last_reconcile = time.monotonic()
        dbs = self.server.keyspace.dbs
        gone = [k for k, (db_id, _) in self.unread.items() if not dbs[db_id].store.is_prefetched(k)]
        for key in gone:
            db_id = self.unread[key][0]
            self.unread_bytes -= self.unread.pop(key)[1]
            self._clear_recency_reuse(dbs[db_id], key)  # overwritten (evicted: its slot is reset)
            self.wasted += 1
            self._class_outcome(key, False)
            self.key_arm.pop(key, None)
        if self.key_arm and getattr(getattr(self.server, "mlops", None), "abtest", None) is None:
            self.key_arm.clear()  # the test ended: its arms no longer matter
        self.control.reading(self.used, self.wasted, self.last_reconcile)

    def _absent(self, key: bytes, cls: int | None) -> None:
        """The origin has no ``key``: an origin read spent for nothing; the key is not prefetched
        again for a while (AbsentKeys). It does not count against the precision control or its class:
        counted there, hft's stride candidates past the keys its origin holds throttled the
        prefetches it does read (hit ratio -6 points at 5% and 10% of the footprint,
        bench/results/prefetch/merged_hft.md), and precision is about what the cache holds."""
        self.absent += 1
        self.absent_keys.add(key)

    def _class_outcome(self, key: bytes, used: bool) -> None:
        cls = self.unread_class.pop(key, None)
        if cls is not None:
            self.selection.outcome(cls, used)

    @property
    def precision(self) -> float:
        decided = self.used + self.wasted
        return self.used / decided if decided else 0.0
