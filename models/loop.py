"""The MLOps loop in the server: drift -> retrain -> register -> validate -> A/B -> promote -> watch.

```
 live GET/MGET ──▶ collector (+ prefetcher features) ──▶ DriftMonitor (every drift-check-interval)
                                                            │ warn/alarm
              log · audit · predis_drift_* · INFO · PREDIS.DRIFT STATUS · webhook ◀──┤
                                                            │ alarm / retrain-schedule / PREDIS.MODEL RETRAIN
                                                            ▼
               RetrainJob (child process: segments → features → weighted fit → ONNX + reference)
                                                            ▼
                       MLflow registry: new version, alias "challenger"
                                                            ▼
     validation gate (held-out recent traffic, simulator: hit ratio ≥, precision ≥, latency ≤ 1.1x)
                                                            ▼ pass
            A/B test (stable key hash, ab-share; sequential two-proportion test, p < 0.05)
                                                            ▼ promote
       alias "champion" → new, "previous" → old; hot reload; drift reference ← new model's
                                                            ▼
        PromotionWatch: drop > model-rollback-margin ──▶ roll back (aliases, reload, audit)
```

Installed by ``install(server)``; nothing heavy happens at start (MLflow is imported on the
first registration). Work runs on the drift thread, the retraining child process, and the
server's cron hook (``poll``: a few attribute reads unless a job just finished).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import numpy as np

from .alerts import DriftAlerts, WebhookSender, info_lines, prometheus_metrics
from .drift import DriftMonitor, DriftThresholds, features_from_events, outcome_counts

log = logging.getLogger("predis.models")

DRIFT_WINDOW_EVENTS = 20_000


class MLOpsLoop:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.config = server.config
        self.registry: Any = None
        self.job: Any = None
        self.abtest: Any = None
        self.watch: Any = None
        self.last_gate: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.last_scheduled = time.time()
        url = self.config.drift_webhook_url
        self.webhook = WebhookSender(url) if url else None
        self.alerts = DriftAlerts(audit=self._audit, webhook=self.webhook)
        self.drift = DriftMonitor(self._drift_source, None, DriftThresholds.from_config(self.config),
                                  self.config.drift_check_interval or 60.0)
        self.drift.listeners.append(self.alerts.on_report)
        self.drift.listeners.append(self._on_drift)
        for name in ("drift-ks-pvalue", "drift-psi-warn", "drift-psi-alarm", "drift-min-samples"):
            self.config.watch(name, lambda _v: setattr(self.drift, "thresholds",
                                                       DriftThresholds.from_config(self.config)))
        self.config.watch("drift-check-interval", lambda v: setattr(self.drift, "interval_s", v or 60.0))

    # -- plumbing -----------------------------------------------------------------------------
    def _audit(self, event: str, **fields: Any) -> None:
        self.server.audit(event, None, **fields)

    def _note(self, event: str, **fields: Any) -> None:
        self.events.append({"time": time.time(), "event": event, **fields})
        del self.events[:-100]

    def _prediction(self) -> Any:
        return getattr(self.server, "prediction", None)

    def _drift_source(self) -> tuple[np.ndarray, dict[str, int]]:
        services = self._prediction()
        collector = getattr(services, "collector", None)
        prefetcher = getattr(services, "prefetcher", None)
        outcomes: dict[str, int] = {}
        matrix = np.zeros((0, 9), dtype=np.float32)
        if prefetcher is not None and getattr(prefetcher, "recent_features", None):
            matrix = np.concatenate(list(prefetcher.recent_features))
            outcomes.update(prefetched=int(prefetcher.stored), prefetch_used=int(prefetcher.used))
        if collector is not None:
            events = collector.recent(DRIFT_WINDOW_EVENTS)
            if len(matrix) < self.drift.thresholds.min_samples:
                matrix = features_from_events(events)
            counts = outcome_counts(events)
            outcomes.update(hits=counts["hits"], lookups=counts["lookups"])
        return matrix, outcomes

    def get_registry(self) -> Any:
        if self.registry is None:
            from .registry import ModelRegistry

            self.registry = ModelRegistry(os.path.join(self.config.dir, "mlflow"), self.config.mlflow_tracking_uri)
        return self.registry

    # -- triggers -----------------------------------------------------------------------------
    def _on_drift(self, report: Any, previous: Any) -> None:
        if report.level == "alarm" and (previous is None or previous.level != "alarm"):
            self.retrain("drift-alarm")

    def retrain(self, reason: str) -> str:
        """Start a training child process; returns its output directory (or raises ValueError)."""
        from .retrain import RetrainJob

        if self.job is not None and self.job.poll() == "running":
            raise ValueError("a retraining job is already running")
        segments = self.config.collector_export_dir
        services = self._prediction()
        if services is not None and services.collector is not None:
            services.collector.export_once()  # include what was just recorded
        if not segments or not os.path.isdir(segments):
            raise ValueError("no collector segments to train from (set collector-export-dir)")
        out = os.path.join(self.config.dir, "mlflow", "trained", time.strftime("%Y%m%d-%H%M%S")
                           + f"-{int(time.time() * 1000) % 1000:03d}")
        self.job = RetrainJob(segments, out, reason)
        self._note("retrain-started", reason=reason, out=out)
        self._audit("model-retrain", reason=reason)
        return out

    # -- the cron step ------------------------------------------------------------------------
    def poll(self) -> None:
        schedule = self.config.retrain_schedule
        if schedule and time.time() - self.last_scheduled >= schedule:
            self.last_scheduled = time.time()
            try:
                self.retrain("schedule")
            except ValueError as exc:
                log.warning("scheduled retraining skipped: %s", exc)
        if self.job is not None:
            state = self.job.poll()
            if state == "failed":
                self._note("retrain-failed", error=self.job.error())
                log.warning("retraining failed: %s", self.job.error())
                self.job = None
            elif state == "done":
                job, self.job = self.job, None
                # registration and the gate's replay take seconds: off the event loop
                threading.Thread(target=self._challenger_ready_safe, args=(job.out_dir,),
                                 name="predis-gate", daemon=True).start()
        if self.abtest is not None and self.abtest.decide() != "running":
            decision, test = self.abtest.decision, self.abtest
            self.abtest = None
            self._note(f"abtest-{decision}", **test.status())
            if decision == "promote":
                self.promote(test.challenger_version, by="abtest")

    def _challenger_ready_safe(self, model_dir: str) -> None:
        try:
            self._challenger_ready(model_dir)
        except Exception as exc:
            log.exception("registering or validating %s failed", model_dir)
            self._note("gate-failed", error=str(exc))

    def _challenger_ready(self, model_dir: str) -> None:
        from .abtest import ABTest
        from .drift import ReferenceDistribution
        from .ranker import HeuristicRanker, OnnxRanker
        from .registry import CHAMPION
        from .validation import validate

        registry = self.get_registry()
        reference_path = os.path.join(model_dir, "reference.npz")
        reference = ReferenceDistribution.load(reference_path) if os.path.isfile(reference_path) else None
        info = registry.register(model_dir, reference)
        champion_version = registry.alias_version(CHAMPION)
        champion = OnnxRanker(registry.fetch(champion_version)) if champion_version else HeuristicRanker()
        services = self._prediction()
        events = services.collector.recent(DRIFT_WINDOW_EVENTS) if services and services.collector else None
        if events is None or len(events["key_hash"]) < 1000:
            self._note("gate-skipped", version=info.version, reason="no recent traffic to replay")
            return
        gate = validate(champion, OnnxRanker(registry.fetch(info.version)), events, cache_size=10_000,
                        threshold=self.config.prefetch_threshold)
        self.last_gate = {"version": info.version, **gate.to_dict()}
        self._note("gate-passed" if gate.passed else "gate-refused", version=info.version, reasons=gate.reasons)
        if gate.passed:
            self.abtest = ABTest(champion_version or "builtin", info.version, self.config.ab_share,
                                 self.config.ab_min_samples)

    # -- promotion and rollback ---------------------------------------------------------------
    def promote(self, version: str, by: str = "command") -> str:
        from .registry import PREVIOUS

        registry = self.get_registry()
        path = registry.fetch(version)
        ok, message = self._load(path)
        if not ok:
            raise ValueError(message)
        old = registry.promote(version)
        self.drift.set_reference(registry.reference(version), f"v{version}")
        self._audit("model-promote", by=by, version=version, previous=old)
        self._note("promoted", version=version, previous=old, by=by)
        if registry.alias_version(PREVIOUS) is not None:
            from .rollback import Figures, PromotionWatch

            self.watch = PromotionWatch(version, old or "", Figures(), self.config.model_rollback_margin)
        return message

    def rollback(self, reason: str, by: str = "command") -> tuple[str, str]:
        from .rollback import roll_back

        bad, restored = roll_back(self.get_registry(), self._load,
                                  lambda event, **f: self._audit(event, **f), reason, by=by)
        self.drift.set_reference(self.get_registry().reference(restored), f"v{restored}")
        self.watch = None
        self._note("rolled-back", bad=bad, restored=restored, by=by, reason=reason)
        return bad, restored

    def _load(self, path: str) -> tuple[bool, str]:
        services = self._prediction()
        if services is None:
            return False, "prediction services are not running"
        services._ensure_ranker()
        return services.reloader.load(path)

    def status(self) -> dict[str, Any]:
        last = self.drift.last
        return {"drift": last.to_dict() if last else {"level": "none"},
                "retraining": self.job.poll() if self.job is not None else "idle",
                "abtest": self.abtest.status() if self.abtest is not None else None,
                "watch": self.watch.status() if self.watch is not None else None,
                "last_gate": self.last_gate, "events": self.events[-10:]}

    def close(self) -> None:
        self.drift.stop()
        if self.webhook is not None:
            self.webhook.close()


def install(server: Any) -> MLOpsLoop:
    """Attach the loop: drift thread on start, cron poll, INFO section, predis_drift_* metrics."""
    loop = MLOpsLoop(server)
    server.mlops = loop
    from predis_server.info import register_section

    register_section("drift", lambda s: info_lines(getattr(s, "mlops", None) and s.mlops.drift,
                                                   getattr(s, "mlops", None) and s.mlops.alerts,
                                                   getattr(s, "mlops", None) and s.mlops.webhook))
    try:
        from predis_server.services.metrics import register_provider

        register_provider("drift", lambda s: prometheus_metrics(s.mlops.drift, s.mlops.webhook))
    except ImportError:  # prometheus-client absent: no /metrics endpoint anyway
        pass

    async def start() -> None:
        if server.config.drift_check_interval > 0:
            loop.drift.start()

    async def stop() -> None:
        loop.close()

    server.hooks.setdefault("start", []).append(start)
    server.hooks.setdefault("shutdown", []).append(stop)
    server.hooks.setdefault("cron", []).append(loop.poll)
    return loop
