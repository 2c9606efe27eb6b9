"""Prediction family: PREDIS.MODEL (LOAD / INFO / HISTORY) and PREDIS.PREFETCH STATS.

Predis's own commands (Redis has none of these). Also holds the INFO ``# Prediction``
section builder, ``prediction_info``.
"""
from __future__ import annotations

import json
import time

from ..errors import CommandError
from ..replies import OK, Map
from .mlops import MODEL_SUBCOMMANDS
from .table import command


def _services(client):
    services = getattr(client.server, "prediction", None)
    if services is None:
        raise CommandError("ERR prediction services are not running")
    return services


def _ensure_ranker(services) -> None:
    services._ensure_ranker()


def model_load(client, argv):
    """PREDIS.MODEL LOAD path: validate (schema, smoke, shadow score) and swap in atomically."""
    services = _services(client)
    _ensure_ranker(services)
    ok, message = services.reloader.load(argv[2].decode("utf-8", "surrogateescape"))
    if not ok:
        raise CommandError(f"ERR {message}")
    return OK


def model_info(client, argv):
    """PREDIS.MODEL INFO: the active model's version, path, provider and training metrics."""
    services = _services(client)
    ranker = services.ranker.active if services.ranker is not None else None
    if ranker is None:
        from models.ranker import HeuristicRanker

        ranker = HeuristicRanker()
    return Map([b"version", ranker.version.encode(), b"path", ranker.path.encode(),
                b"provider", ranker.provider.encode(),
                b"metrics", json.dumps(ranker.metrics, sort_keys=True).encode()])


def model_history(client, argv):
    """PREDIS.MODEL HISTORY: every load attempt, accepted or refused (JSON lines)."""
    services = _services(client)
    history = services.reloader.history if services.reloader is not None else []
    return [json.dumps(h, sort_keys=True).encode() for h in history]


def prefetch_stats(client, argv):
    """PREDIS.PREFETCH STATS: the prediction counters as a map."""
    return Map([item for k, v in prediction_info(client.server) for item in (k.encode(), str(v).encode())])


def prediction_info(server) -> list[tuple[str, object]]:
    """INFO # Prediction."""
    services = getattr(server, "prediction", None)
    if services is None:
        return []
    services.hook.flush()  # the collector takes events in batches: count the pending ones too
    p = services.prefetcher
    loader = services.loader
    ranker = services.ranker
    p50, p99 = ranker.latency_percentiles() if ranker is not None else (0.0, 0.0)
    stats = server.stats
    misses = stats.keyspace_misses
    used = p.used if p is not None else 0
    collector = services.collector
    return [
        ("prefetch_enabled", 1 if p is not None else 0),
        ("prefetches_issued", p.issued if p is not None else 0),
        ("prefetches_stored", p.stored if p is not None else 0),
        ("prefetches_used", used),
        ("prefetches_wasted", p.wasted if p is not None else 0),
        ("prefetches_late", p.late if p is not None else 0),
        ("prefetches_unread", len(p.unread) if p is not None else 0),
        ("prefetch_precision", f"{p.precision:.4f}" if p is not None else "0.0000"),
        ("prefetch_coverage", f"{used / (used + misses):.4f}" if used + misses else "0.0000"),
        ("prefetch_skipped_inflight", p.skipped_inflight if p is not None else 0),
        ("prefetch_skipped_memory", p.skipped_memory if p is not None else 0),
        ("prefetch_skipped_precision", p.skipped_precision if p is not None else 0),
        ("prefetch_threshold_effective", f"{p.control.effective_bar:.4f}" if p is not None else "0.0000"),
        ("prefetch_paused", int(p.control.paused(time.monotonic())) if p is not None else 0),
        ("prefetch_pauses", p.control.pauses if p is not None else 0),
        ("prefetch_events_seen", p.events_seen if p is not None else 0),
        ("prefetch_events_learned", p.events_learned if p is not None else 0),
        ("origin", server.config.origin or ""),
        ("origin_reads", loader.reads if loader is not None else 0),
        ("origin_demand_reads", loader.demand_reads if loader is not None else 0),
        ("origin_prefetch_reads", loader.prefetch_reads if loader is not None else 0),
        ("origin_promoted_reads", loader.promoted if loader is not None else 0),
        ("origin_shared_reads", loader.shared if loader is not None else 0),
        ("origin_errors", loader.errors if loader is not None else 0),
        ("origin_timeouts", loader.timeouts if loader is not None else 0),
        ("origin_rejected", loader.rejected if loader is not None else 0),
        ("origin_breaker", loader.breaker_state if loader is not None else "none"),
        ("origin_breaker_trips", loader.breaker_trips if loader is not None else 0),
        ("inference_batches", ranker.batches if ranker is not None else 0),
        ("inference_dropped_batches", ranker.dropped_batches if ranker is not None else 0),
        ("inference_p50_us", f"{p50:.1f}"),
        ("inference_p99_us", f"{p99:.1f}"),
        ("model_version", ranker.active.version if ranker is not None else "none"),
        ("collector_sampling", f"{server.config.collector_sampling:g}"),
        ("collector_events", collector.written if collector is not None else 0),
        ("collector_segments", collector.segments_written if collector is not None else 0),
    ]


_METRIC_PREFIXES = (("prefetch", "predis_prefetch_"), ("origin", "predis_origin_"),
                    ("inference", "predis_model_inference_"), ("collector", "predis_collector_"))


def prediction_metrics(server):
    """Prometheus families from the same figures as INFO # Prediction (one source for both)."""
    from prometheus_client.core import GaugeMetricFamily

    families = []
    for field, value in prediction_info(server):
        if field == "model_version":
            family = GaugeMetricFamily("predis_model_info", "Serving model version", labels=["version"])
            family.add_metric([str(value)], 1)
            families.append(family)
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        for prefix, metric_prefix in _METRIC_PREFIXES:
            if field.startswith(prefix):
                rest = field[len(prefix):].lstrip("_") or "enabled"
                name = metric_prefix + rest.removeprefix("es_").removeprefix("s_")
                families.append(GaugeMetricFamily(name, f"INFO prediction field {field}", value=number))
                break
    return families


try:  # Prometheus provider registry (predis_server/services/metrics.py)
    from ..services.metrics import register_provider

    register_provider("prediction", prediction_metrics)
except ImportError:  # pragma: no cover - prometheus-client missing
    pass

try:  # INFO's registry (predis_server/info.py)
    from ..info import register_section

    register_section("prediction", prediction_info, default=True)
except ImportError:  # pragma: no cover - info.py not present
    pass

_FLAGS = "admin noscript"
COMMANDS = [
    command("predis.model", None, -2, _FLAGS, acl="@admin @slow", group="predis", subcommands=[
        command("load", model_load, 3, _FLAGS, acl="@admin @slow"),
        command("info", model_info, 2, "loading stale", acl="@slow"),
        command("history", model_history, 2, "loading stale", acl="@slow"),
        # RETRAIN, PROMOTE, ROLLBACK: the MLOps loop's handlers (commands/mlops.py)
        *[command(sub.name, sub.handler, sub.arity, " ".join(sorted(sub.flags)),
                  acl=" ".join(sub.categories)) for sub in MODEL_SUBCOMMANDS],
    ]),
    command("predis.prefetch", None, -2, "", acl="@slow", group="predis", subcommands=[
        command("stats", prefetch_stats, 2, "loading stale", acl="@slow"),
    ]),
]
