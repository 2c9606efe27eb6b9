"""The prefetcher's control of itself by its own recent precision (issue 5).

Where the model's guesses are mostly wrong (Zipf web traffic: nothing sequential to learn),
prefetching only spends origin reads and memory. ``PrecisionControl`` reads the prefetcher's
running used / wasted counts (``reading``) and decides two things the prefetcher asks about
each candidate: the effective threshold (``bar``) and whether to issue at all (``allows``).

* Each reading with at least ``MIN_OUTCOMES`` new outcomes (read, or wasted: evicted, expired or
  overwritten unread) since the last one is judged by its precision. Below ``floor``: the bar
  halves its distance to 1 (at most ``BAR_MAX``); at ``floor + RECOVER_MARGIN`` or above it
  steps back ``STEP_DOWN`` toward the configured threshold.
* Below the floor with the bar already at ``BAR_MAX``, the most confident guesses are wrong too:
  issuing pauses for ``backoff`` seconds (``BACKOFF_MIN``, doubling after every failed probe up
  to ``BACKOFF_MAX``). A pause ends in a probe: ``PROBE_ISSUES`` prefetches at the bar, then
  nothing until ``PROBE_OUTCOMES`` of them have an outcome (or ``PROBE_TIMEOUT`` seconds after
  the last one went out: a failed probe). A probe at ``floor + RECOVER_MARGIN`` or above resumes
  issuing (the bar then steps down by later readings); otherwise the next pause is longer. The
  margin keeps an 8-outcome probe of ~35% guesses from resuming by luck (P(>= 6 of 8) ~ 3%),
  while one of ~90% guesses passes (~96%).

``floor`` 0 turns the control off: the bar is the threshold and issuing never pauses.
Deterministic: time is passed in by the caller (``time.monotonic()`` in the prefetcher).
"""
from __future__ import annotations

import numpy as np

DEFAULT_FLOOR = 0.5     # issue 5's target: at least half of the prefetched entries read
MIN_OUTCOMES = 32       # read-or-wasted prefetches a regular reading needs
RECOVER_MARGIN = 0.15   # precision above the floor that lowers the bar / passes a probe
STEP_DOWN = 0.05
BAR_MAX = 0.98          # below this the bar still rises; at it, low precision pauses issuing
BACKOFF_MIN = 2.0       # seconds of the first pause
BACKOFF_MAX = 120.0
PROBE_ISSUES = 8        # prefetches a probe may issue
PROBE_OUTCOMES = 8      # outcomes that judge a probe
PROBE_TIMEOUT = 10.0    # seconds after a probe's last issue without enough outcomes: failed


class PrecisionControl:
    def __init__(self, threshold: float = 0.5, floor: float = DEFAULT_FLOOR) -> None:
        self.threshold = threshold       # the configured prefetch-threshold
        self.floor = floor
        self.bar = threshold             # effective threshold
        self.seen = (0, 0)               # (used, wasted) totals at the last judged reading
        self.paused_until: float | None = None  # issuing paused until then (monotonic seconds)
        self.backoff = BACKOFF_MIN
        self.probe_left = 0              # prefetches the running probe may still issue
        self.probe_sent_at: float | None = None  # when the running probe issued its last one
        self.probing = False
        self.pauses = 0                  # times issuing paused (INFO)
        self.last_precision: float | None = None

    def reset(self, threshold: float) -> None:
        """A new configured threshold starts the control afresh."""
        self.threshold = self.bar = threshold
        self.paused_until = None
        self.probing = False
        self.probe_left = 0
        self.backoff = BACKOFF_MIN

    @property
    def effective_bar(self) -> float:
        return max(self.threshold, self.bar) if self.floor > 0 else self.threshold

    def paused(self, now: float) -> bool:
        """Whether issuing is held back now (a pause, or a probe waiting for its outcomes)."""
        if self.floor <= 0:
            return False
        self._end_pause(now)
        return self.paused_until is not None or (self.probing and self.probe_left <= 0)

    def _end_pause(self, now: float) -> None:
        if self.paused_until is not None and now >= self.paused_until:
            self.paused_until = None  # the pause is over: probe
            self.probing, self.probe_left, self.probe_sent_at = True, PROBE_ISSUES, None

    def allows(self, now: float) -> bool:
        """Whether one prefetch may be issued now; counts it against a running probe."""
        if self.paused(now):
            return False
        if self.probing:
            self.probe_left -= 1
            if self.probe_left <= 0:
                self.probe_sent_at = now
        return True

    def reading(self, used: int, wasted: int, now: float) -> None:
        """The prefetcher's running totals of used and wasted prefetches."""
        if self.floor <= 0:
            self.seen = (used, wasted)
            return
        new_used, new_wasted = used - self.seen[0], wasted - self.seen[1]
        decided = new_used + new_wasted
        self._end_pause(now)
        if self.paused_until is not None:
            self.seen = (used, wasted)  # outcomes of what went out before the pause: judged already
            return
        if self.probing:
            if decided >= PROBE_OUTCOMES:
                self.seen = (used, wasted)
                self._judge_probe(new_used / decided, now)
            elif self.probe_sent_at is not None and now - self.probe_sent_at >= PROBE_TIMEOUT:
                self.seen = (used, wasted)
                self._judge_probe(0.0, now)
            return
        if decided < MIN_OUTCOMES:
            return
        self.seen = (used, wasted)
        precision = self.last_precision = new_used / decided
        if precision < self.floor:
            if self.bar >= BAR_MAX:
                self._pause(now)
            else:
                self.bar = min(BAR_MAX, self.bar + (1.0 - self.bar) / 2)
        elif precision >= self.floor + RECOVER_MARGIN:
            self.bar = max(self.threshold, self.bar - STEP_DOWN)
            self.backoff = BACKOFF_MIN

    def _judge_probe(self, precision: float, now: float) -> None:
        self.last_precision = precision
        self.probing, self.probe_left, self.probe_sent_at = False, 0, None
        if precision >= self.floor + RECOVER_MARGIN:
            self.backoff = BACKOFF_MIN  # resumed at the top bar; regular readings lower it
        else:
            self.backoff = min(BACKOFF_MAX, self.backoff * 2)
            self._pause(now)

    def _pause(self, now: float) -> None:
        self.paused_until = now + self.backoff
        self.pauses += 1


