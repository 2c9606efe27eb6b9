"""Drift alerts fan out to everywhere an operator looks.

* the structured log (``predis.drift``: one JSON object per event, warning level);
* the audit log (``server.audit("drift-alarm", None, ...)``);
* Prometheus (``predis_drift_*``: provider registered with ``services.metrics``);
* INFO (``# Drift`` section registered with ``info.register_section``);
* PREDIS.DRIFT STATUS (reads the same monitor);
* an optional webhook (``drift-webhook-url``): JSON POSTed by a daemon thread with retries
  and exponential back-off; ``post`` only queues, so a dead endpoint never blocks the server.

An event is sent when the level changes (ok -> warn -> alarm -> ok), not on every check:
an alarm that lasts an hour is one page, and its end is a second one (``drift-cleared``).
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .drift import DriftMonitor, DriftReport

log = logging.getLogger("predis.drift")

_STOP = object()


class WebhookSender:
    """POSTs JSON to ``url`` from a daemon thread; bounded queue (oldest dropped when full)."""

    def __init__(self, url: str, retries: int = 3, backoff_s: float = 0.5, timeout_s: float = 2.0,
                 max_queued: int = 100) -> None:
        self.url = url
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.queue: queue.Queue[Any] = queue.Queue(max_queued)
        self.attempts = 0
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="predis-drift-webhook", daemon=True)
        self._thread.start()

    def post(self, payload: dict[str, Any]) -> None:
        while True:
            try:
                self.queue.put_nowait(payload)
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def close(self) -> None:
        try:
            self.queue.put_nowait(_STOP)
        except queue.Full:
            pass

    def _run(self) -> None:
        while True:
            payload = self.queue.get()
            if payload is _STOP:
                return
            body = json.dumps(payload, default=str).encode()
            for attempt in range(self.retries + 1):
                self.attempts += 1
                try:
                    request = urllib.request.Request(self.url, data=body, method="POST",
                                                     headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                        if 200 <= response.status < 300:
                            self.delivered += 1
                            break
                except (urllib.error.URLError, OSError, ValueError) as exc:
                    last_error = exc
                else:
                    last_error = None
                if attempt == self.retries:
                    self.failed += 1
                    log.warning("drift webhook %s failed after %d attempts: %s", self.url,
                                attempt + 1, last_error)
                    break
                time.sleep(self.backoff_s * (2 ** attempt))


class DriftAlerts:
    """A ``DriftMonitor`` listener: turns changes of level into log, audit and webhook events."""

    def __init__(self, audit: Callable[..., None] | None = None, webhook: WebhookSender | None = None) -> None:
        self.audit = audit
        self.webhook = webhook
        self.events = 0
        self.last_event: dict[str, Any] | None = None

    def on_report(self, report: DriftReport, previous: DriftReport | None) -> None:
        before = previous.level if previous is not None else "ok"
        level = report.level
        if level == "insufficient" or level == before or (level == "ok" and before == "insufficient"):
            return
        event = "drift-cleared" if level == "ok" else f"drift-{level}"
        payload = {"event": event, "level": level, "previous_level": before,
                   "checked_at": report.checked_at, "drifted": report.drifted,
                   "max_psi": round(report.max_psi, 4), "reference_rows": report.reference_rows,
                   "current_rows": report.current_rows,
                   "tests": [{"name": t.name, "psi_or_drop": round(t.effect, 4),
                              "p_adjusted": t.p_adjusted, "level": t.level} for t in report.tests]}
        self.events += 1
        self.last_event = payload
        log.warning("%s", json.dumps(payload, default=str))
        if self.audit is not None:
            self.audit(event, level=level, drifted=report.drifted, max_psi=payload["max_psi"])
        if self.webhook is not None:
            self.webhook.post(payload)


# -- INFO and Prometheus: read the live monitor, never a copy ----------------------------------
def info_lines(monitor: DriftMonitor | None, alerts: DriftAlerts | None = None,
               webhook: WebhookSender | None = None) -> list[tuple[str, Any]]:
    if monitor is None:
        return [("drift_enabled", 0)]
    last = monitor.last
    lines: list[tuple[str, Any]] = [
        ("drift_enabled", 1),
        ("drift_model_version", monitor.model_version or "none"),
        ("drift_reference", monitor.reference_source),  # registry, model-dir, captured, capturing, none
        ("drift_level", last.level if last else "none"),
        ("drift_checks", monitor.checks),
        ("drift_warnings", monitor.warnings),
        ("drift_alarms", monitor.alarms),
        ("drift_check_failures", monitor.failures),
        ("drift_last_check_time", int(last.checked_at) if last else 0),
        ("drift_max_psi", round(last.max_psi, 4) if last else 0.0),
        ("drift_features_drifted", ",".join(last.drifted) if last else ""),
        ("drift_check_interval", monitor.interval_s),
    ]
    if alerts is not None:
        lines.append(("drift_alert_events", alerts.events))
    if webhook is not None:
        lines += [("drift_webhook_delivered", webhook.delivered), ("drift_webhook_failed", webhook.failed)]
    return lines


def prometheus_metrics(monitor: DriftMonitor | None, webhook: WebhookSender | None = None) -> list[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    if monitor is None:
        return []
    last = monitor.last
    level_value = {"insufficient": -1, "ok": 0, "warn": 1, "alarm": 2}
    out: list[Any] = [
        GaugeMetricFamily("predis_drift_level", "Drift level of the last check (-1 insufficient, 0 ok, "
                          "1 warn, 2 alarm)", value=level_value.get(last.level, 0) if last else 0),
        CounterMetricFamily("predis_drift_checks", "Drift checks run", value=monitor.checks),
        CounterMetricFamily("predis_drift_warnings", "Checks that ended at warn", value=monitor.warnings),
        CounterMetricFamily("predis_drift_alarms", "Checks that ended at alarm", value=monitor.alarms),
        GaugeMetricFamily("predis_drift_last_check_timestamp_seconds", "Time of the last check",
                          value=last.checked_at if last else 0),
    ]
    psi_family = GaugeMetricFamily("predis_drift_psi", "PSI per feature (relative drop for outcomes)",
                                   labels=["feature"])
    p_family = GaugeMetricFamily("predis_drift_ks_pvalue_adjusted", "Corrected p-value per test",
                                 labels=["feature"])
    for t in (last.tests if last else []):
        psi_family.add_metric([t.name], t.effect)
        p_family.add_metric([t.name], t.p_adjusted)
    out += [psi_family, p_family]
    if webhook is not None:
        out.append(CounterMetricFamily("predis_drift_webhook_failures", "Webhook alerts given up",
                                       value=webhook.failed))
    return out
