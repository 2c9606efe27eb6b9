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

Whatever serves gets a drift reference (``_sync_serving_model``, every cron step): a registry
version's or a model directory's ``reference.npz``, else one captured from the first full
window of live traffic (``DriftMonitor.capture``), so drift detection works for a model
loaded by ``PREDIS.MODEL LOAD``/``models-dir`` and for the built-in heuristic too. Any change
of the serving model that the loop did not make itself (a ``models-dir`` drop, ``PREDIS.MODEL
LOAD``) is watched like a promotion and undone (the previous model reloaded) if it does worse.

Per-tenant models (``models.tenants``): after a global retraining, each tenant with
``tenant-min-events`` collected events gets a job fine-tuned from the global champion on
its own events only; it is registered under the tenant's name and promoted for that tenant
when it passes the gate on the tenant's own recent traffic.

Installed by ``install(server)``; nothing heavy happens at start (MLflow is imported on the
first registration). Work runs on the drift thread, the retraining child process, and the
server's cron hook (``poll``: a few attribute reads unless a job just finished).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .alerts import DriftAlerts, WebhookSender, info_lines, prometheus_metrics
from .drift import DriftMonitor, DriftThresholds, ReferenceDistribution, features_from_events, outcome_counts
from .rollback import Figures, PromotionWatch
from .tenants import TenantDirectory, tenant_name, tenants_ready

log = logging.getLogger("predis.models")

GATE_MIN_EVENTS = 500    # fewer held-out events than this: the gate replays the recent window
RETRAIN_WAIT_WINDOWS = 2  # after an alarm, drift windows of the new traffic recorded before training