# -- selection: which candidates are worth a prefetch ---------------------------------------
# Throttling (above) changes how many prefetches go out, not what share of them is read: on
# Zipf web traffic every threshold's guesses are ~40% right. What does separate them there is
# the candidate's past: a follower read often before is likely to be read again before it is
# evicted, one read a few times is not (web, prefetch-lru at 5%, per log2 access-count bucket:
# 3: 0.25, 4: 0.52, 6: 0.90, 7: 1.00 of the prefetches read). So candidates fall into classes,
# followers by log2(1 + their access count), strides by log2(1 + the stream's confidence).
#
# The gate keeps prefetching as a whole at or above the floor while closing as little as it
# can: where the projected precision of all classes (each class's share read, shrunk toward
# the overall share by CLASS_PRIOR pseudo-outcomes, weighted by its candidates) is under the
# target, it closes classes worst first, each only while the classes still open project
# under it. The target is the floor plus the projection's noise (CONFIDENCE_Z binomial
# standard errors over the gate's outcomes, at most RECOVER_MARGIN): with web's first few
# dozen outcomes, mostly the popular followers' (nearly all read), a bare "projected <
# floor" let the marginal classes run until their waste had pulled the figure down
# (prefetch-lru at 5%: precision 0.43 in prefetch.md at d80d1c2, 0.48 in select.md).
# Worst first, not "every bucket under floor + margin, from the most-read down" (the first
# version): on hft the projection is ~0.5-0.6 and one class is the waste, strides of
# confidence 3-6, which run past a symbol's group of keys into the next symbol's (~0.05 read);
# the first version closed it and with it every follower read fewer than 15 times and every
# stride of confidence 1-2 (0.5-0.66 read), costing hits (hft at 10%, prefetch-predictive,
# 67.8% -> 62.2% once the gate acted more often, from the debug run behind this change).
CLASS_BUCKETS = 8           # log2 buckets per source: 0, 1, 2-3, ..., 127+
CLASS_MIN_OUTCOMES = 12     # outcomes (all classes together) before the gate judges
CLASS_PRIOR = 6             # pseudo-outcomes at the overall share that shrink a class's own share
CLASS_WINDOW = 128          # a class's counts halve past this many: recent outcomes weigh more
CLASS_PROBE_EVERY = 64      # a closed class still issues one candidate in this many (it may change);
# 16 had probes make up about a fifth of web's issued prefetches (closed classes see hundreds of
# candidates), at the closed classes' 0.2-0.4 read share
CONFIDENCE_Z = 2.0          # standard errors of the projection the target adds to the floor


