"""Gaming assets: worlds made of zones on a grid whose assets load together, players moving
between neighbouring zones, shared hot assets, sessions that start and end."""

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
class GamingParams(CommonParams):
    worlds: int = param(4, "worlds (shards/realms), each a grid of zones")
    grid: int = param(6, "zones per world side: a world has grid*grid zones")
    assets_per_zone: int = param(40, "zone-specific assets, loaded together (in id order) on entering a zone")
    zone_alpha: float = param(0.8, "Zipf skew of spawn zones (hubs are popular)")
    shared_assets: int = param(200, "shared assets (characters, UI, common props) used in every zone")
    shared_per_load: int = param(10, "shared assets fetched with each zone load (Zipf over the shared pool)")
    shared_alpha: float = param(1.0, "Zipf skew of shared-asset use")
    concurrent_players: int = param(100, "players online at once; an ending session is replaced by a new one")
    session_moves: float = param(20.0, "mean zone moves per session (geometric)")
    save_prob: float = param(0.2, "probability of a player-state save (SET profile) after a move")
    asset_size_mean: float = param(8192.0, "mean asset size in bytes (lognormal per asset)")
    asset_size_sigma: float = param(1.0, "lognormal shape of asset sizes")
    profile_size: int = param(1024, "bytes of a player profile")
    rate: float = param(500.0, "mean requests per second")


class GamingGenerator(WorkloadGenerator):
    """Gaming: a session GETs the player's profile, spawns in a zone (Zipf over zones), and
    each zone entry GETs the zone's ``assets_per_zone`` assets in order plus
    ``shared_per_load`` shared assets; players move to a 4-neighbour zone of the grid, save
    (SET profile) with ``save_prob`` and at session end. Keys: zone assets
    ``zone*assets_per_zone + i`` with ``zone = world*grid*grid + row*grid + col``, then the
    shared pool, then player profiles. Tenant is the world."""

    kind = "gaming"
    Params = GamingParams

    def validate(self) -> None:
        p = self.params
        if min(p.worlds, p.grid, p.assets_per_zone, p.concurrent_players) < 1 or p.session_moves <= 0:
            raise ValueError("gaming: worlds, grid, assets_per_zone, concurrent_players >= 1; session_moves > 0")
        if p.shared_per_load > p.shared_assets:
            raise ValueError("gaming: shared_per_load cannot exceed shared_assets")

    @property
    def zones(self) -> int:
        return self.params.worlds * self.params.grid ** 2

    @property
    def shared_base(self) -> int:
        return self.zones * self.params.assets_per_zone

    @property
    def profile_base(self) -> int:
        return self.shared_base + self.params.shared_assets

    def zone_of(self, keys: np.ndarray) -> np.ndarray:
        """Zone of each zone-asset key (-1 for shared assets and profiles)."""
        keys = np.asarray(keys, dtype=np.int64)
        return np.where(keys < self.shared_base, keys // self.params.assets_per_zone, -1)

    def neighbours(self, zone: int) -> list[int]:
        g = self.params.grid
        world, cell = divmod(zone, g * g)
        r, c = divmod(cell, g)
        out = [(r + dr, c + dc) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))]
        return [world * g * g + rr * g + cc for rr, cc in out if 0 <= rr < g and 0 <= cc < g]

    def _zone_load(self, zone: int, shared: ZipfSampler | None) -> np.ndarray:
        p = self.params
        own = np.arange(zone * p.assets_per_zone, (zone + 1) * p.assets_per_zone, dtype=np.uint64)
        if not p.shared_per_load or shared is None:
            return own
        common = np.unique(shared.sample(self.rng, p.shared_per_load)).astype(np.uint64) + np.uint64(self.shared_base)
        return np.concatenate([common, own])

    def _generate(self) -> Iterator[np.ndarray]:
        p, rng = self.params, self.rng
        spawn = ZipfSampler(p.grid * p.grid, p.zone_alpha)
        shared = ZipfSampler(p.shared_assets, p.shared_alpha) if p.shared_assets else None
        next_player = 0
        # Per active player: [player id, world, zone, moves left]
        players: list[list[int]] = []
        t = 0.0
        while True:
            keys_parts: list[np.ndarray] = []
            ops_parts: list[np.ndarray] = []
            tenant_parts: list[np.ndarray] = []

            def emit(keys: np.ndarray, op: int, world: int, keys_parts: list[np.ndarray] = keys_parts,
                     ops_parts: list[np.ndarray] = ops_parts, tenant_parts: list[np.ndarray] = tenant_parts) -> None:
                keys_parts.append(keys)
                ops_parts.append(np.full(len(keys), op, dtype=np.uint8))
                tenant_parts.append(np.full(len(keys), world, dtype=np.uint16))

            for _ in range(32):
                while len(players) < p.concurrent_players:
                    world = int(rng.integers(0, p.worlds))
                    zone = world * p.grid ** 2 + int(spawn.sample(rng, 1)[0])
                    moves = int(rng.geometric(1.0 / p.session_moves))
                    pid = next_player
                    next_player += 1
                    players.append([pid, world, zone, moves])
                    emit(np.array([self.profile_base + pid], dtype=np.uint64), OP_GET, world)
                    emit(self._zone_load(zone, shared), OP_GET, world)
                i = int(rng.integers(0, len(players)))
                pid, world, zone, moves = players[i]
                nbrs = self.neighbours(zone)
                zone = nbrs[int(rng.integers(0, len(nbrs)))] if nbrs else zone
                emit(self._zone_load(zone, shared), OP_GET, world)
                profile = np.array([self.profile_base + pid], dtype=np.uint64)
                moves -= 1
                if moves <= 0:
                    emit(profile, OP_SET, world)
                    players[i] = players[-1]
                    players.pop()
                else:
                    if rng.random() < p.save_prob:
                        emit(profile, OP_SET, world)
                    players[i] = [pid, world, zone, moves]
            keys = np.concatenate(keys_parts)
            ops = np.concatenate(ops_parts)
            ts = poisson_times(rng, t, len(keys), p.rate)
            t = float(ts[-1])
            sizes = lognormal_sizes(keys, p.asset_size_mean, p.asset_size_sigma, 1, 1 << 24, salt=p.seed)
            sizes[keys >= self.profile_base] = p.profile_size
            yield make_chunk(ts, ops, keys, sizes, np.concatenate(tenant_parts))
