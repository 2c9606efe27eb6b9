"""Seeded, streaming workload generators, one module a workload. ``GENERATORS`` maps the CLI
kind to its class."""

from __future__ import annotations

from workloads.generators.base import WorkloadGenerator
from workloads.generators.database import DatabaseGenerator
from workloads.generators.gaming import GamingGenerator
from workloads.generators.hft import HFTGenerator
from workloads.generators.ml_training import MLTrainingGenerator
from workloads.generators.web import WebGenerator

GENERATORS: dict[str, type[WorkloadGenerator]] = {
    g.kind: g for g in (MLTrainingGenerator, HFTGenerator, GamingGenerator, WebGenerator, DatabaseGenerator)
}


def make_generator(kind: str, **params: object) -> WorkloadGenerator:
    """The generator for ``kind`` with parameter overrides (see each ``Params`` dataclass)."""
    try:
        cls = GENERATORS[kind]
    except KeyError:
        raise ValueError(f"unknown workload {kind!r}; expected one of {', '.join(GENERATORS)}") from None
    return cls(**params)


__all__ = ["GENERATORS", "WorkloadGenerator", "make_generator"]
