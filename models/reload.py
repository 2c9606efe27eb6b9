"""Hot model reload: validate a model directory, then swap it in atomically.

Sources: a new directory dropped into ``models-dir`` (polled once a second; the newest
directory by name that holds model.onnx and was not tried yet), or ``PREDIS.MODEL LOAD
path``. Validation, in order: schema (feature names, dtype and version must be the ones
``models.features`` computes), smoke inference on synthetic features, and a shadow score on
recent real candidate features (finite probabilities, and how far they are from the active
model's). Only then the ranker service's reference is replaced, one assignment, while the
worker thread may be scoring a batch with the old model. A model failing any step is refused,
the old one stays, and the refusal is logged and kept in ``history``.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from .ranker import HeuristicRanker, ModelInvalid, OnnxRanker, smoke_test

log = logging.getLogger("predis.models")


class ModelReloader:
    def __init__(self, services: Any) -> None:
        self.services = services
        self.directory = ""
        self.tried: set[str] = set()
        self.history: list[dict[str, Any]] = []
        self.last_shadow: dict[str, float] = {}

    @property
    def ranker_service(self):
        return self.services.ranker

    def set_directory(self, directory: str) -> None:
        if directory != self.directory:
            self.directory = directory
            self.tried.clear()
            self.poll()

    def poll(self) -> None:
        """Load the newest untried model directory under models-dir, if any."""
        if not self.directory or not os.path.isdir(self.directory):
            return
        candidates = sorted(
            (os.path.join(self.directory, d) for d in os.listdir(self.directory)
             if os.path.isfile(os.path.join(self.directory, d, "model.onnx"))
             and os.path.isfile(os.path.join(self.directory, d, "schema.json"))),
            reverse=True)
        for path in candidates:
            path = os.path.abspath(path)
            if path in self.tried:
                return  # the newest was already handled (served or refused)
            self.tried.add(path)
            ok, _ = self.load(path)
            if ok:
                return

    def load(self, path: str) -> tuple[bool, str]:
        """Validate and swap; returns (accepted, message)."""
        path = os.path.abspath(path)
        started = time.time()
        try:
            if not os.path.isdir(path):
                raise ModelInvalid("not a model directory")
            candidate = OnnxRanker(path)
            smoke_test(candidate)
            self.last_shadow = self._shadow(candidate)
        except ModelInvalid as exc:
            message = f"model {path} refused: {exc}"
            log.warning("%s (keeping %s)", message, self.ranker_service.active.version)
            self.history.append({"path": path, "accepted": False, "reason": str(exc), "time": started})
            self._audit("model-load-refused", path=path, reason=str(exc))
            return False, message
        previous = self.ranker_service.active.version
        self.ranker_service.swap(candidate)
        message = f"model {candidate.version} active (was {previous})"
        log.warning("%s; shadow score %s", message, self.last_shadow)
        self.history.append({"path": path, "accepted": True, "version": candidate.version, "time": started,
                             **{f"shadow_{k}": v for k, v in self.last_shadow.items()}})
        self._audit("model-load", path=path, version=candidate.version, previous=previous)
        return True, message

    def _audit(self, event: str, **fields: Any) -> None:
        server = getattr(self.services, "server", None)
        if server is not None:
            server.audit(event, None, **fields)

    def _shadow(self, candidate: OnnxRanker) -> dict[str, float]:
        prefetcher = self.services.prefetcher
        recent = list(prefetcher.recent_features) if prefetcher is not None else []
        if not recent:
            return {"samples": 0.0}
        features = np.concatenate(recent)[-4096:]
        new = smoke_test(candidate, features)
        old = self.ranker_service.active.score(features)
        threshold = self.services.config.prefetch_threshold
        return {"samples": float(len(features)), "mean_score": float(new.mean()),
                "mean_abs_diff": float(np.abs(new - old).mean()),
                "would_prefetch": float((new >= threshold).mean())}

    def unload(self) -> None:
        self.ranker_service.swap(HeuristicRanker())

    def stop(self) -> None:
        self.directory = ""
