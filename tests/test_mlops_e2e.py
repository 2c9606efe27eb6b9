"""The MLOps loop end to end: a real server, real MLflow (SQLite), real ONNX files.

The story of issue 7 in one run: a model dropped into ``models-dir`` serves (its drift
reference is captured from its first window: no registry promotion needed); the workload
shifts from a hot set to sequential scans, which raises a drift alarm; the alarm retrains
a challenger in a child process; it is registered in MLflow, passes the validation gate,
wins the live A/B test and is promoted; a bad model pushed by hand is then rolled back
automatically by the promotion watch. A client thread reads throughout and checks every
reply: zero failed requests.

Windows, intervals and sample sizes are shrunk through the ordinary config options. The
full story trains a model in a child process and starts MLflow: about 35 s on a 2-core
machine at moderate load (70 s at load 14). The fast variant (about 10 s) covers what needs
no training: a reference captured for the built-in heuristic, the drift alarm on the
workload shift, and the automatic rollback of a bad model loaded by hand, with zero failed
requests.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import redis
from onnx_models import write_model_dir
from servers import ROOT, predis_process

pytest.importorskip("mlflow")
pytest.importorskip("skl2onnx")

SCAN_KEYS = 60_000
HOT_KEYS = 64


@pytest.fixture(scope="module")
def origin_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("mlops-origin") / "origin.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB)")
    conn.executemany("INSERT INTO kv VALUES (?, ?)", ((b"item:%d" % i, b"v%d" % i) for i in range(SCAN_KEYS)))
    conn.executemany("INSERT INTO kv VALUES (?, ?)", ((b"hot:%d" % i, b"h%d" % i) for i in range(HOT_KEYS)))
    conn.commit()
    conn.close()
    return path


@pytest.fixture(scope="module")
def hot_model(tmp_path_factory):
    """A model trained by ``predis-train`` on yesterday's traffic (random reads of a hot set)
    with a horizon of one access: nothing there is read next often enough, so it prefetches
    nothing -- harmless on a hot set served from memory, costly on scans."""
    from models.collector import COLUMNS
    from models.keycodes import key_codes

    base = tmp_path_factory.mktemp("hot-model")
    rng = np.random.default_rng(3)
    n = 2000
    key_hash, prefix_hash, suffix = key_codes([b"hot:%d" % i for i in rng.integers(HOT_KEYS, size=n)])
    columns = {name: np.zeros(n, dtype=dtype) for name, dtype in COLUMNS.items()}
    columns.update(key_hash=key_hash, prefix_hash=prefix_hash, suffix=suffix,
                   ts=np.arange(1, n + 1, dtype=np.int64) * 1000)
    np.savez(base / "access-1000-1-000001.npz", **columns)
    subprocess.run([sys.executable, "-m", "models.train", str(base / "access-1000-1-000001.npz"),
                    "--out", str(base / "models"), "--version", "0001-hot", "--horizon", "1"], check=True, cwd=ROOT,
                   capture_output=True)
    return str(base / "models" / "0001-hot")


class Client(threading.Thread):
    """Reads continuously and checks every reply; ``phase`` switches the workload."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.phase = "hot"
        self.stopping = threading.Event()
        self.requests = 0
        self.failures: list[str] = []
        self.next_item = 0

    def run(self) -> None:
        rng = np.random.default_rng(7)
        r = redis.Redis(port=self.port, socket_timeout=5)
        while not self.stopping.is_set():
            if self.phase == "hot":
                i = int(rng.integers(HOT_KEYS))
                key, expected = b"hot:%d" % i, b"h%d" % i
            else:
                i = self.next_item
                self.next_item += 1
                key, expected = b"item:%d" % i, b"v%d" % i
            try:
                value = r.get(key)
                if value != expected:
                    self.failures.append(f"GET {key!r} -> {value!r}")
            except Exception as exc:  # noqa: BLE001 - a failed request is what this test forbids
                self.failures.append(f"GET {key!r} raised {exc!r}")
            self.requests += 1
            time.sleep(0.001)
        r.close()


