"""What every workload generator shares: the parameter convention, seeded randomness,
bounded Zipf sampling and stable per-object sizes.

A generator is a class with a ``Params`` dataclass (every field documented through
``field(metadata={"help": ...})``; the CLI builds ``predis-workload KIND --help`` from it) and a
``chunks(n_requests, chunk_size)`` method yielding :data:`workloads.trace.TRACE_DTYPE` chunks.
Same parameters and seed, same trace, byte for byte.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from workloads.trace import empty_chunk


def param(default: Any, help: str) -> Any:
    """A documented generator parameter."""
    return field(default=default, metadata={"help": help})


@dataclass
class CommonParams:
    """Parameters every generator takes."""

    seed: int = param(1, "seed of the random generator; same seed, same trace")
    rate: float = param(1000.0, "mean requests per second (sets the timestamps)")


class WorkloadGenerator:
    """Base class: subclasses set ``kind``, ``Params`` and implement :meth:`_generate`."""

    kind: ClassVar[str] = ""
    Params: ClassVar[type] = CommonParams

    def __init__(self, params: Any | None = None, **overrides: Any) -> None:
        params = params if params is not None else self.Params()
        self.params = dataclasses.replace(params, **overrides) if overrides else params
        self.validate()
        self.rng = np.random.default_rng(self.params.seed)

    def validate(self) -> None:
        """Raise ``ValueError`` on inconsistent parameters."""

    def chunks(self, n_requests: int, chunk_size: int = 65536) -> Iterator[np.ndarray]:
        """Yield exactly ``n_requests`` requests in chunks of at most ``chunk_size``."""
        remaining = n_requests
        pending: list[np.ndarray] = []
        have = 0
        for part in self._generate():
            if remaining <= 0:
                break
            part = part[:remaining]
            pending.append(part)
            have += len(part)
            remaining -= len(part)
            if have >= chunk_size:
                buf = np.concatenate(pending)
                for i in range(0, len(buf) - chunk_size + 1, chunk_size):
                    yield buf[i:i + chunk_size]
                tail = buf[(len(buf) // chunk_size) * chunk_size:]
                pending, have = ([tail] if len(tail) else []), len(tail)
        if have:
            yield np.concatenate(pending)

    def _generate(self) -> Iterator[np.ndarray]:
        """An endless stream of request parts of any length."""
        raise NotImplementedError
        yield empty_chunk(0)

    @classmethod
    def describe(cls) -> str:
        return (cls.__doc__ or "").strip()


def param_fields(params_cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(params_cls) if f.init]


class ZipfSampler:
    """Bounded Zipf over ranks ``0..n-1``: P(rank r) ∝ 1/(r+1)^alpha, sampled by inverting the
    cumulative table (exact for any alpha >= 0, unlike NumPy's unbounded ``zipf``)."""

    def __init__(self, n: int, alpha: float) -> None:
        if n <= 0:
            raise ValueError("Zipf needs at least one item")
        weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** alpha
        self.cdf = np.cumsum(weights)
        self.cdf /= self.cdf[-1]
        self.n = n

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        ranks = np.searchsorted(self.cdf, rng.random(size), side="right")
        return np.minimum(ranks, self.n - 1).astype(np.int64)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Vectorised SplitMix64 finaliser: a stable hash of uint64 ids."""
    z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stable_uniform(ids: np.ndarray, salt: int = 0) -> np.ndarray:
    """A uniform(0,1) draw that depends only on (id, salt): the same object always gets it."""
    h = splitmix64(np.asarray(ids, dtype=np.uint64) ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def lognormal_sizes(ids: np.ndarray, mean: float, sigma: float, lo: int, hi: int, salt: int = 0) -> np.ndarray:
    """Per-object sizes from a lognormal with the given arithmetic ``mean`` and shape ``sigma``,
    clipped to [lo, hi]; stable per object id so repeated requests agree."""
    if sigma <= 0:
        return np.full(len(ids), int(np.clip(mean, lo, hi)), dtype=np.uint32)
    # Box-Muller on two stable uniforms gives a stable standard normal per object.
    u = stable_uniform(ids, salt)
    u2 = np.clip(stable_uniform(ids, salt ^ 0x5DEECE66D), 1e-12, 1.0)
    z = np.sqrt(-2.0 * np.log(u2)) * np.cos(2.0 * np.pi * u)
    mu = np.log(mean) - sigma * sigma / 2.0
    return np.clip(np.exp(mu + sigma * z), lo, hi).astype(np.uint32)


def poisson_times(rng: np.random.Generator, start: float, n: int, rate: float | np.ndarray) -> np.ndarray:
    """``n`` arrival times after ``start`` with exponential gaps at ``rate`` (scalar or per
    arrival)."""
    gaps = rng.exponential(1.0, n) / rate
    return start + np.cumsum(gaps)


def rank_frequency_slope(keys: np.ndarray, top: int = 1000, skip: int = 0) -> float:
    """Least-squares slope of log(frequency) against log(rank) over ranks ``skip..top``; ≈ -alpha
    for a Zipf(alpha) stream. Used by the validation tests and ``predis-workload --stats``."""
    _, counts = np.unique(keys, return_counts=True)
    counts = np.sort(counts)[::-1][skip:top]
    ranks = np.arange(skip + 1, skip + len(counts) + 1)
    keep = counts > 0
    slope, _ = np.polyfit(np.log(ranks[keep]), np.log(counts[keep]), 1)
    return float(slope)
