"""Retraining: from collector segments to a registered challenger, in a separate process.

Triggers: a drift alarm (once one more full drift window of the new traffic is recorded),
``retrain-schedule`` seconds, or ``PREDIS.MLOPS RETRAIN``. The server starts ``python -m
models.retrain`` as a child process (``RetrainJob``, nice 10) so training never holds the
serving process's GIL; the job's result is a model directory, picked up by the MLOps loop,
registered in MLflow as ``challenger`` and sent to the validation gate.

Training data: the collector's NPZ segments, labelled exactly as ``predis-train`` labels
them (``models.train.build_dataset``: the serving candidate generator and feature function,
a candidate is positive when read within ``horizon`` accesses). The model is
``predis-train``'s too (gradient-boosted trees, same settings); ``predis-train`` itself
cannot be called as is, because it takes neither sample weights nor a tenant filter. Recent
data counts more: each row is weighted ``0.5 ** (age / half_life)``; older rows are kept,
only weighted down. The most recent events (``held_out_events``, the loop passes half a drift
window; else the ``held_out`` share) are not trained on: the validation gate replays traffic
from ``held_out_from_ts`` (in metrics.json) on.

Written beside the model: ``reference.npz`` (features of the last ``reference_events``
training events: the drift reference), ``model.pkl`` (the fitted estimator, what tenant
models are fine-tuned from) and ``metrics.json`` (with ``row_tenants``: the tenant ids of
every event the rows came from).

``--tenant N`` keeps only that tenant's events (``tenant_events``: the one place a tenant's
training data is chosen); ``--base-model DIR`` fine-tunes: the base model's trees are kept
and more are boosted on this data (``models.tenants``).
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

from .collector import load_segments
from .drift import ReferenceDistribution, features_from_events, outcome_counts
from .features import schema


def training_rows(events: dict[str, np.ndarray], horizon: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, event timestamps) from collector events, oldest first.

    The labelling is ``predis-train``'s (``models.train.build_dataset``): one definition of
    "read within the horizon" for both trainers; only the weighting and the model differ.
    """
    from .train import build_dataset

    n = len(events["ts"])
    features, labels, where = build_dataset(events, horizon, max_triggers=max(1, n))
    return features, labels, events["ts"][where] if len(where) else np.zeros(0, np.int64)


def tenant_events(events: dict[str, np.ndarray], tenant: int | None) -> dict[str, np.ndarray]:
    """Only ``tenant``'s events (all when None): the one place a tenant's training data is chosen."""
    if tenant is None:
        return events
    keep = events["tenant"] == tenant
    return {k: v[keep] for k, v in events.items()}


def recency_weights(times: np.ndarray, half_life_s: float) -> np.ndarray:
    if len(times) == 0 or half_life_s <= 0:
        return np.ones(len(times))
    age_s = (times.max() - times) / 1e6
    return 0.5 ** (age_s / half_life_s)


FINE_TUNE_TREES = 20


def fit_ranker(x: np.ndarray, y: np.ndarray, weights: np.ndarray, base_model: str = "") -> Any:
    """``predis-train``'s model (gradient-boosted trees, same settings), fitted with recency
    weights; with ``base_model`` (a directory holding ``model.pkl``) the base model's trees are
    kept and ``FINE_TUNE_TREES`` more are boosted on this data only (warm start): fine-tuning."""
    import joblib
    from sklearn.ensemble import GradientBoostingClassifier

    base_path = os.path.join(base_model, "model.pkl") if base_model else ""
    if base_path and os.path.isfile(base_path):
        model = joblib.load(base_path)
        model.set_params(warm_start=True, n_estimators=model.n_estimators + FINE_TUNE_TREES)
    else:
        model = GradientBoostingClassifier(n_estimators=40, max_depth=3, learning_rate=0.2, random_state=0)
    return model.fit(x, y, sample_weight=weights)


