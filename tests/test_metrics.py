"""The Prometheus endpoint (metrics-port) and the monitoring configs in conf/monitoring/."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from servers import ROOT, free_port, predis_process

MONITORING = os.path.join(ROOT, "conf", "monitoring")


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.fixture(scope="module")
def metrics_server():
    port = free_port()
    with predis_process("--metrics-port", str(port), "--maxmemory", "64mb") as server:
        server.metrics_port = port
        yield server


def test_metrics_match_info(metrics_server):
    client = redis.Redis(port=metrics_server.port)
    client.flushall()
    client.set("k1", "v")
    client.set("k2", "v", ex=100)
    client.get("k1")
    client.get("missing")
    client.select(3) if hasattr(client, "select") else None
    info = client.info("all")
    samples = scrape(metrics_server.metrics_port)
    assert samples[("redis_up", ())] == 1
    assert samples[("redis_keyspace_hits_total", ())] == info["keyspace_hits"]
    assert samples[("redis_keyspace_misses_total", ())] == info["keyspace_misses"]
    assert samples[("redis_db_keys", (("db", "db0"),))] == 2
    assert samples[("redis_db_keys_expiring", (("db", "db0"),))] == 1
    assert samples[("redis_memory_max_bytes", ())] == 64 * 1024 * 1024
    assert samples[("redis_commands_total", (("cmd", "get"),))] == 2
    assert samples[("redis_commands_duration_seconds_total", (("cmd", "get"),))] > 0
    # the scrape reads the same counter INFO reads: later commands show up in both
    processed = samples[("redis_commands_processed_total", ())]
    client.get("k1")
    assert scrape(metrics_server.metrics_port)[("redis_commands_processed_total", ())] > processed
    client.close()


def test_acl_denials_exported(metrics_server):
    conn = redis.Redis(port=metrics_server.port)
    before = scrape(metrics_server.metrics_port)[("predis_acl_access_denied_total", (("reason", "auth"),))]
    from resp import RawConnection

    raw = RawConnection(metrics_server.port)
    assert raw.call("AUTH", "ghost", "x").startswith(b"-WRONGPASS")
    raw.close()
    after = scrape(metrics_server.metrics_port)[("predis_acl_access_denied_total", (("reason", "auth"),))]
    assert after == before + 1
    conn.close()


def test_prediction_families_mirror_info(metrics_server):
    """predis_prefetch_* / predis_model_* come from the same figures as INFO # Prediction."""
    import redis

    samples = {name: value for (name, _labels), value in scrape(metrics_server.metrics_port).items()}
    info = redis.Redis(port=metrics_server.port).info("prediction")
    assert samples["predis_prefetch_enabled"] == float(info["prefetch_enabled"])
    assert samples["predis_origin_reads"] == float(info["origin_reads"])
    for field in ("origin_demand_reads", "origin_prefetch_reads", "origin_promoted_reads", "origin_shared_reads"):
        assert samples["predis_" + field] == float(info[field])
    assert samples["predis_model_info"] == 1.0


def test_provider_registry_adds_families():
    from prometheus_client.core import GaugeMetricFamily

    from predis_server.services import metrics

    class FakeServer:  # the collector only reads attributes; a provider sees the server
        pass

    metrics.register_provider("model", lambda server: [GaugeMetricFamily(
        "predis_model_version", "Serving model version", value=7)])
    try:
        families = list(metrics.PROVIDERS["model"](FakeServer()))
        assert families[0].samples[0].value == 7
    finally:
        metrics.unregister_provider("model")
    assert "model" not in metrics.PROVIDERS


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) missing")
def test_alert_rules_pass_promtool():
    result = subprocess.run(["promtool", "check", "rules", os.path.join(MONITORING, "predis-alerts.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout + result.stderr
    result = subprocess.run(["promtool", "check", "config", os.path.join(MONITORING, "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_cover_required_alarms():
    text = open(os.path.join(MONITORING, "predis-alerts.yml")).read()
    for needle in ("redis_memory_max_bytes", "redis_keyspace_hits_total", "predis_drift_",
                   "predis_model_", "up{"):
        assert needle in text


def test_agent_configs_parse():
    yaml = pytest.importorskip("yaml")
    for name in ("datadog-redisdb.yaml", "datadog-openmetrics.yaml"):
        with open(os.path.join(MONITORING, name)) as handle:
            instance = yaml.safe_load(handle)["instances"][0]
        assert instance.get("port") == 6379 or "9121/metrics" in instance.get("openmetrics_endpoint", "")
    with open(os.path.join(MONITORING, "newrelic-nri-prometheus.yml")) as handle:
        assert yaml.safe_load(handle)["targets"][0]["urls"] == ["http://127.0.0.1:9121/metrics"]


def test_grafana_dashboard_is_valid_json():
    with open(os.path.join(MONITORING, "grafana-predis.json")) as handle:
        dashboard = json.load(handle)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert any("redis_commands_processed_total" in e for e in exprs)
    assert any("predis_drift_score" in e for e in exprs)
    for name in ("datadog-redisdb.yaml", "datadog-openmetrics.yaml", "newrelic-nri-prometheus.yml"):
        text = open(os.path.join(MONITORING, name)).read()
        assert "instances:" in text or "targets:" in text
