"""HFT / market data: a symbol universe with skewed popularity, bursts at the opening and
closing auctions, per-symbol groups of keys (quote, last trade, order-book levels) read
together, and writes of fresh ticks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from workloads.generators.base import CommonParams, WorkloadGenerator, ZipfSampler, param, poisson_times
from workloads.trace import OP_GET, OP_SET, make_chunk


@dataclass
class HFTParams(CommonParams):
    symbols: int = param(5_000, "symbols in the universe")
    alpha: float = param(1.1, "Zipf skew of symbol popularity")
    book_depth: int = param(5, "order-book levels per symbol; each symbol has keys quote, trade, "
                               "book level 1..book_depth (symbol*(2+book_depth) + field)")
    group_read_prob: float = param(0.6, "probability that a read event reads the symbol's whole group "
                                        "(quote, trade, every book level, in that order) instead of the quote")
    write_fraction: float = param(0.3, "fraction of events that are tick writes (SET quote and trade)")
    rate: float = param(200.0, "mean events per second outside the auctions")
    session_seconds: float = param(900.0, "trading session length (compressed: a real one is 23400 s); "
                                          "the trace runs session after session")
    auction_seconds: float = param(60.0, "length of the opening and of the closing auction window")
    burst_factor: float = param(5.0, "event-rate multiplier inside the auction windows")
    quote_size: int = param(64, "bytes of a quote value")
    trade_size: int = param(48, "bytes of a trade value")
    book_level_size: int = param(256, "bytes of one order-book level")


class HFTGenerator(WorkloadGenerator):
    """HFT / market data: events pick a symbol by Zipf(alpha) popularity; a read event GETs the
    quote or, with ``group_read_prob``, the whole group (quote, trade, book levels) back to
    back; a write event SETs quote and trade. The event rate is ``burst_factor`` times higher
    in the first and last ``auction_seconds`` of each session. Symbol ranks are scattered
    over ids by a fixed permutation."""

    kind = "hft"
    Params = HFTParams
    step = 1024

    def validate(self) -> None:
        p = self.params
        if p.symbols < 1 or p.book_depth < 0 or not 0 <= p.write_fraction <= 1 or not 0 <= p.group_read_prob <= 1:
            raise ValueError("hft: need symbols >= 1, book_depth >= 0, fractions in [0, 1]")
        if 2 * p.auction_seconds > p.session_seconds or p.burst_factor <= 0:
            raise ValueError("hft: the two auctions must fit in the session and burst_factor > 0")

    @property
    def fields(self) -> int:
        return 2 + self.params.book_depth

    def in_auction(self, t: np.ndarray | float) -> np.ndarray:
        p = self.params
        pos = np.mod(t, p.session_seconds)
        return (pos < p.auction_seconds) | (pos >= p.session_seconds - p.auction_seconds)

    def _generate(self) -> Iterator[np.ndarray]:
        p, rng = self.params, self.rng
        zipf = ZipfSampler(p.symbols, p.alpha)
        order = rng.permutation(p.symbols).astype(np.uint64)
        f = self.fields
        field_sizes = np.array([p.quote_size, p.trade_size] + [p.book_level_size] * p.book_depth, dtype=np.uint32)
        t = 0.0
        while True:
            # Piecewise-constant rate over a step of events; steps are short next to an auction.
            rate = p.rate * (p.burst_factor if self.in_auction(t) else 1.0)
            ev_t = poisson_times(rng, t, self.step, rate)
            t = float(ev_t[-1])
            sym = order[zipf.sample(rng, self.step)]
            is_write = rng.random(self.step) < p.write_fraction
            is_group = ~is_write & (rng.random(self.step) < p.group_read_prob)
            n_keys = np.where(is_write, 2, np.where(is_group, f, 1))
            idx = np.repeat(np.arange(self.step), n_keys)
            # Field number within each event: 0, 1, 2... restarting at every event.
            starts = np.cumsum(n_keys) - n_keys
            field_no = np.arange(len(idx)) - np.repeat(starts, n_keys)
            keys = sym[idx] * np.uint64(f) + field_no.astype(np.uint64)
            ops = np.where(is_write[idx], OP_SET, OP_GET)
            # Keys of one event share its time plus a microsecond per key, so order is kept.
            ts = np.maximum.accumulate(ev_t[idx] + field_no * 1e-6)
            yield make_chunk(ts, ops, keys, field_sizes[field_no])
