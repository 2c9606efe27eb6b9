"""Drift detection: is live traffic still the traffic the serving model was trained on?

A ``ReferenceDistribution`` is stored with every model version (``reference.npz``): for each
feature of ``models.features.FEATURE_NAMES`` the bin edges taken from the training data's
quantiles, the share of training rows in each bin, a bounded random sample of rows for the
Kolmogorov-Smirnov test, and the outcome figures (hit ratio, prefetch precision) measured
when the model was trained or promoted.

``DriftChecker.check`` compares a current window with it, per feature:

* ``scipy.stats.ks_2samp`` p-values, Holm-corrected over all the tests of one check (features
  and outcomes), so a check with 11 tests does not raise 11 times as many false alarms;
* the Population Stability Index over the reference's quantile bins; empty bins are floored
  at ``PSI_FLOOR`` so a bin that one side never fills gives a large but finite term;
* outcomes (hit ratio, prefetch precision): a two-proportion z-test, the size of the effect
  being the relative drop.

A test only counts when it is both significant (corrected p < ``ks_pvalue``) and large
(PSI, or relative outcome drop, >= ``psi_warn`` / ``psi_alarm``): with tens of thousands of
autocorrelated rows KS alone rejects trivial differences, PSI alone flags noise in small
windows. Below ``min_samples`` current rows (or reference rows) the verdict is
``insufficient``, never an alarm.

Features come from ``features_from_events``: the serving candidate generator and the one
feature function (``models.features.candidate_features``) replayed over collector events, so
the drift monitor sees exactly the features the ranker sees.

``DriftMonitor`` runs the check every ``drift-check-interval`` seconds on a daemon thread and
hands each report to its listeners (``models.alerts``, the retraining trigger).

Where the reference comes from (``models.loop`` decides, per serving model):

* a model registered by the loop carries ``reference.npz``, computed from the most recent
  window of its training data (``models.retrain``);
* a model loaded by ``PREDIS.MODEL LOAD`` or from ``models-dir`` uses the ``reference.npz``
  in its directory when there is one;
* otherwise (a directory without one, the built-in heuristic) the monitor *captures* it:
  ``capture()`` clears the reference, and the first check that finds ``min_samples`` rows in
  the current window makes that window the reference (reported as ``insufficient`` with
  ``reason="reference captured ..."``). Drift is then judged relative to the traffic the
  model met in its first window: it says "traffic changed since this model went live",
  which is what an operator who loaded a model by hand can act on.
"""
from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .candidates import CandidateGenerator
from .features import FEATURE_NAMES, candidate_features
from .outcomes import proportion_z


def _scipy_stats() -> Any:
    """scipy.stats, imported on first use: it costs seconds at server start otherwise."""
    from scipy import stats

    return stats


log = logging.getLogger("predis.drift")

LEVELS = ("insufficient", "ok", "warn", "alarm")
PSI_FLOOR = 1e-4          # share given to an empty bin: keeps ln(c/r) finite
DEFAULT_BINS = 10
KS_SAMPLE_LIMIT = 2000    # rows per side fed to KS: bounds the cost and the large-n oversensitivity
OUTCOMES = ("hit_ratio", "prefetch_precision")


@dataclass
class DriftThresholds:
    ks_pvalue: float = 0.01
    psi_warn: float = 0.1
    psi_alarm: float = 0.25
    min_samples: int = 2000
    correction: str = "holm"  # or "bonferroni"

    @classmethod
    def from_config(cls, config: Any) -> DriftThresholds:
        return cls(config.drift_ks_pvalue, config.drift_psi_warn, config.drift_psi_alarm,
                   config.drift_min_samples)


