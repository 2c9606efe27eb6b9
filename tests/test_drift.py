"""Drift detection: statistics, the reference round trip, the check's verdicts, the monitor
thread and the webhook alert against a real local HTTP server."""
from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from typing import ClassVar

import numpy as np
import pytest

from models.alerts import DriftAlerts, WebhookSender
from models.drift import (
    DriftChecker,
    DriftMonitor,
    DriftThresholds,
    ReferenceDistribution,
    adjust_pvalues,
    bin_shares,
    features_from_events,
    psi,
    quantile_edges,
)
from models.features import FEATURE_NAMES
from models.keycodes import key_codes

N_FEATURES = len(FEATURE_NAMES)


def synthetic(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n, N_FEATURES))
    m[:, 4] = rng.random(n) < 0.3      # a 0/1 feature: quantile edges collapse
    m[:, 3] = rng.integers(0, 4, n)    # a small discrete feature
    m[:, 0] += shift
    return m.astype(np.float32)


def test_psi_is_zero_for_equal_shares_and_finite_with_empty_bins():
    assert psi([0.5, 0.5], [0.5, 0.5]) == pytest.approx(0.0)
    value = psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5])
    assert np.isfinite(value) and value > 1.0


def test_quantile_edges_collapse_for_discrete_features():
    edges = quantile_edges(np.array([0.0] * 70 + [1.0] * 30))
    assert list(edges) == [0.0, 1.0]
    assert list(bin_shares(np.array([0.0, 1.0, 1.0, 1.0]), edges)) == [0.0, 0.25, 0.75]


def test_holm_is_between_raw_and_bonferroni():
    raw = [0.001, 0.01, 0.02, 0.5]
    holm = adjust_pvalues(raw, "holm")
    bonf = adjust_pvalues(raw, "bonferroni")
    assert holm == pytest.approx([0.004, 0.03, 0.04, 0.5])
    assert bonf == pytest.approx([0.004, 0.04, 0.08, 1.0])
    assert all(r <= h <= b for r, h, b in zip(raw, holm, bonf))


def test_same_distribution_is_ok_and_shift_is_alarm():
    reference = ReferenceDistribution.from_features(synthetic(20_000, 1))
    checker = DriftChecker(reference, DriftThresholds(min_samples=1000))
    assert checker.check(synthetic(10_000, 2)).level == "ok"
    report = checker.check(synthetic(10_000, 3, shift=1.5))
    assert report.level == "alarm"
    assert report.drifted == ["follow_probability"]
    assert report.max_psi > 0.25


def test_small_shift_is_warn_not_alarm():
    reference = ReferenceDistribution.from_features(synthetic(20_000, 1))
    report = DriftChecker(reference, DriftThresholds(min_samples=1000)).check(synthetic(20_000, 4, shift=0.45))
    assert report.level == "warn", [(t.name, t.effect, t.p_adjusted) for t in report.tests]


def test_below_min_samples_is_insufficient_never_alarm():
    reference = ReferenceDistribution.from_features(synthetic(20_000, 1))
    report = DriftChecker(reference, DriftThresholds(min_samples=5000)).check(synthetic(500, 3, shift=5))
    assert report.level == "insufficient" and "5000" in report.reason


def test_outcome_drop_raises_alarm():
    outcomes = {"hits": 8000, "lookups": 10000, "prefetch_used": 600, "prefetched": 1000}
    reference = ReferenceDistribution.from_features(synthetic(20_000, 1), outcomes)
    checker = DriftChecker(reference, DriftThresholds(min_samples=1000))
    same = checker.check(synthetic(10_000, 2), {"hits": 7950, "lookups": 10000,
                                                 "prefetch_used": 590, "prefetched": 1000})
    assert same.level == "ok"
    worse = checker.check(synthetic(10_000, 2), {"hits": 5000, "lookups": 10000,
                                                  "prefetch_used": 590, "prefetched": 1000})
    assert worse.level == "alarm" and worse.drifted == ["hit_ratio"]


def test_reference_round_trips_through_npz(tmp_path):
    reference = ReferenceDistribution.from_features(synthetic(5000, 1), {"hits": 3, "lookups": 4})
    path = tmp_path / "reference.npz"
    reference.save(str(path))
    loaded = ReferenceDistribution.load(str(path))
    assert loaded.names == list(FEATURE_NAMES) and loaded.rows == 5000
    assert loaded.outcomes == {"hits": 3, "lookups": 4}
    for a, b in zip(reference.edges, loaded.edges):
        assert np.array_equal(a, b)
    assert np.array_equal(reference.sample, loaded.sample)


