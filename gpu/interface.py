"""The batch-first store interface every backend implements.

A store holds one database's keys. Values are ``bytes`` (Redis strings) or host-side
Python containers for other types (a ``dict`` for a hash); the GPU backend keeps string
values in device memory and other types on the host. Per-key metadata lives in arrays
indexed by slot so that expiry sweeps, eviction scoring and model scoring are vectorised:

========== ======= ===========================================================
array      dtype   meaning
========== ======= ===========================================================
expire_at  int64   absolute expiry time in ms since the epoch; 0 = no expiry
last_access uint32 last access time, ms clock modulo 2**32 (LRU, OBJECT IDLETIME)
lfu_count  uint8   Redis's logarithmic LFU counter (OBJECT FREQ)
lfu_time   uint16  minutes clock of the last LFU decrement
size       uint32  bytes the value occupies (strings: length)
value_loc  uint32  block of a string packed in the slab (gpu/slabs.py); 0: a Python object
reuse      float32 predicted reuse score written by the model (allkeys-predictive)
flags      uint8   bit 0: loaded by prefetch and not yet read
========== ======= ===========================================================

Times are passed in (``now_ms``) so callers and tests control the clock.
Lazy expiry happens inside lookups: an expired key is deleted and ``on_expire(key)`` is
called, so the keyspace can count it and invalidate WATCHes.
"""
from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence

FLAG_PREFETCHED = 1


class StoreFull(MemoryError):
    """The backend could not allocate memory (device OOM); the write fails, data stays intact."""


class EvictionPolicy(enum.Enum):
    NOEVICTION = "noeviction"
    ALLKEYS_LRU = "allkeys-lru"
    ALLKEYS_LFU = "allkeys-lfu"
    ALLKEYS_RANDOM = "allkeys-random"
    VOLATILE_LRU = "volatile-lru"
    VOLATILE_LFU = "volatile-lfu"
    VOLATILE_RANDOM = "volatile-random"
    VOLATILE_TTL = "volatile-ttl"
    ALLKEYS_PREDICTIVE = "allkeys-predictive"

    @property
    def volatile_only(self) -> bool:
        return self.value.startswith("volatile-")

    @property
    def uses_lfu(self) -> bool:
        return self.value.endswith("-lfu")


class StoreBackend(ABC):
    """One database's keys and values; see the module docstring for the metadata arrays."""

    name: str = "abstract"
    #: called with the key when lazy or active expiry deletes it
    on_expire: Callable[[bytes], None] | None = None
    #: LFU parameters (CONFIG lfu-log-factor / lfu-decay-time) and whether accesses update LFU
    lfu_log_factor: int = 10
    lfu_decay_time: int = 1
    track_lfu: bool = False
    def native_view(self) -> tuple | None:
        """The host layout predis_server/_fastpath.c works on (see NumpyStore), or None
        where commands must take the Python path."""
        return None

    # -- batch operations (the primary interface) ---------------------------------------
    @abstractmethod
    def get_many(self, keys: Sequence[bytes], now_ms: int) -> list[object | None]:
        """Values for ``keys`` (None where missing or expired), touching access metadata."""

    @abstractmethod
    def set_many(self, keys: Sequence[bytes], values: Sequence[object], now_ms: int,
                 expire_at: Sequence[int] | None = None) -> None:
        """Store values; ``expire_at`` (ms, 0 = none) per key, or None to clear expiry."""

    @abstractmethod
    def delete_many(self, keys: Iterable[bytes]) -> int:
        """Delete keys; returns how many existed."""

    @abstractmethod
    def expire_scan(self, now_ms: int, max_slots: int) -> list[bytes]:
        """Delete expired keys among the next ``max_slots`` slots; returns the deleted keys."""

    @abstractmethod
    def evict(self, count: int, policy: EvictionPolicy, samples: int, now_ms: int) -> list[bytes]:
        """Choose up to ``count`` victims by ``policy`` (sampling ``samples`` per victim),
        delete them and return their keys. Returns fewer when nothing is eligible."""

    # -- single-key operations (batches of one, kept cheap) -------------------------------
    @abstractmethod
    def get(self, key: bytes, now_ms: int, touch: bool = True) -> object | None:
        """The value or None; expired keys are deleted here. ``touch`` updates LRU/LFU."""

    @abstractmethod
    def set(self, key: bytes, value: object, now_ms: int, expire_at: int = 0,
            keep_ttl: bool = False) -> None:
        """Insert or overwrite; expiry is cleared unless ``keep_ttl`` or ``expire_at`` given."""

    @abstractmethod
    def delete(self, key: bytes) -> bool: ...

    @abstractmethod
    def contains(self, key: bytes, now_ms: int) -> bool:
        """Membership without touching access metadata (expired keys are deleted)."""

    @abstractmethod
    def get_expire(self, key: bytes) -> int:
        """Absolute expiry in ms; 0 when the key has none (callers check membership first)."""

    @abstractmethod
    def set_expire(self, key: bytes, expire_at: int) -> None:
        """Set (ms) or clear (0) an existing key's expiry."""

    @abstractmethod
    def add_size(self, key: bytes, delta: int) -> None:
        """Account ``delta`` bytes for a value mutated in place (hashes)."""

    # -- metadata -------------------------------------------------------------------------
    @abstractmethod
    def idle_ms(self, key: bytes, now_ms: int) -> int: ...

    @abstractmethod
    def lfu_frequency(self, key: bytes, now_ms: int) -> int: ...

    @abstractmethod
    def set_reuse_scores(self, keys: Sequence[bytes], scores: Sequence[float]) -> None:
        """Write model scores for ``allkeys-predictive``."""

    @abstractmethod
    def mark_prefetched(self, key: bytes, prefetched: bool) -> None: ...

    @abstractmethod
    def is_prefetched(self, key: bytes) -> bool: ...

    # -- iteration and size ---------------------------------------------------------------
    @abstractmethod
    def scan(self, cursor: int, count: int) -> tuple[int, list[bytes]]:
        """Keys in slot order from ``cursor``; next cursor is 0 when the walk is complete."""

    @abstractmethod
    def keys(self) -> list[bytes]: ...

    @abstractmethod
    def random_key(self) -> bytes | None: ...

    @abstractmethod
    def __len__(self) -> int: ...

    @property
    @abstractmethod
    def volatile_count(self) -> int:
        """How many keys have an expiry (INFO keyspace ``expires=``)."""

    @abstractmethod
    def used_memory(self) -> int:
        """Bytes this store really holds: keys, values, index and metadata arrays."""

    @abstractmethod
    def clear(self) -> None: ...
