"""ML training input pipelines: a dataset of samples in shards, read epoch after epoch by
several concurrent jobs, with validation passes and checkpoint writes and reads."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from workloads.generators.base import CommonParams, WorkloadGenerator, lognormal_sizes, param, poisson_times
from workloads.trace import OP_GET, OP_SET, make_chunk


@dataclass
class MLTrainingParams(CommonParams):
    samples: int = param(20_000, "training samples in the dataset (key ids 0..samples-1)")
    shards: int = param(100, "shards the samples are stored in, consecutive ids per shard")
    shuffle: str = param("sample", "per-epoch shuffle: 'sample' (global permutation), 'shard' (shard "
                                   "order shuffled, samples within a shard read in order) or 'none'")
    jobs: int = param(2, "concurrent training jobs reading the same dataset (each shuffles "
                         "with its own seed; batches interleave)")
    batch_size: int = param(32, "samples a job reads back to back before another job runs")
    validation_samples: int = param(2_000, "validation set size (ids after the training samples), read "
                                           "in order after every `validation_every` epochs; 0 disables")
    validation_every: int = param(1, "epochs between validation passes")
    checkpoint_parts: int = param(8, "objects per checkpoint (0 disables checkpoints); each job writes "
                                     "its checkpoint after every epoch and reads it back at start and "
                                     "on restart")
    checkpoint_size: int = param(65_536, "bytes per checkpoint part")
    restart_prob: float = param(0.05, "probability that a job restarts (re-reads its checkpoint) "
                                      "after an epoch")
    sample_size_mean: float = param(4096.0, "mean sample size in bytes (lognormal per sample)")
    sample_size_sigma: float = param(0.5, "lognormal shape of sample sizes")
    rate: float = param(2000.0, "mean requests per second across all jobs")


class MLTrainingGenerator(WorkloadGenerator):
    """ML training: ``jobs`` jobs each read all ``samples`` once per epoch in an order set by
    ``shuffle``, a validation pass every ``validation_every`` epochs, and checkpoint writes
    (SET) after each epoch and reads (GET) at job start and restart. Keys: samples
    ``0..samples-1``, validation ``samples..samples+validation_samples-1``, then checkpoint
    parts per job. The tenant field is the job number."""

    kind = "ml-training"
    Params = MLTrainingParams

    def validate(self) -> None:
        p = self.params
        if p.samples < 1 or not 1 <= p.shards <= p.samples or p.jobs < 1 or p.batch_size < 1:
            raise ValueError("ml-training: need samples >= 1, 1 <= shards <= samples, jobs >= 1, batch_size >= 1")
        if p.shuffle not in ("sample", "shard", "none"):
            raise ValueError("ml-training: shuffle must be 'sample', 'shard' or 'none'")

    def _checkpoint_keys(self, job: int) -> np.ndarray:
        p = self.params
        base = p.samples + p.validation_samples + job * p.checkpoint_parts
        return np.arange(base, base + p.checkpoint_parts, dtype=np.uint64)

    def epoch_order(self, rng: np.random.Generator) -> np.ndarray:
        """The order in which one job reads the training samples in one epoch."""
        p = self.params
        if p.shuffle == "sample":
            return rng.permutation(p.samples).astype(np.uint64)
        bounds = np.linspace(0, p.samples, p.shards + 1).astype(np.int64)
        shard_order = rng.permutation(p.shards) if p.shuffle == "shard" else np.arange(p.shards)
        return np.concatenate([np.arange(bounds[s], bounds[s + 1]) for s in shard_order]).astype(np.uint64)

    def _job(self, job: int) -> Iterator[tuple[np.ndarray, int]]:
        """One job's stream as (keys, op) batches."""
        p = self.params
        rng = np.random.default_rng([p.seed, job + 1])
        ckpt = self._checkpoint_keys(job)
        if p.checkpoint_parts:
            yield ckpt, OP_GET
        epoch = 0
        while True:
            order = self.epoch_order(rng)
            for i in range(0, len(order), p.batch_size):
                yield order[i:i + p.batch_size], OP_GET
            epoch += 1
            if p.validation_samples and epoch % p.validation_every == 0:
                val = np.arange(p.samples, p.samples + p.validation_samples, dtype=np.uint64)
                for i in range(0, len(val), p.batch_size):
                    yield val[i:i + p.batch_size], OP_GET
            if p.checkpoint_parts:
                yield ckpt, OP_SET
                if rng.random() < p.restart_prob:
                    yield ckpt, OP_GET

    def sizes_of(self, keys: np.ndarray) -> np.ndarray:
        p = self.params
        sizes = lognormal_sizes(keys, p.sample_size_mean, p.sample_size_sigma, 1, 1 << 24, salt=p.seed)
        sizes[keys >= p.samples + p.validation_samples] = p.checkpoint_size
        return sizes

    def _generate(self) -> Iterator[np.ndarray]:
        p, rng = self.params, self.rng
        streams = [self._job(j) for j in range(p.jobs)]
        t = 0.0
        while True:
            parts = []
            for _ in range(64):
                job = int(rng.integers(0, p.jobs))
                keys, op = next(streams[job])
                parts.append((keys, op, job))
            keys = np.concatenate([k for k, _, _ in parts])
            ops = np.concatenate([np.full(len(k), o, dtype=np.uint8) for k, o, _ in parts])
            tenants = np.concatenate([np.full(len(k), j, dtype=np.uint16) for k, _, j in parts])
            ts = poisson_times(rng, t, len(keys), p.rate)
            t = float(ts[-1])
            yield make_chunk(ts, ops, keys, self.sizes_of(keys), tenants)
