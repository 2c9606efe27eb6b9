"""Candidates, the shared feature function, training and ONNX export, the ranker."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from models import train
from models.candidates import RAW_COLUMNS, CandidateGenerator, raw_matrix
from models.collector import AccessCollector, load_segments
from models.features import FEATURE_NAMES, candidate_features
from models.keycodes import key_codes
from models.ranker import HeuristicRanker, ModelInvalid, OnnxRanker, smoke_test


def _stream():
    """Sequential scans (stride 1) interleaved with a fixed transition a -> b."""
    rng = np.random.default_rng(1)
    keys = []
    for epoch in range(6):
        for i in range(300):
            keys.append(b"sample:%d" % i)
            if rng.random() < 0.3:
                keys.append(b"meta:a")
                keys.append(b"meta:b")
            if rng.random() < 0.2:
                keys.append(b"noise:%d" % rng.integers(1_000_000))
    return keys


def _segments(tmp_path, keys):
    c = AccessCollector(capacity=len(keys) + 10, sampling=1.0, export_dir=str(tmp_path / "seg"))
    for start in range(0, len(keys), 100):
        c.record([(k, 0, 1, 8, 0) for k in keys[start:start + 100]], now=1000.0 + start)
    c.export_once()
    return str(tmp_path / "seg")


def test_candidates_learn_transitions_and_strides():
    gen = CandidateGenerator()
    keys = [b"u:%d" % i for i in range(10)] + [b"a", b"b", b"a", b"b", b"a"]
    kh, ph, sx = key_codes(keys)
    codes = list(zip(kh.tolist(), ph.tolist(), sx.tolist()))
    for k, p, s in codes[:10]:
        gen.observe(k, p, s)
    out = []
    gen.candidates(*codes[9], out)  # u:9 continues the +1 stream: u:10, u:11, ... deepening with confidence
    strides = [o[1] for o in out if o[0] == -1]
    assert strides[:2] == [10, 11] and len(strides) == gen.stride_depth
    for k, p, s in codes[10:]:
        gen.observe(k, p, s)
    out = []
    gen.candidates(*codes[-1], out)  # after "a": "b"
    assert out[0][0] == int(kh[-2]) and out[0][3][0] == 3  # b follows a@10 twice, a@12 once


def test_a_group_read_back_to_back_makes_every_member_a_follower_of_its_first_key():
    # hft: a symbol's quote, trade and five book levels are read together; read once, the quote
    # must offer all six, as a prefetch started at the quote's miss is the only one in time
    gen = CandidateGenerator()
    group = [b"%d" % (7 * 41 + f) for f in range(7)]
    codes = list(zip(*(c.tolist() for c in key_codes(group + [b"9999"]))))
    for k, p, s in codes:
        gen.observe(k, p, s)
    out = []
    gen.candidates(*codes[0], out)
    followers = {o[0] for o in out if o[0] >= 0}
    assert followers == {k for k, _, _ in codes[1:7]}


def test_interleaved_scans_are_separate_streams():
    gen = CandidateGenerator()
    # two scans (ids 100.. step 1 and 5000.. step -2) interleaved with random reads
    keys = []
    for i in range(8):
        keys += [b"%d" % (100 + i), b"%d" % (5000 - 2 * i), b"%d" % (70_000 + 977 * i)]
    kh, ph, sx = key_codes(keys)
    seen = {}
    for k, p, s in zip(kh.tolist(), ph.tolist(), sx.tolist()):
        gen.observe(k, p, s)
        out = []
        gen.candidates(k, p, s, out)
        seen[s] = [o[1] for o in out if o[0] == -1]
    # the next step each time, plus the not-yet-offered frontier further ahead
    assert seen[107][0] == 108 and seen[4986][0] == 4984
    offered = {t for s, ts in seen.items() if 100 <= s < 200 for t in ts}
    assert set(range(103, 115)) <= offered and all(t > 100 for t in offered)
    assert seen[70_000 + 977 * 7] == []  # no stride among the random reads


def test_feature_function_shape_and_names():
    raw = raw_matrix([(3, 4, 0, 0, 0, 0, 10, 5), (0, 4, 4, 1, 7, 1, 0, 1 << 30)])
    f = candidate_features(raw)
    assert f.dtype == np.float32 and f.shape == (2, len(FEATURE_NAMES))
    assert f[0, 0] == pytest.approx(0.75) and f[1, 4] == 1.0
    assert len(RAW_COLUMNS) == raw.shape[1]


def test_train_export_and_serve_the_same_scores(tmp_path):
    seg = _segments(tmp_path, _stream())
    out = tmp_path / "models"
    assert train.main([seg, "--out", str(out), "--version", "v1", "--horizon", "32"]) == 0
    model_dir = out / "v1"
    assert sorted(os.listdir(model_dir)) == ["metrics.json", "model.onnx", "schema.json"]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["holdout"]["auc"] > 0.7  # evaluated on the later part of the stream only
    schema = json.loads((model_dir / "schema.json").read_text())
    assert schema["features"] == list(FEATURE_NAMES) and schema["version"] == "v1"
    ranker = OnnxRanker(str(model_dir))
    events = load_segments([seg])
    features, labels, _ = train.build_dataset(events, 32, 2000)
    onnx_scores = ranker.score(features)
    assert onnx_scores.shape == (len(features),)
    # positives score higher than negatives on average
    assert onnx_scores[labels == 1].mean() > onnx_scores[labels == 0].mean() + 0.2
    smoke_test(ranker)


def test_schema_mismatch_is_refused(tmp_path):
    seg = _segments(tmp_path, _stream()[:1500])
    out = tmp_path / "models"
    assert train.main([seg, "--out", str(out), "--version", "v1"]) == 0
    schema_path = out / "v1" / "schema.json"
    schema = json.loads(schema_path.read_text())
    schema["features"] = schema["features"][::-1]
    schema_path.write_text(json.dumps(schema))
    with pytest.raises(ModelInvalid, match="schema mismatch"):
        OnnxRanker(str(out / "v1"))


def test_heuristic_ranker_prefers_repeated_strides():
    raw = raw_matrix([(0, 0, 4, 1, 9, 1, 0, 1 << 30), (1, 10, 3, 0, 0, 0, 1, 50)])
    scores = HeuristicRanker().score(candidate_features(raw))
    assert scores[0] > 0.8 and scores[1] == pytest.approx(0.1)


def test_stream_floor_lifts_only_long_streams():
    from models.prefetch import stream_floor

    # (count, total, rank, is_stride, confidence, distance, freq, age)
    raw = raw_matrix([(0, 5, 6, 1, 12, 1, 0, 1 << 30), (0, 5, 6, 1, 12, 9, 0, 1 << 30),
                      (0, 5, 6, 1, 2, 1, 0, 1 << 30), (3, 4, 0, 0, 0, 0, 10, 5)])
    features = candidate_features(raw)
    floor = stream_floor(features, 4)
    assert floor[0] > 0.9 and 0 < floor[1] < floor[0]  # deeper steps: lower floors
    assert floor[2] == 0 and floor[3] == 0  # a young stream and a follower: the model decides
    assert stream_floor(features, 0) is None  # off: the default
