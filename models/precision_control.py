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