def train(segments: list[str], out_dir: str, tenant: int | None = None, half_life_s: float = 3600.0,
          held_out: float = 0.2, horizon: int = 16, base_model: str = "",
          reference_events: int = 20_000, held_out_events: int = 0) -> dict[str, Any]:
    """Train a ranker from segments into ``out_dir`` (model.onnx, schema.json, metrics.json, reference.npz).

    The reference is computed from the last ``reference_events`` training events (the drift
    window's size): recency weighting makes those the traffic the model fits best, and a
    window of the same size is what the drift monitor will compare with it.
    """
    import joblib
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    events = tenant_events(load_segments(segments), tenant)
    n = len(events["ts"])
    # the most recent events are the gate's: a share of them, or a fixed count (the loop
    # holds out half a drift window, so a short new regime is not all held out)
    cut = n - min(held_out_events, n // 2) if held_out_events else int(n * (1 - held_out))
    train_events = {k: v[:cut] for k, v in events.items()}
    x, y, times = training_rows(train_events, horizon)
    if len(x) < 100 or len(set(y.tolist())) < 2:
        raise ValueError(f"not enough training data ({len(x)} rows, {n} events)")
    weights = recency_weights(times, half_life_s)
    model = fit_ranker(x, y, weights, base_model)
    onx = to_onnx(model, initial_types=[("features", FloatTensorType([None, x.shape[1]]))],
                  options={id(model): {"zipmap": False}}, target_opset=17)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "model.onnx"), "wb") as handle:
        handle.write(onx.SerializeToString())
    joblib.dump(model, os.path.join(out_dir, "model.pkl"))  # what a tenant's model is fine-tuned from
    metrics = {"rows": len(x), "positives": float(y.mean()), "events": int(n),
               "train_accuracy": float(model.score(x, y, sample_weight=weights)), "trained_at": time.time(),
               "held_out_from_ts": int(events["ts"][cut]) if cut < n else 0,
               # isolation evidence: the tenant ids of every event the rows came from
               "row_tenants": sorted({int(t) for t in train_events["tenant"].tolist()}),
               "base_model": base_model}
    with open(os.path.join(out_dir, "schema.json"), "w", encoding="utf-8") as handle:
        json.dump({**schema(), "version": os.path.basename(out_dir.rstrip("/"))}, handle)
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as handle:
        json.dump(metrics, handle)
    tail = {k: v[-reference_events:] for k, v in train_events.items()}
    reference = ReferenceDistribution.from_features(features_from_events(tail), outcome_counts(tail))
    reference.save(os.path.join(out_dir, "reference.npz"))
    return metrics


class RetrainJob:
    """One training run in a child process; ``poll()`` says when it is done and how it went."""

    def __init__(self, segments_dir: str, out_dir: str, reason: str, tenant: int | None = None,
                 base_model: str = "", half_life_s: float = 3600.0, reference_events: int = 20_000,
                 tenant_name: str = "", held_out_events: int = 0) -> None:
        self.out_dir = out_dir
        self.reason = reason
        self.tenant = tenant
        self.tenant_name = tenant_name
        self.started = time.time()
        self.log_path = out_dir.rstrip("/") + ".log"
        os.makedirs(os.path.dirname(out_dir) or ".", exist_ok=True)
        cmd = [sys.executable, "-m", "models.retrain", "--out", out_dir, "--half-life", str(half_life_s),
               "--reference-events", str(reference_events), "--held-out-events", str(held_out_events),
               segments_dir]
        if tenant is not None:
            cmd += ["--tenant", str(tenant)]
        if base_model:
            cmd += ["--base-model", base_model]
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, cwd=root)

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
    ap.add_argument("--reference-events", type=int, default=20_000)
    ap.add_argument("--held-out-events", type=int, default=0, help="hold out this many (0: 20%%)")
    args = ap.parse_args(argv)
    # nice 10: training yields the CPU to the serving process (set here, not with preexec_fn,
    # which is unsafe in the server's multi-threaded process)
    os.nice(10)
    try:
        metrics = train(args.segments, args.out, args.tenant, args.half_life, base_model=args.base_model,
                        reference_events=args.reference_events, held_out_events=args.held_out_events)
    except ValueError as exc:
        print(f"retrain: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