# -- statistics ------------------------------------------------------------------------------
def quantile_edges(values: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Interior bin edges at the reference's quantiles, duplicates dropped (discrete features)."""
    if len(values) == 0:
        return np.zeros(0)
    # "lower": edges are observed values, so a 0/1 feature gets edges {0, 1}, not 0.3
    qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1], method="lower")
    return np.unique(qs)


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each of the len(edges)+1 bins (value == edge goes up)."""
    idx = np.searchsorted(edges, values, side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    return counts / max(1.0, counts.sum())


def psi(reference: np.ndarray, current: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """Population Stability Index of two bin-share vectors; empty bins floored at ``floor``."""
    r = np.maximum(np.asarray(reference, dtype=np.float64), floor)
    c = np.maximum(np.asarray(current, dtype=np.float64), floor)
    r, c = r / r.sum(), c / c.sum()
    return float(np.sum((c - r) * np.log(c / r)))


def adjust_pvalues(pvalues: list[float], method: str = "holm") -> list[float]:
    """Family-wise corrected p-values: Holm's step-down (default) or Bonferroni."""
    m = len(pvalues)
    if m == 0:
        return []
    p = np.asarray(pvalues, dtype=np.float64)
    if method == "bonferroni":
        return list(np.minimum(1.0, p * m))
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))  # monotone step-down
        adjusted[i] = running
    return list(adjusted)


