"""Database pages: OLTP point reads through a B-tree with locality, page write-backs, and
periodic range scans of consecutive leaf pages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from workloads.generators.base import CommonParams, WorkloadGenerator, ZipfSampler, param, poisson_times
from workloads.trace import OP_GET, OP_SET, make_chunk


@dataclass
class DatabaseParams(CommonParams):
    pages: int = param(20_000, "leaf (heap) pages of the table, ids 0..pages-1")
    page_size: int = param(4096, "bytes per page")
    alpha: float = param(0.8, "Zipf skew of the rows that point reads target (hot rows scattered "
                              "over pages by a fixed permutation)")
    locality: float = param(0.5, "probability that a point read stays near the client's previous page")
    locality_window: int = param(16, "a local read lands uniformly within ±window pages of the previous one")
    clients: int = param(8, "concurrent clients, each with its own position for locality")
    index_reads: bool = param(True, "each point read first reads the B-tree root and inner page "
                                    "(ids after the leaves)")
    fanout: int = param(200, "leaf pages under one inner page of the index")
    write_fraction: float = param(0.2, "fraction of point operations that write the leaf page (SET)")
    scan_interval: int = param(20_000, "requests between the starts of two range scans (0 disables scans)")
    scan_length: int = param(1_000, "consecutive leaf pages read by one range scan")
    rate: float = param(1000.0, "mean requests per second")


class DatabaseGenerator(WorkloadGenerator):
    """Database pages: point operations pick a leaf page either near the client's previous page
    (``locality``) or by Zipf(alpha) over pages; with ``index_reads`` they first GET the
    B-tree root and the inner page above the leaf; ``write_fraction`` of them SET the leaf.
    Every ``scan_interval`` requests a range scan GETs ``scan_length`` consecutive leaves.
    Keys: leaves ``0..pages-1``, root ``pages``, inner pages ``pages+1+leaf//fanout``."""

    kind = "database"
    Params = DatabaseParams
    step = 1024

    def validate(self) -> None:
        p = self.params
        if p.pages < 1 or p.clients < 1 or p.fanout < 1 or not 0 <= p.locality <= 1 or not 0 <= p.write_fraction <= 1:
            raise ValueError("database: need pages, clients, fanout >= 1 and fractions in [0, 1]")
        if p.scan_interval and not 1 <= p.scan_length <= p.pages:
            raise ValueError("database: scan_length must be in 1..pages")

    def _generate(self) -> Iterator[np.ndarray]:
        p, rng = self.params, self.rng
        zipf = ZipfSampler(p.pages, p.alpha)
        hot_order = rng.permutation(p.pages)
        position = rng.integers(0, p.pages, p.clients)
        t = 0.0
        since_scan = 0
        while True:
            # Point operations, vectorised per step; locality is a per-client random walk, so
            # walk each client's positions in order of its operations.
            client = rng.integers(0, p.clients, self.step)
            local = rng.random(self.step) < p.locality
            jump = hot_order[zipf.sample(rng, self.step)]
            offset = rng.integers(-p.locality_window, p.locality_window + 1, self.step)
            leaves = np.empty(self.step, dtype=np.int64)
            for c in range(p.clients):
                idx = np.flatnonzero(client == c)
                if not len(idx):
                    continue
                pos = position[c]
                out = leaves[idx]
                lo, jp, off = local[idx], jump[idx], offset[idx]
                for j in range(len(idx)):
                    pos = int(np.clip(pos + off[j], 0, p.pages - 1)) if lo[j] else int(jp[j])
                    out[j] = pos
                leaves[idx] = out
                position[c] = pos
            write = rng.random(self.step) < p.write_fraction
            if p.index_reads:
                keys = np.empty((self.step, 3), dtype=np.int64)
                keys[:, 0] = p.pages
                keys[:, 1] = p.pages + 1 + leaves // p.fanout
                keys[:, 2] = leaves
                keys = keys.ravel()
                ops = np.zeros((self.step, 3), dtype=np.uint8)
                ops[:, 2] = np.where(write, OP_SET, OP_GET)
                ops = ops.ravel()
            else:
                keys = leaves
                ops = np.where(write, OP_SET, OP_GET).astype(np.uint8)
            n = len(keys)
            ts = poisson_times(rng, t, n, p.rate)
            t = float(ts[-1])
            yield make_chunk(ts, ops, keys.astype(np.uint64), p.page_size)
            since_scan += n
            if p.scan_interval and since_scan >= p.scan_interval:
                since_scan = 0
                start = int(rng.integers(0, p.pages - p.scan_length + 1))
                scan = np.arange(start, start + p.scan_length, dtype=np.uint64)
                ts = poisson_times(rng, t, len(scan), p.rate)
                t = float(ts[-1])
                yield make_chunk(ts, OP_GET, scan, p.page_size)
