"""Hot model reload: PREDIS.MODEL LOAD, models-dir drops, refusals, swaps under client load."""
from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time

import pytest
import redis

from servers import predis_process
from test_models import _segments, _stream

from models import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reload")
    seg = _segments(tmp, _stream()[:2000])
    out = tmp / "built"
    for version in ("v1", "v2"):
        assert train.main([seg, "--out", str(out), "--version", version]) == 0
    bad = out / "bad"
    shutil.copytree(out / "v1", bad)
    schema = json.loads((bad / "schema.json").read_text())
    schema["feature_version"] = 999
    (bad / "schema.json").write_text(json.dumps(schema))
    broken = out / "broken"
    shutil.copytree(out / "v1", broken)
    (broken / "model.onnx").write_bytes(b"not onnx")
    origin = tmp / "origin.db"
    conn = sqlite3.connect(origin)
    conn.execute("CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB)")
    conn.executemany("INSERT INTO kv VALUES (?, ?)", [(b"item:%d" % i, b"v") for i in range(5000)])
    conn.commit()
    conn.close()
    return out, origin


def test_swap_under_continuous_load_with_zero_failures(trained, tmp_path):
    out, origin = trained
    with predis_process("--origin", f"sqlite://{origin}", "--prefetch-enabled", "yes") as server:
        admin = redis.Redis(port=server.port)
        stop = threading.Event()
        failures: list[BaseException] = []
        done = [0]

        def client(offset):
            r = redis.Redis(port=server.port)
            i = 0
            while not stop.is_set():
                try:
                    assert r.get(b"item:%d" % ((offset + i) % 5000)) == b"v"
                    r.set(b"w:%d" % offset, i)
                    done[0] += 1
                except BaseException as exc:  # noqa: BLE001 - every failure counts
                    failures.append(exc)
                i += 1

        threads = [threading.Thread(target=client, args=(k * 1000,)) for k in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        for version in ("v1", "v2", "v1", "v2"):
            assert admin.execute_command("PREDIS.MODEL", "LOAD", str(out / version)) == b"OK"
            time.sleep(0.15)
        with pytest.raises(redis.ResponseError, match="refused: schema mismatch"):
            admin.execute_command("PREDIS.MODEL", "LOAD", str(out / "bad"))
        with pytest.raises(redis.ResponseError, match="refused: model.onnx does not load"):
            admin.execute_command("PREDIS.MODEL", "LOAD", str(out / "broken"))
        time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join()
        assert failures == [] and done[0] > 100
        reply = admin.execute_command("PREDIS.MODEL", "INFO")
        info = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2]))
        assert info[b"version"] == b"v2"  # the refused models left v2 active
        assert json.loads(info[b"metrics"])["holdout"]["auc"] is not None
        history = [json.loads(h) for h in admin.execute_command("PREDIS.MODEL", "HISTORY")]
        assert [h["accepted"] for h in history] == [True] * 4 + [False, False]
        assert history[1].get("shadow_samples", 0) > 0  # shadow-scored on live candidates
        assert admin.info("prediction")["model_version"] == "v2"
    assert "refused: schema mismatch" in server.log


def test_models_dir_drop_is_picked_up(trained, tmp_path):
    out, origin = trained
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    with predis_process("--origin", f"sqlite://{origin}", "--prefetch-enabled", "yes",
                        "--models-dir", str(models_dir)) as server:
        r = redis.Redis(port=server.port)
        assert r.info("prediction")["model_version"] == "builtin-heuristic"
        shutil.copytree(out / "v1", models_dir / "v1")
        deadline = time.time() + 5
        while time.time() < deadline and r.info("prediction")["model_version"] != "v1":
            time.sleep(0.1)
        assert r.info("prediction")["model_version"] == "v1"
        shutil.copytree(out / "bad", models_dir / "v9-bad")  # newer but invalid: refused, v1 stays
        time.sleep(1.5)
        assert r.info("prediction")["model_version"] == "v1"