def candidate_classes(raw: np.ndarray) -> np.ndarray:
    """Class of each raw candidate row (``models.candidates.RAW_COLUMNS``): followers
    0..CLASS_BUCKETS-1 by their access count, strides CLASS_BUCKETS.. by stream confidence."""
    is_stride = raw[:, 3] > 0
    value = np.where(is_stride, raw[:, 4], raw[:, 6])
    bucket = np.minimum(np.log2(1.0 + np.maximum(value, 0.0)).astype(np.int64), CLASS_BUCKETS - 1)
    return bucket + np.where(is_stride, CLASS_BUCKETS, 0)


class SelectionGate:
    """Per-class outcome counts of issued prefetches and the decision to issue one of a class.

    ``projected``: the precision prefetching would have if every class were issued as often as
    its candidates come (``estimates`` weighted by candidates seen); it does not move when the
    gate closes a class, so closing one cannot reopen it by raising the figure. Selection acts
    only while that is under ``target`` (``acting``). A closed class's probes keep its figure
    current, so it reopens when its reads improve.
    """

    def __init__(self) -> None:
        n = 2 * CLASS_BUCKETS
        self.used = np.zeros(n)
        self.wasted = np.zeros(n)
        self.seen = np.zeros(n)      # candidates that reached the issue decision, per class
        self.tries = np.zeros(n, dtype=np.int64)
        self.skipped = 0             # candidates not issued for their class
        self._open: np.ndarray | None = None  # per class, for the floor it was computed for
        self._open_floor = -1.0

    def precision(self, cls: int) -> float | None:
        decided = self.used[cls] + self.wasted[cls]
        return None if decided < CLASS_MIN_OUTCOMES else float(self.used[cls] / decided)

    def estimates(self) -> np.ndarray | None:
        """Each class's share read, shrunk toward the overall share; None: too few outcomes."""
        decided = self.used + self.wasted
        total = decided.sum()
        if total < CLASS_MIN_OUTCOMES:
            return None
        overall = self.used.sum() / total
        return (self.used + CLASS_PRIOR * overall) / (decided + CLASS_PRIOR)

    def projected(self) -> float | None:
        estimates = self.estimates()
        if estimates is None or self.seen.sum() <= 0:
            return None
        return float((self.seen * estimates).sum() / self.seen.sum())

    def target(self, floor: float) -> float:
        """The floor plus the projection's noise (CONFIDENCE_Z standard errors, at most RECOVER_MARGIN)."""
        decided = float((self.used + self.wasted).sum())
        share = float(self.used.sum()) / decided if decided else 0.0
        noise = CONFIDENCE_Z * np.sqrt(share * (1.0 - share) / decided) if decided else RECOVER_MARGIN
        return floor + min(RECOVER_MARGIN, float(noise))

    def acting(self, floor: float) -> bool:
        """Whether selection acts: the projection is under ``target`` (too few outcomes: no)."""
        projected = self.projected()
        return projected is not None and projected < self.target(floor)

    def open_classes(self, floor: float) -> np.ndarray:
        """Per class: issued (True) or closed, for a precision floor. Closed: worst first, while
        the classes left open project under the target; never a class without outcomes nor
        one whose own estimate meets the target."""
        if self._open is not None and self._open_floor == floor:
            return self._open
        is_open = np.ones(2 * CLASS_BUCKETS, dtype=bool)
        estimates = self.estimates()
        if estimates is not None and self.acting(floor):
            target = self.target(floor)
            tried = (self.used + self.wasted) > 0
            weight = float(self.seen.sum())
            mass = float((self.seen * estimates).sum())
            for cls in np.argsort(estimates, kind="stable").tolist():
                if mass >= target * weight or estimates[cls] >= target:
                    break
                if not tried[cls] or self.seen[cls] <= 0:
                    continue
                is_open[cls] = False
                weight -= float(self.seen[cls])
                mass -= float(self.seen[cls] * estimates[cls])
                if weight <= 0:
                    break
        self._open, self._open_floor = is_open, floor
        return is_open

    def allows(self, cls: int, floor: float) -> bool:
        """Whether one candidate of ``cls`` may be issued (``floor`` 0: always)."""
        self.seen[cls] += 1
        if floor <= 0 or self.open_classes(floor)[cls]:
            return True
        self.tries[cls] += 1
        if self.tries[cls] % CLASS_PROBE_EVERY == 0:
            return True  # a probe: the class's outcomes keep coming, so it can reopen
        self.skipped += 1
        return False

    def outcome(self, cls: int, used: bool) -> None:
        if used:
            self.used[cls] += 1
        else:
            self.wasted[cls] += 1
        if self.used[cls] + self.wasted[cls] > CLASS_WINDOW:
            self.used[cls] /= 2
            self.wasted[cls] /= 2
        self._open = None
