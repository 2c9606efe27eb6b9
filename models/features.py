"""The one feature function, shared by training (``models.train``) and serving (``models.prefetch``).

``candidate_features`` turns the raw candidate columns of ``models.candidates`` into the
ranker's float32 inputs. The schema (names, dtype, version) is written beside every model
(schema.json) and checked when a model is loaded, so a model never sees features computed
differently from those it was trained on.
"""
from __future__ import annotations

import numpy as np

from .candidates import RAW_COLUMNS

FEATURE_VERSION = 2  # 2: multi-stream strides with confidence-dependent depth
FEATURE_NAMES = (
    "follow_probability",     # follow_count / trigger_total: the transition probability
    "log_follow_count",
    "log_trigger_total",
    "follower_rank",          # 0 = the trigger's most frequent follower
    "is_stride",
    "log_stride_confidence",  # how many times the same step repeated
    "stride_distance",        # k in suffix + k*step
    "log_candidate_frequency",
    "log_candidate_age",      # accesses since the candidate was last read (never: 2**30)
)
FEATURE_DTYPE = "float32"


def candidate_features(raw: np.ndarray) -> np.ndarray:
    """Features for an (n, len(RAW_COLUMNS)) array of raw candidate columns -> (n, 9) float32."""
    raw = np.asarray(raw, dtype=np.float64).reshape(-1, len(RAW_COLUMNS))
    count, total, rank, is_stride, confidence, distance, freq, age = raw.T
    out = np.empty((raw.shape[0], len(FEATURE_NAMES)), dtype=np.float32)
    out[:, 0] = count / np.maximum(total, 1.0)
    out[:, 1] = np.log1p(count)
    out[:, 2] = np.log1p(total)
    out[:, 3] = rank
    out[:, 4] = is_stride
    out[:, 5] = np.log1p(confidence)
    out[:, 6] = distance
    out[:, 7] = np.log1p(freq)
    out[:, 8] = np.log1p(np.minimum(age, float(1 << 30)))
    return out


def schema() -> dict:
    return {"feature_version": FEATURE_VERSION, "features": list(FEATURE_NAMES),
            "dtype": FEATURE_DTYPE, "input_name": "features", "output": "probability of access within horizon"}
