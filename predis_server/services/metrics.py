"""The Prometheus endpoint: ``/metrics`` on its own HTTP listener (``metrics-port``).

One custom Collector reads ``server.stats``, the keyspace and each Command's counters at
scrape time, the same objects INFO reads, so the two can never disagree. Names follow
redis_exporter's (``redis_commands_total{cmd}``, ``redis_db_keys{db}``...) where they overlap,
so existing Redis dashboards work unchanged. Subsystems built elsewhere (prefetch, models,
drift) add their ``predis_*`` families with ``register_provider``; nothing is exported for a
subsystem that has not registered.

The HTTP server runs in prometheus-client's daemon thread; a scrape only reads plain ints
and copies dicts, so it never needs the event loop.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from ..server import Server

log = logging.getLogger("predis.metrics")

Provider = Callable[["Server"], Iterable[Metric]]
PROVIDERS: dict[str, Provider] = {}


def register_provider(name: str, provider: Provider) -> None:
    """Add metric families from another subsystem: ``provider(server)`` yields prometheus Metrics.

    Example (models/): ``register_provider("model", lambda s: [GaugeMetricFamily(
    "predis_model_version", "Serving model version", value=s.model.version)])``.
    """
    PROVIDERS[name] = provider


def unregister_provider(name: str) -> None:
    PROVIDERS.pop(name, None)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class ServerCollector:
    """Reads the live server at scrape time (prometheus_client's custom-collector protocol)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def describe(self) -> list[Metric]:
        return []  # families depend on the table and the providers: skip the registration probe

    def collect(self) -> Iterable[Metric]:
        server = self.server
        stats = server.stats
        yield _gauge("redis_up", "Whether the server is up", 1)
        yield _gauge("redis_uptime_in_seconds", "Seconds since start", int(time.time() - server.started))
        yield _gauge("redis_connected_clients", "Connected clients", len(server.connections))
        yield _gauge("redis_config_maxclients", "maxclients", server.config.maxclients)
        yield _counter("redis_connections_received_total", "Connections accepted",
                       stats.total_connections_received)
        yield _counter("redis_rejected_connections_total", "Connections refused at maxclients",
                       stats.rejected_connections)
        yield _counter("redis_commands_processed_total", "Commands processed",
                       stats.total_commands_processed)
        yield _counter("redis_keyspace_hits_total", "Successful key lookups", stats.keyspace_hits)
        yield _counter("redis_keyspace_misses_total", "Failed key lookups", stats.keyspace_misses)
        yield _counter("redis_expired_keys_total", "Keys expired", stats.expired_keys)
        yield _counter("redis_evicted_keys_total", "Keys evicted at maxmemory", stats.evicted_keys)
        yield _counter("redis_net_input_bytes_total", "Bytes read from clients", stats.total_net_input_bytes)
        yield _counter("redis_net_output_bytes_total", "Bytes written to clients",
                       stats.total_net_output_bytes)
        yield _counter("redis_pubsub_messages_total", "Pub/sub messages delivered",
                       getattr(stats, "pubsub_messages", 0))
        yield _gauge("redis_memory_used_bytes", "Memory used by data", _used_memory(server))
        yield _gauge("redis_memory_max_bytes", "maxmemory (0 = none)", server.config.maxmemory)
        yield from self._commands()
        yield from self._keyspace()
        yield from self._errors_and_security()
        for name, provider in list(PROVIDERS.items()):
            try:
                yield from provider(server)
            except Exception:  # one broken provider must not take the endpoint down
                log.exception("metrics provider %s failed", name)

    def _commands(self) -> Iterable[Metric]:
        calls = CounterMetricFamily("redis_commands", "Calls per command", labels=["cmd"])
        duration = CounterMetricFamily("redis_commands_duration_seconds",
                                       "Seconds spent per command", labels=["cmd"])
        rejected = CounterMetricFamily("redis_commands_rejected_calls", "Calls refused before running",
                                       labels=["cmd"])
        failed = CounterMetricFamily("redis_commands_failed_calls", "Calls that returned an error",
                                     labels=["cmd"])
        from ..commands import COMMANDS

        for cmd in list(COMMANDS.values()):
            for row in (cmd, *cmd.subcommands.values()):
                if row.calls or row.rejected_calls or row.failed_calls:
                    label = [row.full_name]
                    calls.add_metric(label, row.calls)
                    duration.add_metric(label, row.usec / 1e6)
                    rejected.add_metric(label, row.rejected_calls)
                    failed.add_metric(label, row.failed_calls)
        return [calls, duration, rejected, failed]

    def _keyspace(self) -> Iterable[Metric]:
        keys = GaugeMetricFamily("redis_db_keys", "Keys per database", labels=["db"])
        expiring = GaugeMetricFamily("redis_db_keys_expiring", "Keys with a TTL per database",
                                     labels=["db"])
        for db in self.server.keyspace.dbs:
            store = db.store
            count = len(store)
            if count:
                keys.add_metric([f"db{db.id}"], count)
                expiring.add_metric([f"db{db.id}"], getattr(store, "volatile_count", 0))
        return [keys, expiring]

    def _errors_and_security(self) -> Iterable[Metric]:
        stats = self.server.stats
        errors = CounterMetricFamily("redis_errors", "Error replies by prefix", labels=["err"])
        for prefix, count in list(stats.errorstats.items()):
            errors.add_metric([prefix], count)
        denied = CounterMetricFamily("predis_acl_access_denied", "Requests refused by ACLs",
                                     labels=["reason"])
        for reason in ("auth", "cmd", "key", "channel"):
            denied.add_metric([reason], getattr(stats, f"acl_access_denied_{reason}", 0))
        yield errors
        yield denied
        yield _counter("predis_tls_handshake_failures_total", "TLS handshakes that failed",
                       getattr(stats, "tls_handshake_failures", 0))
        audit = getattr(self.server, "audit_log", None)
        if audit is not None:
            yield _counter("predis_audit_entries_written_total", "Audit log entries written", audit.written)
            yield _counter("predis_audit_entries_dropped_total", "Audit entries lost to write errors",
                           audit.dropped)


def _used_memory(server: Server) -> int:
    try:
        from ..info import used_memory

        return int(used_memory(server))
    except Exception:
        return int(server.keyspace.used_memory())


class MetricsEndpoint:
    """prometheus-client's HTTP server on metrics-bind:metrics-port, with our own registry."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ServerCollector(server))  # type: ignore[arg-type]
        self.http: Any = None
        self.thread: Any = None
        self.port = 0

    def start(self) -> None:
        from prometheus_client import start_http_server

        config = self.server.config
        result = start_http_server(config.metrics_port, addr=config.metrics_bind, registry=self.registry)
        if isinstance(result, tuple):
            self.http, self.thread = result
            self.port = self.http.server_address[1]
        log.warning("metrics endpoint on http://%s:%s/metrics", config.metrics_bind, config.metrics_port)

    def stop(self) -> None:
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
            self.http = None
