"""Retraining: from collector segments to a registered challenger, in a separate process.

Triggers: a drift alarm, ``retrain-schedule`` seconds, or ``PREDIS.MODEL RETRAIN``. The
server starts ``python -m models.retrain`` as a child process (``RetrainJob``) so training
never holds the serving process's GIL; the job's result is a model directory, picked up by
the MLOps loop, registered in MLflow as ``challenger`` and sent to the validation gate.

Training data: the collector's NPZ segments, replayed through the serving candidate
generator and feature function (no training/serving skew). A candidate's label is whether
its key is read within the next ``horizon`` accesses. Recent data counts more: each row is
weighted ``0.5 ** (age / half_life)``; older rows are kept, only weighted down. The most
recent ``held_out`` share is not trained on: the validation gate replays it.

``--tenant N`` restricts the rows to one tenant's events, so a tenant's model is trained on
that tenant's data only (``models.tenants``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

from .candidates import CandidateGenerator
from .collector import load_segments
from .drift import ReferenceDistribution, features_from_events, outcome_counts
from .features import candidate_features, schema


def training_rows(events: dict[str, np.ndarray], horizon: int = 16, warmup: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, event timestamps) from collector events, oldest first."""
    keys = events["key_hash"].tolist()
    prefixes = events["prefix_hash"].tolist()
    suffixes = events["suffix"].tolist()
    ts = events["ts"]
    by_stride = {(p, s): k for k, p, s in zip(keys, prefixes, suffixes) if s >= 0}
    next_seen: dict[int, list[int]] = {}
    for i, k in enumerate(keys):
        next_seen.setdefault(k, []).append(i)
    gen = CandidateGenerator()
    raw: list[tuple] = []
    labels: list[int] = []
    times: list[int] = []
    out: list[tuple] = []
    start = int(len(keys) * warmup)
    for i, (k, p, s) in enumerate(zip(keys, prefixes, suffixes)):
        gen.observe(k, p, s)
        if i < start:
            continue
        out.clear()
        gen.candidates(k, p, s, out)
        for cand, stride_suffix, cand_prefix, columns in out:
            target = cand if cand >= 0 else by_stride.get((cand_prefix, stride_suffix), -1)
            positions = next_seen.get(target, ())
            j = int(np.searchsorted(positions, i, side="right")) if positions else 0
            labels.append(int(j < len(positions) and positions[j] - i <= horizon))
            raw.append(columns)
            times.append(int(ts[i]))
    if not raw:
        return np.zeros((0, 9), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return candidate_features(np.asarray(raw, dtype=np.float64)), np.asarray(labels), np.asarray(times)


def recency_weights(times: np.ndarray, half_life_s: float) -> np.ndarray:
    if len(times) == 0 or half_life_s <= 0:
        return np.ones(len(times))
    age_s = (times.max() - times) / 1e6
    return 0.5 ** (age_s / half_life_s)


def train(segments: list[str], out_dir: str, tenant: int | None = None, half_life_s: float = 3600.0,
          held_out: float = 0.2, horizon: int = 16, base_model: str = "") -> dict[str, Any]:
    """Train a ranker from segments into ``out_dir`` (model.onnx, schema.json, metrics.json, reference.npz)."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import SGDClassifier

    events = load_segments(segments)
    if tenant is not None:
        keep = events["tenant"] == tenant
        events = {k: v[keep] for k, v in events.items()}
    n = len(events["ts"])
    cut = int(n * (1 - held_out))
    train_events = {k: v[:cut] for k, v in events.items()}
    x, y, times = training_rows(train_events, horizon)
    if len(x) < 100 or len(set(y.tolist())) < 2:
        raise ValueError(f"not enough training data ({len(x)} rows, {n} events)")
    weights = recency_weights(times, half_life_s)
    model = SGDClassifier(loss="log_loss", max_iter=20, tol=None, random_state=0)
    if base_model and os.path.isfile(os.path.join(base_model, "coef.npz")):
        # fine-tuning: start from the global champion's weights (per-tenant models)
        with np.load(os.path.join(base_model, "coef.npz")) as base:
            model.fit(x, y, sample_weight=weights, coef_init=base["coef"], intercept_init=base["intercept"])
    else:
        model.fit(x, y, sample_weight=weights)
    onx = to_onnx(model, x[:1].astype(np.float32), options={id(model): {"zipmap": False}}, target_opset=17)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "model.onnx"), "wb") as handle:
        handle.write(onx.SerializeToString())
    np.savez(os.path.join(out_dir, "coef.npz"), coef=model.coef_, intercept=model.intercept_)
    metrics = {"rows": int(len(x)), "positives": float(y.mean()), "events": int(n),
               "train_accuracy": float(model.score(x, y, sample_weight=weights)), "trained_at": time.time()}
    with open(os.path.join(out_dir, "schema.json"), "w", encoding="utf-8") as handle:
        json.dump({**schema(), "version": os.path.basename(out_dir.rstrip("/"))}, handle)
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as handle:
        json.dump(metrics, handle)
    reference = ReferenceDistribution.from_features(features_from_events(train_events),
                                                    outcome_counts(train_events))
    reference.save(os.path.join(out_dir, "reference.npz"))
    return metrics


class RetrainJob:
    """One training run in a child process; ``poll()`` says when it is done and how it went."""

    def __init__(self, segments_dir: str, out_dir: str, reason: str, tenant: int | None = None,
                 base_model: str = "", half_life_s: float = 3600.0) -> None:
        self.out_dir = out_dir
        self.reason = reason
        self.tenant = tenant
        self.started = time.time()
        self.log_path = out_dir.rstrip("/") + ".log"
        os.makedirs(os.path.dirname(out_dir) or ".", exist_ok=True)
        cmd = [sys.executable, "-m", "models.retrain", "--out", out_dir, "--half-life", str(half_life_s),
               segments_dir]
        if tenant is not None:
            cmd += ["--tenant", str(tenant)]
        if base_model:
            cmd += ["--base-model", base_model]
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(self.log_path, "wb") as log_file:
            # nice 10: training yields the CPU to the serving process
            self.process = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, cwd=root,
                                            preexec_fn=lambda: os.nice(10))

    def poll(self) -> str:
        """'running', 'done' or 'failed'."""
        code = self.process.poll()
        if code is None:
            return "running"
        return "done" if code == 0 and os.path.isfile(os.path.join(self.out_dir, "model.onnx")) else "failed"

    def error(self) -> str:
        try:
            with open(self.log_path, errors="replace") as handle:
                return handle.read()[-500:]
        except OSError:
            return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train a Predis ranker from collector segments.")
    ap.add_argument("segments", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tenant", type=int, default=None)
    ap.add_argument("--half-life", type=float, default=3600.0, help="seconds for a row's weight to halve")
    ap.add_argument("--base-model", default="")
    args = ap.parse_args(argv)
    metrics = train(args.segments, args.out, args.tenant, args.half_life, base_model=args.base_model)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
