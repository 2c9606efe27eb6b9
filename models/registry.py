"""The model registry: every trained ranker as an MLflow run and registered model version.

Embedded by default: a SQLite backend (``<dir>/mlflow.db``) and a local artifact folder
(``<dir>/mlartifacts``), so a fresh server needs no MLflow server; ``mlflow-tracking-uri``
points to a team's MLflow server instead (artifacts then live wherever it stores them).

A version's artifact folder ``model/`` carries everything needed to serve and to judge it:
``model.onnx``, ``schema.json`` (feature schema), ``metrics.json`` and ``reference.npz``
(the feature distribution it was trained on: ``models.drift.ReferenceDistribution``).

Aliases say what serves: ``champion`` (live), ``challenger`` (under validation / A/B),
``previous`` (the champion before the last promotion: what a rollback restores). Per-tenant
models are registered under their own name (``predis-ranker--<tenant>``) so a tenant's
aliases can never move another tenant's or the global model.

MLflow is imported lazily (it takes seconds): a server that never trains never pays it.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("predis.models")

MODEL_NAME = "predis-ranker"
EXPERIMENT = "predis-ranker"
ARTIFACT_FILES = ("model.onnx", "schema.json", "metrics.json", "reference.npz")
OPTIONAL_FILES = ("model.pkl",)  # the fitted estimator: what a tenant model is fine-tuned from
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"


class RegistryError(RuntimeError):
    pass


@dataclass
class VersionInfo:
    name: str
    version: str
    run_id: str
    source: str
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def registered_name(tenant: str = "") -> str:
    if not tenant:
        return MODEL_NAME
    return f"{MODEL_NAME}--{re.sub(r'[^A-Za-z0-9_.-]', '_', tenant)}"


class ModelRegistry:
    def __init__(self, directory: str, tracking_uri: str = "") -> None:
        import mlflow  # noqa: F401 - fail here, with the reason, when MLflow is missing
        from mlflow import MlflowClient

        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.tracking_uri = tracking_uri or f"sqlite:///{os.path.join(self.directory, 'mlflow.db')}"
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self.cache = os.path.join(self.directory, "model-cache")
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            # a remote tracking server keeps artifacts where it is configured to; any local store
            # (the embedded default or a sqlite:/// URI) keeps them under our directory, never in
            # MLflow's default ./mlruns of whatever the working directory is
            remote = tracking_uri.startswith(("http://", "https://", "databricks"))
            location = None if remote else "file://" + os.path.join(self.directory, "mlartifacts")
            self.experiment_id = self.client.create_experiment(EXPERIMENT, artifact_location=location)
        else:
            self.experiment_id = experiment.experiment_id

    # -- writing ----------------------------------------------------------------------------
    def register(self, model_dir: str, reference: Any = None, metrics: dict[str, float] | None = None,
                 params: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
                 alias: str | None = CHALLENGER, tenant: str = "") -> VersionInfo:
        """Log ``model_dir`` (model.onnx + schema.json [+ metrics.json]) as a run and a new version."""
        for needed in ("model.onnx", "schema.json"):
            if not os.path.isfile(os.path.join(model_dir, needed)):
                raise RegistryError(f"{model_dir} has no {needed}")
        metrics = dict(metrics or {})
        if not metrics and os.path.isfile(os.path.join(model_dir, "metrics.json")):
            with open(os.path.join(model_dir, "metrics.json"), encoding="utf-8") as handle:
                metrics = {k: v for k, v in json.load(handle).items() if isinstance(v, (int, float))}
        tags = {**(tags or {}), "tenant": tenant}
        run = self.client.create_run(self.experiment_id, tags=tags,
                                     run_name=f"{registered_name(tenant)}-{os.path.basename(model_dir)}")
        run_id = run.info.run_id
        with tempfile.TemporaryDirectory(prefix="predis-register-") as staging:
            for name in ("model.onnx", "schema.json", "metrics.json", *OPTIONAL_FILES):
                if os.path.isfile(os.path.join(model_dir, name)):
                    shutil.copy2(os.path.join(model_dir, name), staging)
            if not os.path.isfile(os.path.join(staging, "metrics.json")):
                with open(os.path.join(staging, "metrics.json"), "w", encoding="utf-8") as handle:
                    json.dump(metrics, handle)
            if reference is not None:
                reference.save(os.path.join(staging, "reference.npz"))
            elif os.path.isfile(os.path.join(model_dir, "reference.npz")):
                shutil.copy2(os.path.join(model_dir, "reference.npz"), staging)
            self.client.log_artifacts(run_id, staging, "model")
        for key, value in (params or {}).items():
            self.client.log_param(run_id, key, str(value)[:500])
        for key, value in metrics.items():
            self.client.log_metric(run_id, key, float(value))
        self.client.set_terminated(run_id)
        name = registered_name(tenant)
        if not self.client.search_registered_models(f"name = '{name}'"):
            self.client.create_registered_model(name)
        version = self.client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id,
                                                   tags=tags)
        if alias:
            self.client.set_registered_model_alias(name, alias, version.version)
        log.warning("registered %s version %s (run %s)%s", name, version.version, run_id,
                    f" as {alias}" if alias else "")
        return self.get(str(version.version), tenant)

    def set_alias(self, alias: str, version: str, tenant: str = "") -> None:
        self.client.set_registered_model_alias(registered_name(tenant), alias, str(version))

    def clear_alias(self, alias: str, tenant: str = "") -> None:
        try:
            self.client.delete_registered_model_alias(registered_name(tenant), alias)
        except Exception:  # already absent
            pass

    def promote(self, version: str, tenant: str = "") -> str | None:
        """Make ``version`` the champion; the old champion becomes ``previous``. Returns it."""
        old = self.alias_version(CHAMPION, tenant)
        if old is not None and old != str(version):
            self.set_alias(PREVIOUS, old, tenant)
        self.set_alias(CHAMPION, str(version), tenant)
        if self.alias_version(CHALLENGER, tenant) == str(version):
            self.clear_alias(CHALLENGER, tenant)
        return old

    def rollback(self, tenant: str = "") -> tuple[str, str]:
        """Champion back to ``previous``; returns (bad version, restored version)."""
        previous = self.alias_version(PREVIOUS, tenant)
        current = self.alias_version(CHAMPION, tenant)
        if previous is None or current is None:
            raise RegistryError("no previous champion to roll back to")
        self.set_alias(CHAMPION, previous, tenant)
        self.clear_alias(PREVIOUS, tenant)
        self.client.set_model_version_tag(registered_name(tenant), current, "rolled_back", "true")
        return current, previous

    # -- reading ----------------------------------------------------------------------------
    def alias_version(self, alias: str, tenant: str = "") -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(registered_name(tenant), alias).version)
        except Exception:  # no such alias or model
            return None

    def get(self, version: str, tenant: str = "") -> VersionInfo:
        name = registered_name(tenant)
        mv = self.client.get_model_version(name, str(version))
        run = self.client.get_run(mv.run_id)
        return VersionInfo(name, str(mv.version), mv.run_id, mv.source, list(mv.aliases or []),
                           dict(mv.tags or {}), dict(run.data.metrics))

    def versions(self, tenant: str = "") -> list[VersionInfo]:
        name = registered_name(tenant)
        found = self.client.search_model_versions(f"name = '{name}'")
        return sorted((self.get(str(mv.version), tenant) for mv in found), key=lambda v: int(v.version))

    def fetch(self, version_or_alias: str, tenant: str = "") -> str:
        """A local directory holding the version's artifact files (downloaded once, then cached)."""
        version = version_or_alias
        if not str(version).isdigit():
            resolved = self.alias_version(version_or_alias, tenant)
            if resolved is None:
                raise RegistryError(f"no {version_or_alias} model registered")
            version = resolved
        name = registered_name(tenant)
        target = os.path.join(self.cache, name, f"v{version}")
        if os.path.isfile(os.path.join(target, "model.onnx")):
            return target
        import mlflow

        source = self.client.get_model_version(name, str(version)).source
        os.makedirs(os.path.dirname(target), exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".v{version}-", dir=os.path.dirname(target))
        local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=staging,
                                                    tracking_uri=self.tracking_uri)
        # the schema names the version, so the ranker and INFO show the registry's number
        schema_path = os.path.join(local, "schema.json")
        with open(schema_path, encoding="utf-8") as handle:
            schema = json.load(handle)
        schema["version"] = f"{name}:v{version}"
        with open(schema_path, "w", encoding="utf-8") as handle:
            json.dump(schema, handle)
        try:
            os.replace(local, target)
        except OSError:  # a concurrent fetch won the race
            pass
        shutil.rmtree(staging, ignore_errors=True)
        return target

    def reference(self, version_or_alias: str, tenant: str = ""):
        from .drift import ReferenceDistribution

        path = os.path.join(self.fetch(version_or_alias, tenant), "reference.npz")
        return ReferenceDistribution.load(path) if os.path.isfile(path) else None
