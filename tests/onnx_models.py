"""Real ONNX ranker directories for the MLOps tests: tiny scikit-learn models exported with
skl2onnx, with the schema and metrics files ``models.ranker.OnnxRanker`` expects."""
from __future__ import annotations

import json
import os

import numpy as np

from models.features import FEATURE_NAMES, schema


def labelled_features(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features whose label follows the transition probability (column 0), as real data does."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, len(FEATURE_NAMES))).astype(np.float32)
    y = (rng.random(n) < x[:, 0]).astype(np.int64)
    return x, y


def write_model_dir(path: str, seed: int = 0, inverted: bool = False, metrics: dict | None = None,
                    trees: bool = False) -> str:
    """Train a logistic regression and save model.onnx + schema.json + metrics.json under ``path``.

    ``inverted`` learns the opposite label: a valid model (probabilities in [0, 1]) that ranks
    exactly the wrong candidates first -- the "bad model" a rollback must catch. ``trees``:
    gradient-boosted trees with ``predis-train``'s settings instead (the retrainer's model
    family, so inference latencies compare like for like).
    """
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = labelled_features(seed=seed)
    if trees:
        from sklearn.ensemble import GradientBoostingClassifier

        model = GradientBoostingClassifier(n_estimators=40, max_depth=3, learning_rate=0.2, random_state=seed)
    else:
        model = LogisticRegression(max_iter=200)
    model.fit(x, 1 - y if inverted else y)
    onx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}},
                  initial_types=None, target_opset=17)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "model.onnx"), "wb") as handle:
        handle.write(onx.SerializeToString())
    with open(os.path.join(path, "schema.json"), "w", encoding="utf-8") as handle:
        json.dump({**schema(), "version": os.path.basename(path)}, handle)
    with open(os.path.join(path, "metrics.json"), "w", encoding="utf-8") as handle:
        json.dump(metrics or {"auc": 0.5 if inverted else 0.75}, handle)
    return path