def events_for(keys: list[bytes]) -> dict[str, np.ndarray]:
    key_hash, prefix_hash, suffix = key_codes(keys)
    return {"key_hash": key_hash, "prefix_hash": prefix_hash, "suffix": suffix}


def test_features_from_events_use_the_serving_feature_function():
    # a strided scan repeated: stride candidates appear (is_stride = 1)
    keys = [b"asset:%d" % i for _ in range(5) for i in range(0, 400, 2)]
    matrix = features_from_events(events_for(keys))
    assert matrix.shape[1] == N_FEATURES and matrix.dtype == np.float32
    assert (matrix[:, FEATURE_NAMES.index("is_stride")] == 1).any()


class _Recorder(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []
    fail_first = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Recorder.fail_first > 0:
            _Recorder.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        _Recorder.received.append({"type": self.headers["Content-Type"], "body": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook_server():
    _Recorder.received = []
    _Recorder.fail_first = 0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", _Recorder
    httpd.shutdown()
    httpd.server_close()


def wait_for(predicate, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_monitor_thread_alerts_log_audit_and_webhook_with_retries(webhook_server, caplog):
    url, recorder = webhook_server
    recorder.fail_first = 2  # the first two POSTs fail: the sender must retry
    reference = ReferenceDistribution.from_features(synthetic(10_000, 1))
    windows = iter([synthetic(5000, 2), synthetic(5000, 3, shift=2.0), synthetic(5000, 4, shift=2.0)])
    monitor = DriftMonitor(lambda: (next(windows), {}), reference,
                           DriftThresholds(min_samples=1000), interval_s=0.05)
    audited: list[tuple] = []
    sender = WebhookSender(url, retries=4, backoff_s=0.01)
    alerts = DriftAlerts(audit=lambda event, **fields: audited.append((event, fields)), webhook=sender)
    monitor.listeners.append(alerts.on_report)
    caplog.set_level(logging.WARNING, logger="predis.drift")
    started = time.perf_counter()
    monitor.start()
    try:
        assert wait_for(lambda: monitor.checks >= 3)
    finally:
        monitor.stop()
    assert monitor.alarms == 2 and monitor.last.level == "alarm"
    assert wait_for(lambda: len(recorder.received) == 1), "alert not delivered after retries"
    body = recorder.received[0]["body"]
    assert recorder.received[0]["type"] == "application/json"
    assert body["event"] == "drift-alarm" and body["level"] == "alarm"
    assert "follow_probability" in body["drifted"]
    assert sender.attempts >= 3 and sender.delivered == 1
    # one alert per change of level, not one per alarming check
    assert [e for e, _ in audited] == ["drift-alarm"]
    assert any("drift-alarm" in r.getMessage() for r in caplog.records)
    assert time.perf_counter() - started < 5


def test_webhook_never_blocks_when_the_endpoint_is_down():
    sender = WebhookSender("http://127.0.0.1:9/unreachable", retries=2, backoff_s=0.01, timeout_s=0.2)
    started = time.perf_counter()
    for _ in range(50):
        sender.post({"event": "drift-alarm"})
    assert time.perf_counter() - started < 0.05  # queued only
    assert wait_for(lambda: sender.failed >= 1)
    sender.close()


def test_monitor_captures_a_reference_from_the_first_full_window():
    windows = iter([synthetic(200, 1), synthetic(5000, 2), synthetic(5000, 3), synthetic(5000, 4, shift=2.0)])
    monitor = DriftMonitor(lambda: (next(windows), {}), None, DriftThresholds(min_samples=1000))
    assert monitor.check_now() is None  # no reference and not capturing: idle
    monitor.capture("0001-by-hand")
    first = monitor.check_now()
    assert first.level == "insufficient" and "200 of 1000" in first.reason
    assert monitor.reference_source == "capturing"
    second = monitor.check_now()
    assert second.level == "insufficient" and "captured from 5000" in second.reason
    assert monitor.reference_source == "captured" and monitor.model_version == "0001-by-hand"
    assert monitor.check_now().level == "ok"        # same traffic as the captured window
    assert monitor.check_now().level == "alarm"     # shifted traffic
    monitor.set_reference(ReferenceDistribution.from_features(synthetic(5000, 5)), "v2", "registry")
    assert monitor.reference_source == "registry" and not monitor.capturing