class MLOpsLoop:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.config = server.config
        self.registry: Any = None
        self.job: Any = None                 # the global retraining job
        self.tenant_jobs: list[Any] = []     # per-tenant fine-tuning jobs
        self.abtest: Any = None
        self.watch: Any = None
        self.last_gate: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.last_scheduled = time.time()
        self.retrain_due_at: int | None = None   # collector.written at which a drift retraining starts
        self.serving_version: str | None = None
        self.serving_path = ""               # the serving model's directory ("" = heuristic)
        self.changed_by_loop = False         # the next change of the serving model is ours
        self.change_mark = (0, 0, 0)         # (collector.written, prefetcher.stored, .used) at the last change
        self.tenants = TenantDirectory()
        self.tenant_rankers: dict[int, Any] = {}   # tenant id -> its own champion (OnnxRanker)
        self.tenant_versions: dict[str, str] = {}  # tenant name -> registry version serving it
        self._registry_lock = threading.Lock()
        self._action = threading.Lock()      # one registry action (gate, promotion, rollback) at a time
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

    def _collector(self) -> Any:
        return getattr(self._prediction(), "collector", None)

    def _window(self) -> dict[str, np.ndarray] | None:
        collector = self._collector()
        return collector.recent(self.config.drift_window_events) if collector is not None else None

    def _drift_source(self) -> tuple[np.ndarray, dict[str, int]]:
        """The current window: the collector's last drift-window-events events, replayed through
        the serving candidate generator and feature function, exactly as ``models.retrain``
        computes a model's reference (one pipeline on both sides, so no skew shows as drift)."""
        events = self._window()
        if events is None or len(events["key_hash"]) == 0:
            return np.zeros((0, 9), dtype=np.float32), {}
        if self.drift.capturing and self._collector().written - self.change_mark[0] < self.config.drift_window_events:
            # a reference is one full window of this model's traffic: feature scales (counts,
            # totals) grow with the window's length, so a shorter one would not compare
            return np.zeros((0, 9), dtype=np.float32), {}
        counts = outcome_counts(events)
        return features_from_events(events), {"hits": counts["hits"], "lookups": counts["lookups"]}

    def _background(self, name: str, work: Callable[..., Any], *args: Any) -> None:
        """Registry work (MLflow, downloads, replays) off the event loop, one at a time."""
        def run() -> None:
            with self._action:
                try:
                    work(*args)
                except Exception as exc:
                    log.exception("%s failed", name)
                    self._note(f"{name}-failed", error=str(exc))
        threading.Thread(target=run, name=f"predis-{name}", daemon=True).start()

    def get_registry(self) -> Any:
        with self._registry_lock:
            if self.registry is None:
                from .registry import ModelRegistry

                self.registry = ModelRegistry(os.path.join(self.config.dir, "mlflow"),
                                              self.config.mlflow_tracking_uri)
            return self.registry

    def _warm_registry(self) -> None:
        """Import MLflow and open (or create) its store while a training job runs: both take
        seconds, and the challenger should not wait for them when it is ready."""
        if self.registry is None:
            threading.Thread(target=self.get_registry, name="predis-registry-warmup", daemon=True).start()

    def tenant_id(self, user: str | None, key: bytes) -> int:
        """The collector's tenant id of an access (``tenant-mode``: ACL user or key prefix)."""
        return self.tenants.id_of(tenant_name(self.config.tenant_mode, user, key))

    def ranker_for_tenant(self, tenant: int) -> Any:
        """The tenant's own champion, or None: the global model serves it."""
        return self.tenant_rankers.get(tenant)

    # -- what serves, and its reference -------------------------------------------------------
    def _sync_serving_model(self) -> None:
        ranker = getattr(self._prediction(), "ranker", None)
        if ranker is None:
            return
        active = ranker.active
        if active.version == self.serving_version:
            return
        previous_version, previous_path = self.serving_version, self.serving_path
        self.serving_version, self.serving_path = active.version, active.path
        by_loop, self.changed_by_loop = self.changed_by_loop, False
        reference_path = os.path.join(active.path, "reference.npz") if active.path else ""
        reference = None
        if reference_path and os.path.isfile(reference_path):
            try:
                reference = ReferenceDistribution.load(reference_path)
            except Exception:  # a damaged file: capture instead
                log.exception("unreadable drift reference %s", reference_path)
        if reference is not None:
            in_registry = os.sep + "model-cache" + os.sep in active.path
            self.drift.set_reference(reference, active.version, "registry" if in_registry else "model-dir")
        else:
            self.drift.capture(active.version)
        baseline = self._figures_since_change()
        self._mark_change()
        self._note("serving", version=active.version, reference=self.drift.reference_source)
        if not by_loop and previous_version is not None and \
                baseline.lookups >= self.config.model_watch_min_lookups:
            # loaded by hand or from models-dir: watched like a promotion, undone if worse
            self.watch = self._new_watch(active.version, previous_version, baseline)
            self.watch.restore_path = previous_path

    def _mark_change(self) -> None:
        services = self._prediction()
        collector = getattr(services, "collector", None)
        prefetcher = getattr(services, "prefetcher", None)
        self.change_mark = (collector.written if collector is not None else 0,
                            prefetcher.stored if prefetcher is not None else 0,
                            prefetcher.used if prefetcher is not None else 0)

    def _figures_since_change(self) -> Figures:
        """The serving model's live figures since it started serving (at most a drift window)."""
        services = self._prediction()
        collector = getattr(services, "collector", None)
        prefetcher = getattr(services, "prefetcher", None)
        written, stored, used = self.change_mark
        figures = Figures()
        if collector is not None:
            count = min(collector.written - written, self.config.drift_window_events)
            if count > 0:
                counts = outcome_counts(collector.recent(count))
                figures.lookups, figures.hits = counts["lookups"], counts["hits"]
        if prefetcher is not None:
            figures.prefetched, figures.prefetch_used = prefetcher.stored - stored, prefetcher.used - used
        return figures

    def _new_watch(self, version: str, previous: str, baseline: Figures) -> PromotionWatch:
        watch = PromotionWatch(version, previous, baseline, self.config.model_rollback_margin,
                               min_lookups=self.config.model_watch_min_lookups)
        watch.restore_path = None  # type: ignore[attr-defined]  # set: undo by reloading this path
        return watch

    # -- triggers -----------------------------------------------------------------------------
    def _on_drift(self, report: Any, previous: Any) -> None:
        if report.level == "alarm" and (previous is None or previous.level != "alarm"):
            if self.abtest is not None or self.retrain_due_at is not None or \
                    (self.job is not None and self.job.poll() == "running"):
                self._note("retrain-skipped", reason="drift-alarm", why="a challenger is already in the works")
                return
            # learn the new traffic once there are two full windows of it: retraining at the first
            # alarming check would fit mostly the old regime (the held-out tail is the new one)
            collector = self._collector()
            wait = RETRAIN_WAIT_WINDOWS * self.config.drift_window_events
            self.retrain_due_at = (collector.written if collector is not None else 0) + wait
            self._note("retrain-scheduled", reason="drift-alarm", after_events=wait)

    def _job_dir(self, label: str) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"
        return os.path.join(self.config.dir, "mlflow", "trained", f"{stamp}-{label}")

    def retrain(self, reason: str) -> str:
        """Start a training child process; returns its output directory (or raises ValueError)."""
        from .retrain import RetrainJob

        if self.job is not None and self.job.poll() == "running":
            raise ValueError("a retraining job is already running")
        segments = self.config.collector_export_dir
        collector = self._collector()
        if collector is not None:
            collector.export_once()  # include what was just recorded
        if not segments or not os.path.isdir(segments):
            raise ValueError("no collector segments to train from (set collector-export-dir)")
        out = self._job_dir("global")
        self.job = RetrainJob(segments, out, reason, reference_events=self.config.drift_window_events,
                              half_life_s=self.config.retrain_half_life,
                              held_out_events=self.config.drift_window_events // 2)
        self._warm_registry()
        self._note("retrain-started", reason=reason, out=out)
        self._audit("model-retrain", reason=reason)
        return out

    def start_tenant_jobs(self) -> list[str]:
        """Fine-tune a model for every tenant with tenant-min-events collected events."""
        from .registry import CHAMPION
        from .retrain import RetrainJob

        collector = self._collector()
        segments = self.config.collector_export_dir
        if collector is None or not segments or not os.path.isdir(segments):
            return []
        base = ""
        registry = self.get_registry()
        if registry.alias_version(CHAMPION) is not None:
            base = registry.fetch(CHAMPION)  # model.pkl there when the loop trained it
        started = []
        for tenant in tenants_ready(collector.recent(), self.config.tenant_min_events):
            name = self.tenants.name_of(tenant) or f"db{tenant}"
            if any(j.tenant == tenant and j.poll() == "running" for j in self.tenant_jobs):
                continue
            job = RetrainJob(segments, self._job_dir(f"tenant{tenant}"), "tenant", tenant=tenant,
                             base_model=base, reference_events=self.config.drift_window_events,
                             half_life_s=self.config.retrain_half_life,
                             held_out_events=self.config.drift_window_events // 2,
                             tenant_name=name)
            self.tenant_jobs.append(job)
            started.append(name)
            self._note("tenant-retrain-started", tenant=name, out=job.out_dir)
        return started

    # -- the cron step ------------------------------------------------------------------------
    def poll(self) -> None:
        self._sync_serving_model()
        due = self.retrain_due_at
        collector = self._collector()
        if due is not None and collector is not None and collector.written >= due:
            self.retrain_due_at = None
            try:
                self.retrain("drift-alarm")
            except ValueError as exc:
                self._note("retrain-skipped", reason="drift-alarm", why=str(exc))
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
                self._background("gate", self._challenger_ready, job)
        for job in list(self.tenant_jobs):
            state = job.poll()
            if state != "running":
                self.tenant_jobs.remove(job)
                if state == "done":
                    self._background("tenant-gate", self._tenant_ready, job)
                else:
                    self._note("tenant-retrain-failed", tenant=job.tenant_name, error=job.error())
        if self.abtest is not None and self.abtest.decide() != "running":
            decision, test = self.abtest.decision, self.abtest
            self.abtest = None
            self._note(f"abtest-{decision}", **test.status())
            self._audit("model-abtest", decision=decision, version=test.challenger_version, reason=test.reason)
            if decision == "promote":
                baseline = Figures(**{k: test.arms["champion"].to_dict()[k]
                                      for k in ("lookups", "hits", "prefetched", "prefetch_used")})
                self._background("promote", self.promote, test.challenger_version, "abtest", baseline)
        watch = self.watch
        if watch is not None and watch.verdict != "watching":
            self.watch = None
            self._note(f"watch-{watch.verdict}", **watch.status())
            if watch.verdict == "rollback":
                self._background("rollback", self._auto_rollback, watch)

    def _gate_events(self, held_out_from_ts: int, tenant: int | None = None) -> dict[str, np.ndarray] | None:
        collector = self._collector()
        if collector is None:
            return None
        events = collector.recent()
        if tenant is not None:
            keep = events["tenant"] == tenant
            events = {k: v[keep] for k, v in events.items()}
        fresh = events["ts"] >= held_out_from_ts
        if held_out_from_ts and int(fresh.sum()) >= GATE_MIN_EVENTS:
            return {k: v[fresh] for k, v in events.items()}  # traffic the model never trained on
        tail = {k: v[-self.config.drift_window_events:] for k, v in events.items()}
        return tail if len(tail["key_hash"]) >= GATE_MIN_EVENTS else None

    def _challenger_ready(self, job: Any) -> None:
        from .abtest import ABTest
        from .ranker import OnnxRanker
        from .validation import validate

        registry = self.get_registry()
        info = registry.register(job.out_dir, tags={"reason": job.reason})
        self._note("registered", version=info.version, reason=job.reason)
        challenger = OnnxRanker(registry.fetch(info.version))
        champion = self._prediction().ranker.active
        events = self._gate_events(int(info.metrics.get("held_out_from_ts", 0)))
        if events is None:
            self._note("gate-skipped", version=info.version, reason="no recent traffic to replay")
            return
        gate = validate(champion, challenger, events, cache_size=10_000, threshold=self.config.prefetch_threshold)
        self.last_gate = {"version": info.version, **gate.to_dict()}
        self._note("gate-passed" if gate.passed else "gate-refused", version=info.version, reasons=gate.reasons)
        if gate.passed:
            test = ABTest(champion.version, info.version, self.config.ab_share, self.config.ab_min_samples,
                          salt=f"predis-ab-{info.version}".encode())
            test.challenger_ranker = challenger  # type: ignore[attr-defined]  # models.prefetch scores with it
            self.abtest = test
            self._note("abtest-started", champion=champion.version, challenger=info.version)
        self.start_tenant_jobs()  # tenants with enough data of their own fine-tune from the champion

    def _tenant_ready(self, job: Any) -> None:
        """Register a tenant's model under its own name; it serves the tenant if the gate passes
        on the tenant's own recent traffic against what serves the tenant now."""
        from .ranker import OnnxRanker
        from .validation import validate

        registry = self.get_registry()
        name = job.tenant_name
        info = registry.register(job.out_dir, tenant=name, tags={"reason": "tenant", "tenant_id": str(job.tenant)})
        challenger = OnnxRanker(registry.fetch(info.version, name))
        champion = self.tenant_rankers.get(job.tenant) or self._prediction().ranker.active
        events = self._gate_events(int(info.metrics.get("held_out_from_ts", 0)), job.tenant)
        if events is None:
            self._note("tenant-gate-skipped", tenant=name, version=info.version)
            return
        gate = validate(champion, challenger, events, cache_size=10_000, threshold=self.config.prefetch_threshold)
        self._note("tenant-gate-passed" if gate.passed else "tenant-gate-refused", tenant=name,
                   version=info.version, reasons=gate.reasons)
        if gate.passed:
            registry.promote(info.version, name)
            self.tenant_rankers[job.tenant] = challenger
            self.tenant_versions[name] = info.version
            self._audit("model-promote", by="tenant-gate", version=info.version, tenant=name)

    # -- promotion and rollback ---------------------------------------------------------------
    def promote(self, version: str, by: str = "command", baseline: Figures | None = None) -> str:
        registry = self.get_registry()
        path = registry.fetch(version)
        if baseline is None:
            baseline = self._figures_since_change()  # the outgoing model's live figures
        previous_version, previous_path = self.serving_version or "", self.serving_path
        self.changed_by_loop = True
        ok, message = self._load(path)
        if not ok:
            self.changed_by_loop = False
            raise ValueError(message)
        old = registry.promote(version)
        self.drift.set_reference(registry.reference(version), f"v{version}", "registry")
        self._audit("model-promote", by=by, version=version, previous=old)
        self._note("promoted", version=version, previous=old, by=by)
        watch = self._new_watch(version, old or previous_version, baseline)
        if old is None:
            watch.restore_path = previous_path  # type: ignore[attr-defined]  # not a registry version
        self.watch = watch
        return message

    def rollback(self, reason: str, by: str = "command") -> tuple[str, str]:
        from .rollback import roll_back

        self.changed_by_loop = True
        try:
            bad, restored = roll_back(self.get_registry(), self._load,
                                      lambda event, **f: self._audit(event, **f), reason, by=by)
        except Exception:
            self.changed_by_loop = False
            raise
        self.drift.set_reference(self.get_registry().reference(restored), f"v{restored}", "registry")
        self.watch = None
        self._note("rolled-back", bad=bad, restored=restored, by=by, reason=reason)
        return bad, restored

    def _auto_rollback(self, watch: PromotionWatch) -> None:
        restore_path = getattr(watch, "restore_path", None)
        if restore_path is None:
            self.rollback(watch.reason, by="auto")
            return
        # the model it replaced was never registered (models-dir, PREDIS.MODEL LOAD, heuristic)
        services = self._prediction()
        self.changed_by_loop = True
        if restore_path:
            ok, message = services.reloader.load(restore_path)
            if not ok:
                self.changed_by_loop = False
                raise ValueError(message)
        else:
            services.reloader.unload()
        from .registry import CHAMPION, registered_name

        registry = self.registry
        if registry is not None and registry.alias_version(CHAMPION) == watch.new_version:
            # the registry must not go on naming a model that no longer serves
            registry.clear_alias(CHAMPION)
            registry.client.set_model_version_tag(registered_name(), watch.new_version, "rolled_back", "true")
        self._audit("model-rollback", by="auto", from_version=watch.new_version,
                    to_version=watch.previous_version, reason=watch.reason, tenant="global")
        self._note("rolled-back", bad=watch.new_version, restored=watch.previous_version, by="auto",
                   reason=watch.reason)

    def _load(self, path: str) -> tuple[bool, str]:
        services = self._prediction()
        if services is None:
            return False, "prediction services are not running"
        services._ensure_ranker()
        return services.reloader.load(path)

    def status(self) -> dict[str, Any]:
        last = self.drift.last
        return {"serving": self.serving_version, "reference": self.drift.reference_source,
                "drift": last.to_dict() if last else {"level": "none"},
                "retraining": self.job.poll() if self.job is not None else "idle",
                "tenant_jobs": [j.tenant_name for j in self.tenant_jobs],
                "tenant_models": self.tenant_versions,
                "abtest": self.abtest.status() if self.abtest is not None else None,
                "watch": self.watch.status() if self.watch is not None else None,
                "last_gate": self.last_gate, "events": self.events[-20:]}

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
