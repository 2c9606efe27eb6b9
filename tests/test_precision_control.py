"""The prefetcher's control of itself by its own precision (models/precision_control.py):
fed used / wasted counts and times, it throttles, pauses, probes and recovers deterministically."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import redis
from servers import predis_process

from models.precision_control import (
    BACKOFF_MAX,
    BACKOFF_MIN,
    BAR_MAX,
    MIN_OUTCOMES,
    PROBE_ISSUES,
    PROBE_OUTCOMES,
    PROBE_TIMEOUT,
    PrecisionControl,
)
from models.prefetch import Prefetcher
from models.ranker import RankerService


class Feed:
    """Running used / wasted totals, as the prefetcher counts them."""

    def __init__(self, control: PrecisionControl) -> None:
        self.control, self.used, self.wasted = control, 0, 0

    def outcomes(self, used: int, wasted: int, now: float) -> None:
        self.used += used
        self.wasted += wasted
        self.control.reading(self.used, self.wasted, now)


def issuable(control: PrecisionControl, now: float, tries: int = 100) -> int:
    return sum(control.allows(now) for _ in range(tries))


def paused_web_like() -> tuple[PrecisionControl, Feed]:
    """Guesses 10% right until the bar is at its top and issuing paused, at t=0."""
    control = PrecisionControl(threshold=0.5, floor=0.5)
    feed = Feed(control)
    bars = []
    while control.paused_until is None:
        feed.outcomes(3, MIN_OUTCOMES - 3, now=0.0)
        bars.append(control.bar)
    assert bars[:3] == pytest.approx([0.75, 0.875, 0.9375])  # halves the distance to 1 each reading
    assert bars[-1] == BAR_MAX
    return control, feed


def test_low_precision_raises_the_bar_then_pauses_issuing():
    control, _ = paused_web_like()
    assert control.effective_bar == BAR_MAX
    assert issuable(control, now=BACKOFF_MIN - 0.1) == 0
    assert control.pauses == 1


def test_a_probe_issues_a_few_then_waits_for_their_outcomes():
    control, feed = paused_web_like()
    assert issuable(control, now=BACKOFF_MIN) == PROBE_ISSUES
    feed.outcomes(1, PROBE_OUTCOMES - 2, now=BACKOFF_MIN + 1)  # too few outcomes: no verdict yet
    assert issuable(control, now=BACKOFF_MIN + 1) == 0 and control.paused_until is None


def test_failed_probes_double_the_pause_up_to_the_cap():
    control, feed = paused_web_like()
    now, pauses = 0.0, []
    for _ in range(12):
        now = control.paused_until
        assert issuable(control, now) == PROBE_ISSUES
        feed.outcomes(2, PROBE_OUTCOMES - 2, now)  # 25% read: failed
        pauses.append(control.paused_until - now)
    assert pauses[:3] == [2 * BACKOFF_MIN, 4 * BACKOFF_MIN, 8 * BACKOFF_MIN]
    assert pauses[-1] == BACKOFF_MAX
    assert issuable(control, now + 1) == 0


def test_a_probe_without_outcomes_fails_after_the_timeout():
    control, feed = paused_web_like()
    start = control.paused_until
    assert issuable(control, start) == PROBE_ISSUES
    feed.outcomes(0, 0, start + PROBE_TIMEOUT - 0.1)
    assert control.paused_until is None
    feed.outcomes(0, 0, start + PROBE_TIMEOUT)
    assert control.paused_until == pytest.approx(start + PROBE_TIMEOUT + 2 * BACKOFF_MIN)


def test_a_good_probe_resumes_and_good_readings_bring_the_bar_back_to_the_threshold():
    control, feed = paused_web_like()
    start = control.paused_until
    assert issuable(control, start) == PROBE_ISSUES
    feed.outcomes(PROBE_OUTCOMES, 0, start + 1)  # every probe read: the traffic became predictable
    assert issuable(control, start + 1) == 100  # no probe limit any more
    assert control.effective_bar == BAR_MAX
    for step in range(30):
        feed.outcomes(MIN_OUTCOMES - 4, 4, start + 2 + step)  # 88% read
    assert control.effective_bar == pytest.approx(0.5)  # the configured threshold, not below
    assert control.backoff == BACKOFF_MIN


def test_a_lucky_probe_near_the_floor_does_not_resume():
    control, feed = paused_web_like()
    start = control.paused_until
    issuable(control, start)
    feed.outcomes(PROBE_OUTCOMES // 2, PROBE_OUTCOMES // 2, start + 1)  # 50%: not above floor + margin
    assert issuable(control, start + 1) == 0 and control.paused_until is not None


def test_precision_at_the_floor_holds_the_bar_and_too_few_outcomes_move_nothing():
    control = PrecisionControl(threshold=0.5, floor=0.5)
    feed = Feed(control)
    feed.outcomes(1, MIN_OUTCOMES - 2, now=0)  # one short of a reading
    assert control.bar == 0.5
    feed.outcomes(0, 1, now=0)
    assert control.bar == pytest.approx(0.75)
    feed.outcomes(MIN_OUTCOMES // 2 + 2, MIN_OUTCOMES // 2 - 2, now=1)  # 56%: above the floor, not by the margin
    assert control.bar == pytest.approx(0.75)


def test_floor_zero_never_throttles():
    control = PrecisionControl(threshold=0.5, floor=0.0)
    feed = Feed(control)
    for step in range(50):
        feed.outcomes(0, MIN_OUTCOMES, now=step)
    assert control.effective_bar == 0.5 and issuable(control, 50.0) == 100


def test_reset_restarts_from_the_new_threshold():
    control, _ = paused_web_like()
    control.reset(0.7)
    assert control.effective_bar == 0.7 and issuable(control, 0.0) == 100


class _Loader:
    def __init__(self, loop):
        self.inflight, self.loop, self.loads = {}, loop, []

    def load(self, key):
        self.loads.append(key)
        return self.loop.create_future()


def test_the_prefetcher_issues_nothing_while_paused_and_counts_the_skips():
    loop = asyncio.new_event_loop()
    try:
        server = SimpleNamespace(loop=loop, keyspace=SimpleNamespace(maxmemory=0, dbs=[]))
        loader = _Loader(loop)
        p = Prefetcher(server, loader, RankerService())
        p.control.paused_until = float("inf")
        p._issue(None, b"a")
        assert loader.loads == [] and p.skipped_precision == 1 and p.issued == 0
        p.control.paused_until = None
        p._issue(None, b"b")
        assert loader.loads == [b"b"] and p.issued == 1
    finally:
        loop.close()


def test_reconcile_feeds_the_control():
    loop = asyncio.new_event_loop()
    try:
        server = SimpleNamespace(loop=loop, keyspace=SimpleNamespace(maxmemory=0, dbs=[]))
        p = Prefetcher(server, None, RankerService(), threshold=0.5)
        p.used, p.wasted = 2, MIN_OUTCOMES
        p.reconcile()
        assert p.control.effective_bar == pytest.approx(0.75)
    finally:
        loop.close()


def test_config_set_reaches_the_control(tmp_path):
    with predis_process("--origin", f"file://{tmp_path}", "--prefetch-enabled", "yes") as server:
        r = redis.Redis(port=server.port)
        assert r.config_get("prefetch-precision-floor") == {"prefetch-precision-floor": "0.5"}
        r.config_set("prefetch-precision-floor", "0")
        assert r.config_get("prefetch-precision-floor") == {"prefetch-precision-floor": "0"}
        with pytest.raises(redis.ResponseError):
            r.config_set("prefetch-precision-floor", "1.5")
        info = r.info("prediction")
        assert info["prefetch_paused"] == 0 and info["prefetch_skipped_precision"] == 0
        assert float(info["prefetch_threshold_effective"]) == 0.5
        r.config_set("prefetch-threshold", "0.8")
        assert float(r.info("prediction")["prefetch_threshold_effective"]) == 0.8


def test_config_changes_are_applied_to_the_prefetchers_control():
    from predis_server.readthrough import PredictionServices

    loop = asyncio.new_event_loop()
    try:
        server = SimpleNamespace(loop=loop, keyspace=SimpleNamespace(maxmemory=0, dbs=[]))
        p = Prefetcher(server, None, RankerService(), threshold=0.5)
        p.control.bar = BAR_MAX
        services = PredictionServices.__new__(PredictionServices)
        services.prefetcher = p
        services.config = SimpleNamespace(prefetch_threshold=0.6, prefetch_max_inflight=64,
                                          prefetch_memory_share=0.2, origin_ttl=0, prefetch_stream_floor=0,
                                          prefetch_precision_floor=0.3)
        services._apply_prefetch_limits()
        assert p.control.floor == 0.3 and p.control.effective_bar == 0.6 and p.threshold == 0.6
    finally:
        loop.close()
