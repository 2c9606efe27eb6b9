"""The MLflow model registry: real MLflow on SQLite with a local artifact folder, real ONNX files."""
from __future__ import annotations

import filecmp
import os

import numpy as np
import pytest
from onnx_models import labelled_features, write_model_dir

from models.drift import ReferenceDistribution
from models.ranker import OnnxRanker, smoke_test
from models.registry import CHALLENGER, CHAMPION, PREVIOUS, ModelRegistry, RegistryError

pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return ModelRegistry(str(tmp_path_factory.mktemp("registry")))


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    return [write_model_dir(str(base / f"m{i}"), seed=i) for i in range(3)]


def test_embedded_default_is_sqlite_and_local_artifacts(registry):
    assert registry.tracking_uri == f"sqlite:///{registry.directory}/mlflow.db"
    assert os.path.isfile(os.path.join(registry.directory, "mlflow.db"))


def test_version_carries_onnx_schema_reference_and_metrics(registry, model_dirs):
    x, _ = labelled_features(3000)
    reference = ReferenceDistribution.from_features(x, {"hits": 10, "lookups": 20})
    info = registry.register(model_dirs[0], reference, metrics={"hit_ratio": 0.41, "precision": 0.6},
                             params={"rows": 3000}, tenant="t-files")
    assert info.aliases == [CHALLENGER] and info.metrics == {"hit_ratio": 0.41, "precision": 0.6}
    local = registry.fetch(info.version, tenant="t-files")
    assert sorted(os.listdir(local)) == ["metrics.json", "model.onnx", "reference.npz", "schema.json"]
    assert filecmp.cmp(os.path.join(local, "model.onnx"), os.path.join(model_dirs[0], "model.onnx"),
                       shallow=False)
    ranker = OnnxRanker(local)  # the fetched directory serves as is
    assert ranker.version == f"predis-ranker--t-files:v{info.version}"
    smoke_test(ranker)
    loaded = registry.reference(info.version, tenant="t-files")
    assert loaded.outcomes == {"hits": 10, "lookups": 20}
    assert np.array_equal(loaded.sample, reference.sample)
    # artifacts live under the registry's directory, not in the working directory
    assert local.startswith(registry.directory)
    assert os.path.isdir(os.path.join(registry.directory, "mlartifacts"))


def test_promote_and_rollback_move_aliases(registry, model_dirs):
    tenant = "t-aliases"
    v1 = registry.register(model_dirs[0], alias=None, tenant=tenant).version
    registry.promote(v1, tenant)
    v2 = registry.register(model_dirs[1], tenant=tenant).version
    assert registry.alias_version(CHAMPION, tenant) == v1
    assert registry.alias_version(CHALLENGER, tenant) == v2
    assert registry.promote(v2, tenant) == v1
    assert registry.alias_version(CHAMPION, tenant) == v2
    assert registry.alias_version(PREVIOUS, tenant) == v1
    assert registry.alias_version(CHALLENGER, tenant) is None
    assert registry.rollback(tenant) == (v2, v1)
    assert registry.alias_version(CHAMPION, tenant) == v1
    assert registry.get(v2, tenant).tags["rolled_back"] == "true"
    with pytest.raises(RegistryError):
        registry.rollback(tenant)  # nothing left to roll back to


def test_tenant_models_never_move_the_global_aliases(registry, model_dirs):
    g = registry.register(model_dirs[0], alias=None).version
    registry.promote(g)
    t = registry.register(model_dirs[2], tenant="alice", alias=None).version
    registry.promote(t, "alice")
    assert registry.alias_version(CHAMPION) == g
    assert registry.alias_version(CHAMPION, "alice") == t
    assert [v.version for v in registry.versions("alice")] == [t]
    assert registry.alias_version(CHAMPION, "bob") is None
    with pytest.raises(RegistryError):
        registry.fetch(CHAMPION, "bob")


def test_tracking_uri_override_is_used(tmp_path, model_dirs):
    other = tmp_path / "team.db"
    reg = ModelRegistry(str(tmp_path / "dir"), tracking_uri=f"sqlite:///{other}")
    assert os.path.isfile(other) and not os.path.exists(tmp_path / "dir" / "mlflow.db")
    v = reg.register(model_dirs[0]).version
    assert reg.alias_version(CHALLENGER) == v
    # artifacts of a local store stay under the registry's directory, not in ./mlruns
    assert reg.fetch(v).startswith(str(tmp_path / "dir"))
    assert os.path.isdir(tmp_path / "dir" / "mlartifacts")


def test_register_refuses_a_directory_without_a_model(registry, tmp_path):
    with pytest.raises(RegistryError, match="model.onnx"):
        registry.register(str(tmp_path))
