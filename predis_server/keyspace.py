"""Databases on top of the store backends: typed lookups, expiry, WATCH signals, eviction.

The store (``gpu/``) knows keys, values and metadata arrays; this layer adds Redis's
meaning: hits and misses, WRONGTYPE, the expired/evicted counters, invalidating WATCHed
keys on every change, and maxmemory enforcement across databases.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gpu import EvictionPolicy, StoreBackend
from gpu.interface import StoreFull

from . import errors
from .errors import CommandError
from .stats import Stats

if TYPE_CHECKING:
    from .client import Client


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


EVICT_BATCH = 16  # most keys one eviction round takes (a lowered maxmemory: many rounds)
EVICT_MIN_BATCH = 4  # fewest: each round ends with a used_memory() reading (~25 µs)


def victims_needed(excess: int, used: int, keys: int) -> int:
    """Keys to evict in one round to free ``excess`` bytes, at the average key's share of
    ``used``: EVICT_MIN_BATCH to EVICT_BATCH. A fixed 16 per round, once every ~16 stores into a
    full cache, held that store's client for 16 victims' scoring (~0.35 ms idle, the largest
    share of the prefetch bench's slowest replies); one key per round would read used_memory()
    twice per store. Four: about the cost per store of 16, a quarter of its longest pause."""
    if keys <= 0 or used <= 0:
        return EVICT_MIN_BATCH
    return max(EVICT_MIN_BATCH, min(EVICT_BATCH, -(-excess * keys // used)))


class Database:
    __slots__ = ("id", "keyspace", "store", "clock")

    def __init__(self, index: int, keyspace: Keyspace) -> None:
        self.id = index
        self.keyspace = keyspace
        self.clock = keyspace.clock
        self.store: StoreBackend = keyspace.new_store(self)

    # -- lookups --------------------------------------------------------------------------
    def lookup_read(self, key: bytes) -> object | None:
        """Read lookup: counts keyspace hits/misses and touches LRU/LFU (lookupKeyRead)."""
        ks = self.keyspace
        value = self.store.get(key, ks.now_ms or ks.source_clock(), not ks.no_touch)
        if value is None:
            ks.stats.keyspace_misses += 1
        else:
            ks.stats.keyspace_hits += 1
        return value

    def lookup_read_many(self, keys: list[bytes]) -> list[object | None]:
        """lookup_read of every key in one store call (MGET): same stats and touching."""
        ks = self.keyspace
        now = ks.now_ms or ks.source_clock()
        if ks.no_touch:
            get = self.store.get
            values = [get(key, now, False) for key in keys]
        else:
            values = self.store.get_many(keys, now)
        misses = values.count(None)
        ks.stats.keyspace_misses += misses
        ks.stats.keyspace_hits += len(values) - misses
        return values

    def lookup_write(self, key: bytes) -> object | None:
        ks = self.keyspace
        return self.store.get(key, ks.now_ms or ks.source_clock())

    def peek(self, key: bytes) -> object | None:
        """Lookup without stats or touching (TYPE, TTL, EXISTS-like internals)."""
        return self.store.get(key, self.clock(), False)

    def get_string(self, key: bytes) -> bytes | None:
        ks = self.keyspace
        value = self.store.get(key, ks.now_ms or ks.source_clock(), not ks.no_touch)
        if value is None:
            ks.stats.keyspace_misses += 1
            return None
        ks.stats.keyspace_hits += 1
        if type(value) is not bytes:
            raise CommandError(errors.WRONGTYPE)
        return value  # type: ignore[return-value]

    def get_string_for_write(self, key: bytes) -> bytes | None:
        ks = self.keyspace
        value = self.store.get(key, ks.now_ms or ks.source_clock())
        if value is not None and type(value) is not bytes:
            raise CommandError(errors.WRONGTYPE)
        return value  # type: ignore[return-value]

    def get_hash(self, key: bytes, write: bool = False) -> dict[bytes, bytes] | None:
        value = self.lookup_write(key) if write else self.lookup_read(key)
        if value is not None and type(value) is not dict:
            raise CommandError(errors.WRONGTYPE)
        return value  # type: ignore[return-value]

    def exists(self, key: bytes) -> bool:
        return self.store.contains(key, self.clock())

    # -- changes --------------------------------------------------------------------------
    def set(self, key: bytes, value: object, expire_at: int = 0, keep_ttl: bool = False) -> None:
        ks = self.keyspace
        try:
            self.store.set(key, value, ks.now_ms or ks.source_clock(), expire_at, keep_ttl)
        except StoreFull:
            raise CommandError(errors.OOM) from None
        if ks.watchers:
            ks.signal_modified(self.id, key)

    def delete(self, key: bytes) -> bool:
        if self.store.get(key, self.clock(), False) is None:
            return False
        self.store.delete(key)
        self.keyspace.signal_modified(self.id, key)
        return True

    def modified(self, key: bytes) -> None:
        """Call after changing a container value in place."""
        self.keyspace.signal_modified(self.id, key)

    def expire_at(self, key: bytes) -> int:
        return self.store.get_expire(key)

    def set_expire(self, key: bytes, expire_at: int) -> None:
        """Set an absolute expiry; a time already past deletes the key (as Redis does)."""
        if 0 < expire_at <= self.clock():
            self.store.delete(key)  # Redis deletes it as a DEL, not counted as an expiry
        else:
            self.store.set_expire(key, expire_at)
        self.keyspace.signal_modified(self.id, key)

    def flush(self) -> int:
        count = len(self.store)
        self.keyspace.signal_flushed(self.id)
        self.store.clear()
        return count

    def __len__(self) -> int:
        return len(self.store)


class Keyspace:
    """All databases, the shared counters, WATCH bookkeeping and memory enforcement."""

    def __init__(self, databases: int, backend: type[StoreBackend], stats: Stats,
                 clock: Callable[[], int] = wall_clock_ms) -> None:
        self.backend = backend
        self.stats = stats
        self.source_clock = clock
        # The time of the command being run, fixed for its whole call as Redis fixes it
        # (call() -> updateCachedTime; an EXEC's commands share it); 0 outside commands.
        self.now_ms = 0
        self.no_touch = False
        self.maxmemory = 0
        self.policy = EvictionPolicy.NOEVICTION
        self.samples = 5
        self.used_memory_seen = 0  # used_memory() as enforce_maxmemory last left it (cheap to read)
        self.lfu_log_factor = 10
        self.lfu_decay_time = 1
        # (db, key) -> clients watching it
        self.watchers: dict[tuple[int, bytes], set[Client]] = {}
        self.dbs = [Database(i, self) for i in range(databases)]
        # every database's store, for per-tick work over all of them; a store lives as long as
        # the keyspace (FLUSHALL empties it in place, SWAPDB swaps it between databases)
        self.stores = tuple(db.store for db in self.dbs)

    def clock(self) -> int:
        """Milliseconds now: the running command's time, or the wall clock outside commands."""
        return self.now_ms or self.source_clock()

    def new_store(self, db: Database) -> StoreBackend:
        store = self.backend()
        self._configure_store(store)
        self._bind(db.id, store)
        return store

    def _bind(self, db_id: int, store: StoreBackend) -> None:
        def on_expire(key: bytes) -> None:
            self.stats.expired_keys += 1
            if self.watchers:
                self.signal_modified(db_id, key)

        store.on_expire = on_expire

    def _configure_store(self, store: StoreBackend) -> None:
        store.track_lfu = self.policy.uses_lfu
        store.lfu_log_factor = self.lfu_log_factor
        store.lfu_decay_time = self.lfu_decay_time

    def configure(self, maxmemory: int, policy: str, samples: int, lfu_log_factor: int,
                  lfu_decay_time: int) -> None:
        self.maxmemory = maxmemory
        self.policy = EvictionPolicy(policy)
        self.samples = samples
        self.lfu_log_factor = lfu_log_factor
        self.lfu_decay_time = lfu_decay_time
        for db in self.dbs:
            self._configure_store(db.store)

    # -- WATCH ----------------------------------------------------------------------------
    def signal_modified(self, db_id: int, key: bytes) -> None:
        if self.watchers:
            clients = self.watchers.get((db_id, key))
            if clients:
                for client in clients:
                    client.watch_dirty = True

    def signal_flushed(self, db_id: int) -> None:
        if not self.watchers:
            return
        db = self.dbs[db_id]
        for (watched_db, key), clients in self.watchers.items():
            if watched_db == db_id and db.exists(key):
                for client in clients:
                    client.watch_dirty = True

    def watch(self, client: Client, db_id: int, key: bytes) -> None:
        self.watchers.setdefault((db_id, key), set()).add(client)
        client.watched[(db_id, key)] = True

    def unwatch_all(self, client: Client) -> None:
        for entry in client.watched:
            clients = self.watchers.get(entry)
            if clients is not None:
                clients.discard(client)
                if not clients:
                    del self.watchers[entry]
        client.watched.clear()
        client.watch_dirty = False

    # -- memory ---------------------------------------------------------------------------
    def used_memory(self) -> int:
        return sum(db.store.used_memory() for db in self.dbs if len(db.store))

    def enforce_maxmemory(self, incoming: int = 0, allowance: int = 0) -> bool:
        """Evict until under maxmemory; False when the limit still cannot be met (OOM).
        ``incoming``: the bytes of the command about to run, counted as used, as Redis counts
        the client's query buffer that holds it: a value larger than what eviction can free
        is refused with OOM rather than stored far over the limit. ``allowance``: bytes over
        maxmemory left for a later eviction (prefetched values whose eviction waits for a
        moment no client's origin read is ending, models.prefetch): only the excess past
        maxmemory + allowance is evicted now."""
        if not self.maxmemory:
            return True
        self.used_memory_seen = self.used_memory()
        used = self.used_memory_seen + incoming
        limit = self.maxmemory + allowance
        if used <= limit:
            return True
        if self.policy is EvictionPolicy.NOEVICTION:
            return False
        now = self.clock()
        while used > limit:
            candidates = [db for db in self.dbs if len(db.store)]
            if not candidates:
                return False
            # Evict from the largest database first, about as many keys as the excess needs.
            db = max(candidates, key=lambda d: len(d.store))
            count = victims_needed(used - limit, used, sum(len(d.store) for d in candidates))
            victims = db.store.evict(count, self.policy, self.samples, now)
            if not victims:
                others = [d for d in candidates if d is not db]
                victims = []
                for other in others:
                    victims = other.store.evict(count, self.policy, self.samples, now)
                    if victims:
                        db = other
                        break
                if not victims:
                    return False
            self.stats.evicted_keys += len(victims)
            if self.watchers:
                for key in victims:
                    self.signal_modified(db.id, key)
            self.used_memory_seen = self.used_memory()
            used = self.used_memory_seen + incoming
        return True

    def active_expire_cycle(self, max_slots: int = 20000) -> int:
        now = self.clock()
        return sum(len(db.store.expire_scan(now, max_slots)) for db in self.dbs if len(db.store))

    def swap(self, a: int, b: int) -> None:
        db_a, db_b = self.dbs[a], self.dbs[b]
        db_a.store, db_b.store = db_b.store, db_a.store
        self._bind(a, db_a.store)
        self._bind(b, db_b.store)
        # Clients watching keys in either db see the swap as a change (touchAllWatchedKeysInDb).
        for (db_id, key), clients in self.watchers.items():
            if db_id in (a, b):
                for client in clients:
                    client.watch_dirty = True
