"""The ranker: scores each candidate's probability of being read within the horizon.

A trained ranker is an ONNX model run with onnxruntime (CUDA execution provider when
present, else CPU). ``RankerService`` batches one event-loop tick's candidates into one
inference call on a worker thread, so the loop never waits on the model; when a batch is
still running, or the last one blew the latency budget, the next tick's batch is dropped
(counted) rather than queued behind it. Without a trained model the built-in heuristic
(transition probability, stride confidence) ranks candidates.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .features import FEATURE_NAMES, FEATURE_VERSION

log = logging.getLogger("predis.models")


class ModelInvalid(ValueError):
    """A model directory that must not be served (bad schema, failing inference...)."""


class HeuristicRanker:
    version = "builtin-heuristic"
    path = ""
    metrics: dict = {}
    provider = "python"

    def score(self, features: np.ndarray) -> np.ndarray:
        follow_p = features[:, 0]
        stride = features[:, 4] > 0
        confidence = np.expm1(features[:, 5])
        stride_p = 1.0 - 1.0 / (confidence + 2.0)
        # k steps ahead needs the stream to continue k times
        return np.where(stride, stride_p ** np.maximum(features[:, 6], 1.0), follow_p).astype(np.float32)


class OnnxRanker:
    """A model directory: model.onnx + schema.json (+ metrics.json)."""

    def __init__(self, path: str) -> None:
        import onnxruntime as ort

        self.path = os.path.abspath(path)
        try:
            with open(os.path.join(path, "schema.json"), encoding="utf-8") as handle:
                self.schema = json.load(handle)
        except (OSError, ValueError) as exc:
            raise ModelInvalid(f"schema.json unreadable: {exc}") from exc
        if self.schema.get("feature_version") != FEATURE_VERSION or \
                list(self.schema.get("features", ())) != list(FEATURE_NAMES) or \
                self.schema.get("dtype") != "float32":
            raise ModelInvalid("schema mismatch: the model was trained on other features than this server "
                               f"computes (feature_version {self.schema.get('feature_version')} vs {FEATURE_VERSION})")
        try:
            with open(os.path.join(path, "metrics.json"), encoding="utf-8") as handle:
                self.metrics = json.load(handle)
        except (OSError, ValueError):
            self.metrics = {}
        self.version = str(self.schema.get("version") or os.path.basename(self.path.rstrip("/")))
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(os.path.join(path, "model.onnx"), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelInvalid(f"model.onnx does not load: {exc}") from exc
        self.provider = self.session.get_providers()[0]
        self.input_name = self.session.get_inputs()[0].name
        outputs = self.session.get_outputs()
        self.output_name = outputs[-1].name  # skl2onnx: [label, probabilities]

    def score(self, features: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output_name], {self.input_name: features.astype(np.float32, copy=False)})[0]
        out = np.asarray(out, dtype=np.float32)
        if out.ndim == 2:
            out = out[:, -1]
        return out.reshape(-1)


def smoke_test(ranker: OnnxRanker | HeuristicRanker, features: np.ndarray | None = None) -> np.ndarray:
    """Run the model on sample features; raise ModelInvalid unless it returns n probabilities."""
    if features is None or len(features) == 0:
        rng = np.random.default_rng(0)
        features = rng.random((64, len(FEATURE_NAMES)), dtype=np.float32)
    try:
        scores = ranker.score(features)
    except Exception as exc:
        raise ModelInvalid(f"smoke inference failed: {exc}") from exc
    if scores.shape != (len(features),) or not np.all(np.isfinite(scores)) or \
            scores.min() < -1e-6 or scores.max() > 1 + 1e-6:
        raise ModelInvalid(f"smoke inference returned {scores.shape} values outside [0, 1]")
    return scores


class RankerService:
    """Holds the active ranker (swapped atomically) and runs batches on one worker thread."""

    def __init__(self, budget_ms: float = 5.0, latency_samples: int = 4096) -> None:
        self.active: OnnxRanker | HeuristicRanker = HeuristicRanker()
        self.budget_s = budget_ms / 1000.0
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predis-ranker")
        self.busy = False
        self.latencies_us = np.zeros(latency_samples, dtype=np.float64)
        self.latency_count = 0
        self.batches = 0
        self.scored = 0
        self.dropped_batches = 0
        self.over_budget = 0
        self.cpu_seconds = 0.0  # the worker's CPU time spent scoring (charged to the prefetcher's budget)
        self._lock = threading.Lock()

    def swap(self, ranker: OnnxRanker | HeuristicRanker) -> None:
        self.active = ranker  # one reference assignment: atomic for the worker thread

    def submit(self, features: np.ndarray, done: Callable[[np.ndarray], None],
               loop, ranker: Any = None) -> bool:
        """Score ``features`` off the loop (with ``ranker``, default the active one);
        ``done(scores)`` runs on ``loop``. False: dropped."""
        if self.busy:
            self.dropped_batches += 1
            return False
        self.busy = True
        ranker = ranker if ranker is not None else self.active

        def work() -> None:
            start = time.perf_counter()
            cpu_start = time.thread_time()
            try:
                scores = ranker.score(features)
            except Exception:
                log.exception("ranker %s failed on a batch", ranker.version)
                scores = np.zeros(len(features), dtype=np.float32)
            elapsed = time.perf_counter() - start
            cpu = time.thread_time() - cpu_start
            with self._lock:
                self.cpu_seconds += cpu
                self.latencies_us[self.latency_count % len(self.latencies_us)] = elapsed * 1e6
                self.latency_count += 1
                self.batches += 1
                self.scored += len(features)
                if elapsed > self.budget_s:
                    self.over_budget += 1
            try:
                loop.call_soon_threadsafe(self._finish, scores, done, elapsed <= self.budget_s)
            except RuntimeError:  # loop closed during shutdown
                self.busy = False

        self.pool.submit(work)
        return True

    def _finish(self, scores: np.ndarray, done: Callable[[np.ndarray], None], in_budget: bool) -> None:
        self.busy = False
        done(scores)

    def latency_percentiles(self) -> tuple[float, float]:
        with self._lock:
            n = min(self.latency_count, len(self.latencies_us))
            if n == 0:
                return 0.0, 0.0
            sample = self.latencies_us[:n]
            return float(np.percentile(sample, 50)), float(np.percentile(sample, 99))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
