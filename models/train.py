"""``predis-train``: train the candidate ranker from collector segments, export ONNX.

    predis-train SEGMENTS... --out MODELS_DIR [--horizon 64] [--train-fraction 0.8]

Replays the recorded access stream through the same ``CandidateGenerator`` the server
runs (past only), labels each candidate 1 when it is read within the next ``horizon``
accesses, computes features with ``models.features.candidate_features`` (the serving
function), trains a gradient-boosted classifier on the first ``train-fraction`` of the
stream and evaluates on the rest (no look-ahead), then writes
``MODELS_DIR/<version>/{model.onnx, schema.json, metrics.json}``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from .candidates import CandidateGenerator, raw_matrix, stride_id
from .collector import load_segments
from .features import FEATURE_NAMES, candidate_features, schema


def build_dataset(events: dict[str, np.ndarray], horizon: int = 64, max_triggers: int = 200_000
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, trigger position) for candidates generated along the stream."""
    kh = events["key_hash"].tolist()
    ph = events["prefix_hash"].tolist()
    sx = events["suffix"].tolist()
    n = min(len(kh), max_triggers)
    # next occurrence lookups: positions per key id and per (prefix, suffix) id
    occurrences: dict[int, list[int]] = {}
    for pos, (k, p, s) in enumerate(zip(kh, ph, sx)):
        occurrences.setdefault(k, []).append(pos)
        if s >= 0:
            occurrences.setdefault(stride_id(p, s) ^ 0x5151, []).append(pos)
    gen = CandidateGenerator()
    raw: list[tuple] = []
    labels: list[int] = []
    where: list[int] = []
    rows: list[tuple[int, int, int, tuple]] = []
    import bisect

    for pos in range(n):
        gen.observe(kh[pos], ph[pos], sx[pos])
        rows.clear()
        gen.candidates(kh[pos], ph[pos], sx[pos], rows)
        for cand, stride_suffix, pid, columns in rows:
            ident = cand if cand >= 0 else stride_id(pid, stride_suffix) ^ 0x5151
            positions = occurrences.get(ident, ())
            i = bisect.bisect_right(positions, pos)
            label = 1 if i < len(positions) and positions[i] <= pos + horizon else 0
            raw.append(columns)
            labels.append(label)
            where.append(pos)
    features = candidate_features(raw_matrix(raw)) if raw else np.zeros((0, len(FEATURE_NAMES)), np.float32)
    return features, np.asarray(labels, dtype=np.int64), np.asarray(where, dtype=np.int64)


def train(features: np.ndarray, labels: np.ndarray, seed: int = 0):
    from sklearn.ensemble import GradientBoostingClassifier

    if len(np.unique(labels)) < 2:
        raise ValueError("training data has a single class: record more traffic (collector-sampling 1)")
    model = GradientBoostingClassifier(n_estimators=40, max_depth=3, learning_rate=0.2, random_state=seed)
    model.fit(features, labels)
    return model


def export(model, out_dir: str, metrics: dict, version: str | None = None) -> str:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    version = version or time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(out_dir, version)
    tmp = os.path.join(out_dir, f".{version}.tmp")
    os.makedirs(tmp, exist_ok=True)
    onx = to_onnx(model, initial_types=[("features", FloatTensorType([None, len(FEATURE_NAMES)]))],
                  options={id(model): {"zipmap": False}}, target_opset=17)
    with open(os.path.join(tmp, "model.onnx"), "wb") as handle:
        handle.write(onx.SerializeToString())
    with open(os.path.join(tmp, "schema.json"), "w", encoding="utf-8") as handle:
        json.dump({**schema(), "version": version}, handle, indent=2)
    with open(os.path.join(tmp, "metrics.json"), "w", encoding="utf-8") as handle:
        json.dump(metrics, handle, indent=2)
    os.replace(tmp, path)  # the directory appears complete or not at all (models-dir watchers)
    return path


def evaluate(model, features: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict:
    if len(labels) == 0:
        return {}
    p = model.predict_proba(features)[:, 1]
    chosen = p >= threshold
    tp = int((chosen & (labels == 1)).sum())
    out = {"samples": int(len(labels)), "positive_rate": float(labels.mean()),
           "precision_at_threshold": tp / int(chosen.sum()) if chosen.any() else 0.0,
           "recall_at_threshold": tp / int(labels.sum()) if labels.sum() else 0.0, "threshold": threshold}
    try:
        from sklearn.metrics import roc_auc_score

        out["auc"] = float(roc_auc_score(labels, p)) if len(np.unique(labels)) > 1 else None
    except ValueError:
        out["auc"] = None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="predis-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("segments", nargs="+", help="collector NPZ segments or directories of them")
    parser.add_argument("--out", required=True, help="models directory (a versioned subdirectory is created)")
    parser.add_argument("--horizon", type=int, default=64, help="label: read within this many accesses")
    parser.add_argument("--train-fraction", type=float, default=0.8)
    parser.add_argument("--max-triggers", type=int, default=200_000)
    parser.add_argument("--version", default=None)
    args = parser.parse_args(argv)
    events = load_segments(args.segments)
    if len(events["key_hash"]) < 100:
        print(f"predis-train: only {len(events['key_hash'])} events; need at least 100", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    features, labels, where = build_dataset(events, args.horizon, args.max_triggers)
    cut = int(args.train_fraction * min(len(events["key_hash"]), args.max_triggers))
    train_mask = where < cut
    try:
        model = train(features[train_mask], labels[train_mask])
    except ValueError as exc:
        print(f"predis-train: {exc}", file=sys.stderr)
        return 2
    metrics = {"events": int(len(events["key_hash"])), "horizon": args.horizon,
               "train": evaluate(model, features[train_mask], labels[train_mask]),
               "holdout": evaluate(model, features[~train_mask], labels[~train_mask]),
               "seconds": round(time.perf_counter() - t0, 3), "model": "GradientBoostingClassifier"}
    path = export(model, args.out, metrics, args.version)
    print(json.dumps({"model_dir": path, **metrics}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