def two_proportion_p(success_a: int, n_a: int, success_b: int, n_b: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (1.0 when undefined)."""
    z = proportion_z(success_a, n_a, success_b, n_b)
    return 1.0 if z is None else float(2 * _scipy_stats().norm.sf(abs(z)))


# -- features from the access stream ---------------------------------------------------------
def features_from_events(events: dict[str, np.ndarray], limit_rows: int | None = None,
                         warmup: float = 0.25, **generator_options: Any) -> np.ndarray:
    """Replay collector events through the serving candidate generator and feature function.

    The first ``warmup`` share of the events only teaches the generator (its statistics start
    empty, unlike a long-running server's); candidates of the rest become feature rows.
    """
    key_hash = events["key_hash"]
    prefix_hash = events["prefix_hash"]
    suffix = events["suffix"]
    n = len(key_hash)
    gen = CandidateGenerator(**generator_options)
    start = int(n * warmup)
    rows: list[tuple] = []
    out: list[tuple] = []
    keys = key_hash.tolist()
    prefixes = prefix_hash.tolist()
    suffixes = suffix.tolist()
    for i in range(n):
        gen.observe(keys[i], prefixes[i], suffixes[i])  # as serving: learn, then predict from it
        if i >= start:
            out.clear()
            gen.candidates(keys[i], prefixes[i], suffixes[i], out)
            rows.extend(c[3] for c in out)
            if limit_rows is not None and len(rows) >= limit_rows:
                break
    if not rows:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    return candidate_features(np.asarray(rows, dtype=np.float64))


def outcome_counts(events: dict[str, np.ndarray]) -> dict[str, int]:
    """Lookups and hits from the collector's outcome column (0 hit, 1 miss, 2 prefetched hit)."""
    outcome = events.get("outcome", np.zeros(0, dtype=np.uint8))
    return {"lookups": len(outcome), "hits": int(np.count_nonzero(outcome != 1)),
            "prefetched_hits": int(np.count_nonzero(outcome == 2))}


# -- the reference ---------------------------------------------------------------------------
@dataclass
class ReferenceDistribution:
    names: list[str]
    edges: list[np.ndarray]
    shares: list[np.ndarray]
    sample: np.ndarray
    rows: int
    outcomes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_features(cls, matrix: np.ndarray, outcomes: dict[str, int] | None = None,
                      names: tuple[str, ...] = FEATURE_NAMES, bins: int = DEFAULT_BINS,
                      sample_limit: int = KS_SAMPLE_LIMIT, seed: int = 0) -> ReferenceDistribution:
        matrix = np.asarray(matrix, dtype=np.float64)
        edges = [quantile_edges(matrix[:, j], bins) for j in range(matrix.shape[1])]
        shares = [bin_shares(matrix[:, j], e) for j, e in enumerate(edges)]
        rng = np.random.default_rng(seed)
        take = rng.choice(len(matrix), min(len(matrix), sample_limit), replace=False) if len(matrix) else []
        return cls(list(names), edges, shares, matrix[np.sort(take)] if len(matrix) else matrix,
                   len(matrix), dict(outcomes or {}))

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        arrays: dict[str, Any] = {"names": np.asarray(self.names), "sample": self.sample,
                                  "rows": np.asarray(self.rows),
                                  "outcome_names": np.asarray(list(self.outcomes), dtype=str),
                                  "outcome_values": np.asarray(list(self.outcomes.values()), dtype=np.int64)}
        for j, (e, s) in enumerate(zip(self.edges, self.shares)):
            arrays[f"edges_{j}"] = e
            arrays[f"shares_{j}"] = s
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()

    def save(self, path: str) -> None:
        with open(path, "wb") as handle:
            handle.write(self.to_bytes())

    @classmethod
    def load(cls, path: str) -> ReferenceDistribution:
        with np.load(path) as data:
            names = [str(n) for n in data["names"]]
            return cls(names, [data[f"edges_{j}"] for j in range(len(names))],
                       [data[f"shares_{j}"] for j in range(len(names))], data["sample"],
                       int(data["rows"]),
                       {str(k): int(v) for k, v in zip(data["outcome_names"], data["outcome_values"])})


# -- the check -------------------------------------------------------------------------------
@dataclass
class TestResult:
    name: str
    statistic: float      # KS D, or the current value of an outcome
    p_value: float
    p_adjusted: float = 1.0
    effect: float = 0.0   # PSI, or relative drop of an outcome
    level: str = "ok"


@dataclass
class DriftReport:
    level: str
    checked_at: float
    reference_rows: int
    current_rows: int
    tests: list[TestResult]
    reason: str = ""

    @property
    def max_psi(self) -> float:
        return max((t.effect for t in self.tests if t.name not in OUTCOMES), default=0.0)

    @property
    def drifted(self) -> list[str]:
        return [t.name for t in self.tests if t.level in ("warn", "alarm")]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["max_psi"] = self.max_psi
        out["drifted"] = self.drifted
        return out


class DriftChecker:
    def __init__(self, reference: ReferenceDistribution, thresholds: DriftThresholds | None = None,
                 seed: int = 0) -> None:
        self.reference = reference
        self.thresholds = thresholds or DriftThresholds()
        self.rng = np.random.default_rng(seed)

    def check(self, current: np.ndarray, outcomes: dict[str, int] | None = None,
              now: float | None = None) -> DriftReport:
        th = self.thresholds
        ref = self.reference
        now = time.time() if now is None else now
        current = np.asarray(current, dtype=np.float64).reshape(-1, len(ref.names))
        if ref.rows < th.min_samples or len(current) < th.min_samples:
            return DriftReport("insufficient", now, ref.rows, len(current), [],
                               f"need {th.min_samples} rows on each side "
                               f"(reference {ref.rows}, current {len(current)})")
        sample = current
        if len(sample) > KS_SAMPLE_LIMIT:
            sample = current[self.rng.choice(len(current), KS_SAMPLE_LIMIT, replace=False)]
        tests: list[TestResult] = []
        for j, name in enumerate(ref.names):
            a, b = ref.sample[:, j], sample[:, j]
            if np.ptp(a) == 0 and np.ptp(b) == 0 and a[0] == b[0]:
                result = TestResult(name, 0.0, 1.0)  # constant and equal: ks_2samp would warn
            else:
                ks = _scipy_stats().ks_2samp(a, b)
                result = TestResult(name, float(ks.statistic), float(ks.pvalue))
            result.effect = psi(ref.shares[j], bin_shares(current[:, j], ref.edges[j]))
            tests.append(result)
        tests.extend(self._outcome_tests(outcomes or {}))
        for t, p in zip(tests, adjust_pvalues([t.p_value for t in tests], th.correction)):
            t.p_adjusted = p
            significant = p < th.ks_pvalue
            if significant and t.effect >= th.psi_alarm:
                t.level = "alarm"
            elif significant and t.effect >= th.psi_warn:
                t.level = "warn"
        level = "ok"
        for t in tests:
            if LEVELS.index(t.level) > LEVELS.index(level):
                level = t.level
        return DriftReport(level, now, ref.rows, len(current), tests)

    def _outcome_tests(self, outcomes: dict[str, int]) -> list[TestResult]:
        """Hit ratio and prefetch precision against the reference's, when both sides have them."""
        ref = self.reference.outcomes
        pairs = (("hit_ratio", "hits", "lookups"), ("prefetch_precision", "prefetch_used", "prefetched"))
        out = []
        for name, num, den in pairs:
            ra, rn, ca, cn = ref.get(num, 0), ref.get(den, 0), outcomes.get(num, 0), outcomes.get(den, 0)
            if rn < self.thresholds.min_samples or cn < self.thresholds.min_samples:
                continue
            ref_rate, cur_rate = ra / rn, ca / cn
            drop = max(0.0, (ref_rate - cur_rate) / ref_rate) if ref_rate > 0 else 0.0
            out.append(TestResult(name, cur_rate, two_proportion_p(ra, rn, ca, cn), effect=drop))
        return out


# -- the background task ---------------------------------------------------------------------
Source = Callable[[], "tuple[np.ndarray, dict[str, int]]"]
Listener = Callable[["DriftReport", "DriftReport | None"], None]


class DriftMonitor:
    """Checks ``source()`` against the serving model's reference every ``interval_s`` seconds.

    Listeners get ``(report, previous)`` after every completed check, so they can act on a
    change of level (alerts) or on an alarm (retraining). ``check_now`` runs one check inline
    (PREDIS.DRIFT CHECK, tests, the benchmark).
    """

    def __init__(self, source: Source, reference: ReferenceDistribution | None,
                 thresholds: DriftThresholds, interval_s: float = 60.0) -> None:
        self.source = source
        self.thresholds = thresholds
        self.interval_s = interval_s
        self.checker = DriftChecker(reference, thresholds) if reference is not None else None
        self.listeners: list[Listener] = []
        self.last: DriftReport | None = None
        self.checks = 0
        self.warnings = 0
        self.alarms = 0
        self.failures = 0
        self.model_version = ""
        self.capturing = False
        self.reference_source = "none" if reference is None else "given"
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def set_reference(self, reference: ReferenceDistribution | None, model_version: str = "",
                      source: str = "given") -> None:
        """A new model serves: compare with what it was trained on from now on."""
        with self._lock:
            self.checker = DriftChecker(reference, self.thresholds) if reference is not None else None
            self.model_version = model_version
            self.capturing = False
            self.reference_source = source if reference is not None else "none"
            self.last = None

    def capture(self, model_version: str) -> None:
        """A model without a reference serves: the first full window becomes its reference."""
        with self._lock:
            self.checker = None
            self.model_version = model_version
            self.capturing = True
            self.reference_source = "capturing"
            self.last = None

    def check_now(self) -> DriftReport | None:
        with self._lock:
            if self.checker is None and self.capturing:
                return self._capture_locked()
            checker = self.checker
            if checker is None:
                return None
            checker.thresholds = self.thresholds
            matrix, outcomes = self.source()
            report = checker.check(matrix, outcomes)
            previous, self.last = self.last, report
            self.checks += 1
            self.warnings += report.level == "warn"
            self.alarms += report.level == "alarm"
        for listener in list(self.listeners):
            try:
                listener(report, previous)
            except Exception:  # an alert sink failing must not stop the checks
                log.exception("drift listener failed")
        return report

    def _capture_locked(self) -> DriftReport:
        matrix, outcomes = self.source()
        now = time.time()
        need = self.thresholds.min_samples
        self.checks += 1
        if len(matrix) < need:
            self.last = DriftReport("insufficient", now, 0, len(matrix), [],
                                    f"capturing the reference: {len(matrix)} of {need} rows")
            return self.last
        reference = ReferenceDistribution.from_features(matrix, outcomes)
        self.checker = DriftChecker(reference, self.thresholds)
        self.capturing = False
        self.reference_source = "captured"
        log.warning("drift reference for %s captured from %d rows of live traffic",
                    self.model_version or "the serving model", len(matrix))
        self.last = DriftReport("insufficient", now, reference.rows, len(matrix), [],
                                f"reference captured from {len(matrix)} rows")
        return self.last

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="predis-drift", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(max(0.05, self.interval_s))
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self.check_now()
            except Exception:
                self.failures += 1
                log.exception("drift check failed")