@contextlib.contextmanager
def client_load(port: int):
    """A Client thread sending traffic for the duration of the block, stopped after it."""
    client = Client(port)
    client.start()
    try:
        yield client
    finally:
        client.stopping.set()
        client.join(10)


def status(r) -> dict:
    return json.loads(r.execute_command("PREDIS.MLOPS", "STATUS"))


def wait_for_event(r, name: str, timeout: float, since: int = 0) -> dict:
    """Poll PREDIS.MLOPS STATUS until the loop has noted ``name``; returns that event."""
    deadline = time.time() + timeout
    last: dict = {}
    while time.time() < deadline:
        last = status(r)
        for event in last["events"]:
            if event["event"] == name and event["time"] >= since:
                return event
        failed = [e for e in last["events"] if e["event"].endswith("-failed")
                  or e["event"] in ("gate-refused", "abtest-reject")]
        assert not failed, json.dumps(failed, default=str)
        time.sleep(0.1)
    last.get("drift", {}).pop("tests", None)
    raise AssertionError(f"no {name} within {timeout}s; last status: {json.dumps(last, default=str)[-4000:]}")


def mlflow_aliases(directory: str) -> dict[str, str]:
    """The registry's aliases read straight from MLflow's SQLite store (not through Predis)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{os.path.join(directory, 'mlflow', 'mlflow.db')}"
    model = MlflowClient(tracking_uri=uri, registry_uri=uri).get_registered_model("predis-ranker")
    return {alias: str(version) for alias, version in (model.aliases or {}).items()}


def wait_for_reference(r, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while status(r)["reference"] != "captured":
        assert time.time() < deadline, status(r)
        time.sleep(0.1)


FAST = ("--drift-check-interval", "0.3", "--drift-min-samples", "300", "--drift-window-events", "1000",
        "--model-watch-min-lookups", "300")


def test_heuristic_reference_drift_alarm_and_rollback_of_a_hand_loaded_model(origin_path, tmp_path):
    bad = write_model_dir(str(tmp_path / "bad"), seed=2)  # scores scan candidates ~0: never prefetches
    with predis_process("--dir", str(tmp_path), "--origin", f"sqlite://{origin_path}", "--prefetch-enabled",
                        "yes", "--collector-sampling", "1", *FAST) as server:
        r = redis.Redis(port=server.port)
        with client_load(server.port) as client:
            # the built-in heuristic serves: its reference is the first full window of traffic
            serving = wait_for_event(r, "serving", 20)
            assert serving["version"] == "builtin-heuristic" and serving["reference"] == "capturing"
            wait_for_reference(r)
            assert json.loads(r.execute_command("PREDIS.DRIFT", "STATUS"))["alarms"] == 0
            client.phase = "scan"
            shifted = time.time()
            scheduled = wait_for_event(r, "retrain-scheduled", 20, since=shifted)
            assert scheduled["reason"] == "drift-alarm"
            info = r.info("drift")
            assert info["drift_alarms"] >= 1 and info["drift_model_version"] == "builtin-heuristic"
            assert info["drift_reference"] == "captured"
            # no collector-export-dir: nothing to train from, said so rather than failing
            skipped = wait_for_event(r, "retrain-skipped", 20, since=shifted)
            assert "collector-export-dir" in skipped["why"]
            time.sleep(1.0)  # the heuristic prefetches the scan: a baseline for the watch
            loaded = time.time()
            r.execute_command("PREDIS.MODEL", "LOAD", bad)
            assert r.info("prediction")["model_version"] == "bad"
            rolled = wait_for_event(r, "rolled-back", 20, since=loaded)
            assert (rolled["bad"], rolled["restored"], rolled["by"]) == ("bad", "builtin-heuristic", "auto")
            assert r.info("prediction")["model_version"] == "builtin-heuristic"
        assert client.failures == [], client.failures[:5]
        assert client.requests > 1000


@pytest.mark.timeout(400)  # ~35 s on an idle 2-core machine; several times that under load
def test_drift_retrain_validate_abtest_promote_then_rollback(origin_path, hot_model, tmp_path):
    models_dir = tmp_path / "models"
    shutil.copytree(hot_model, models_dir / "0001-hot")
    started = time.time()
    with predis_process(
            "--dir", str(tmp_path), "--origin", f"sqlite://{origin_path}", "--prefetch-enabled", "yes",
            "--collector-sampling", "1", "--collector-export-dir", str(tmp_path / "segments"),
            "--models-dir", str(models_dir), "--drift-check-interval", "0.5",
            "--drift-min-samples", "300", "--drift-window-events", "1500",
            "--ab-share", "0.5", "--ab-min-samples", "150", "--model-watch-min-lookups", "300") as server:
        r = redis.Redis(port=server.port)
        with client_load(server.port) as client:
            # 1. a models-dir model serves; its drift reference is captured from live traffic
            serving = wait_for_event(r, "serving", 20)
            assert serving["version"] == "0001-hot" and serving["reference"] == "capturing"
            wait_for_reference(r)
            time.sleep(1.0)
            assert status(r)["drift"]["level"] in ("ok", "warn", "insufficient")
            assert json.loads(r.execute_command("PREDIS.DRIFT", "STATUS"))["alarms"] == 0

            # 2. the workload shifts: hot set -> sequential scans; drift alarm; retraining
            client.phase = "scan"
            shifted = time.time()
            retrain = wait_for_event(r, "retrain-started", 120, since=shifted)
            assert retrain["reason"] == "drift-alarm"
            drift = json.loads(r.execute_command("PREDIS.DRIFT", "STATUS"))
            assert drift["alarms"] >= 1 and drift["drifted"], drift
            assert r.info("drift")["drift_alarms"] >= 1

            # 3. the challenger is registered, passes the gate, wins the A/B test, is promoted
            registered = wait_for_event(r, "registered", 180, since=shifted)
            wait_for_event(r, "gate-passed", 180, since=shifted)
            wait_for_event(r, "abtest-started", 30, since=shifted)
            verdict = wait_for_event(r, "abtest-promote", 180, since=shifted)
            assert verdict["challenger"]["hit_ratio"] > verdict["champion"]["hit_ratio"], verdict
            promoted = wait_for_event(r, "promoted", 60, since=shifted)
            good = registered["version"]
            assert promoted["version"] == good and promoted["by"] == "abtest"
            assert r.info("prediction")["model_version"] == f"predis-ranker:v{good}"
            assert mlflow_aliases(str(tmp_path))["champion"] == good
            assert r.info("drift")["drift_reference"] == "registry"  # the new model's training window

            # 4. a bad model (blind to scans again) is pushed by hand: the watch rolls it back
            from models.registry import ModelRegistry

            registry = ModelRegistry(str(tmp_path / "mlflow"))
            bad = registry.register(hot_model, alias=None).version  # yesterday's model: blind to scans
            pushed = time.time()
            r.execute_command("PREDIS.MLOPS", "PROMOTE", bad)
            assert r.info("prediction")["model_version"] == f"predis-ranker:v{bad}"
            rolled = wait_for_event(r, "rolled-back", 60, since=pushed)
            assert (rolled["bad"], rolled["restored"], rolled["by"]) == (bad, good, "auto")
            assert "hit ratio" in rolled["reason"]
            assert r.info("prediction")["model_version"] == f"predis-ranker:v{good}"
            aliases = mlflow_aliases(str(tmp_path))
            assert aliases["champion"] == good
        assert client.failures == [], client.failures[:5]
        assert client.requests > 3000
        audit_free = r.info("prediction")["origin_errors"]
        assert audit_free == 0
    print(f"full MLOps story: {time.time() - started:.1f}s")
