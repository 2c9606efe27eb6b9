"""Web/API traffic: Zipf popularity whose hot set shifts with the time of day, plus churn of
new items that enter near the top (news, new products) and push old ones out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from workloads.generators.base import (
    CommonParams,
    WorkloadGenerator,
    ZipfSampler,
    lognormal_sizes,
    param,
    poisson_times,
)
from workloads.trace import OP_GET, OP_SET, make_chunk


@dataclass
class WebParams(CommonParams):
    objects: int = param(100_000, "catalogue size: distinct items live at any moment")
    alpha: float = param(0.9, "Zipf skew of item popularity (P(rank r) ∝ 1/r^alpha)")
    rate: float = param(100.0, "mean requests per second (before the diurnal swing)")
    day_seconds: float = param(3600.0, "length of one simulated (compressed) day in trace seconds")
    diurnal_amplitude: float = param(0.5, "request-rate swing over the day: rate*(1 + A*sin(2πt/day))")
    diurnal_swap: float = param(0.3, "fraction of the top `hot_ranks` items that differ between the "
                                     "day and the night hot set (0 = one fixed popularity order)")
    hot_ranks: int = param(1000, "size of the hot set considered by diurnal_swap and churn")
    churn_per_hour: float = param(0.02, "new items per simulated hour, as a fraction of `objects`; each "
                                        "enters at a random rank in the hot set and the coldest item retires")
    write_fraction: float = param(0.05, "fraction of requests that are writes (SET of the item)")
    size_mean: float = param(2048.0, "mean value size in bytes (lognormal per item)")
    size_sigma: float = param(1.0, "lognormal shape of value sizes (0 = all equal)")
    size_max: int = param(262_144, "largest value size in bytes")


class WebGenerator(WorkloadGenerator):
    """Web/API: Zipf(alpha) popularity over a catalogue; the day and night hot sets differ by
    ``diurnal_swap`` and their mix follows a sine over ``day_seconds``; the request rate swings
    by ``diurnal_amplitude``; ``churn_per_hour`` new items enter the hot set. Keys are item ids;
    new items get ids from ``objects`` upward."""

    kind = "web"
    Params = WebParams
    step = 2048

    def validate(self) -> None:
        p = self.params
        if p.objects < 1 or not 0 <= p.write_fraction <= 1 or not 0 <= p.diurnal_swap <= 1:
            raise ValueError("web: need objects >= 1 and write_fraction, diurnal_swap in [0, 1]")
        if not 0 <= p.diurnal_amplitude < 1:
            raise ValueError("web: diurnal_amplitude must be in [0, 1)")

    def _generate(self) -> Iterator[np.ndarray]:
        p, rng = self.params, self.rng
        zipf = ZipfSampler(p.objects, p.alpha)
        day_order = rng.permutation(p.objects).astype(np.uint64)
        night_order = day_order.copy()
        hot = min(p.hot_ranks, p.objects)
        n_swap = round(p.diurnal_swap * hot)
        if n_swap and p.objects > hot:
            # Night promotes different items into the hot set: swap them with colder ones.
            src = rng.choice(hot, n_swap, replace=False)
            dst = rng.choice(np.arange(hot, p.objects), n_swap, replace=False)
            night_order[src], night_order[dst] = day_order[dst], day_order[src]
        next_id = p.objects
        churn_debt = 0.0
        t = 0.0
        while True:
            phase = 2 * np.pi * t / p.day_seconds
            rate = p.rate * (1 + p.diurnal_amplitude * np.sin(phase))
            ts = poisson_times(rng, t, self.step, rate)
            churn_debt += (ts[-1] - t) / 3600.0 * p.churn_per_hour * p.objects
            t = float(ts[-1])
            ranks = zipf.sample(rng, self.step)
            day_weight = 0.5 + 0.5 * np.sin(phase)
            use_day = rng.random(self.step) < day_weight
            keys = np.where(use_day, day_order[ranks], night_order[ranks])
            ops = np.where(rng.random(self.step) < p.write_fraction, OP_SET, OP_GET)
            sizes = lognormal_sizes(keys, p.size_mean, p.size_sigma, 1, p.size_max, salt=p.seed)
            yield make_chunk(ts, ops, keys, sizes)
            while churn_debt >= 1.0:
                churn_debt -= 1.0
                r = int(rng.integers(0, hot))
                day_order = np.insert(day_order, r, np.uint64(next_id))[:-1]
                night_order = np.insert(night_order, r, np.uint64(next_id))[:-1]
                next_id += 1
