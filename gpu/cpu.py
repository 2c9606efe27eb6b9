"""The CPU store: a dict from key to slot, values packed in slabs, metadata in NumPy arrays.

Strings of up to ``slabs.PACKED_MAX`` bytes are copied into ``ValueSlabs`` (a location per
slot in ``value_loc``, the length in ``size``); other values (hashes, long strings) stay
Python objects in a dict by slot.

Slots never move while a key lives (freed slots are reused), so SCAN cursors are slot
numbers and stay valid while the table changes, as Redis's reverse-binary cursor does.
Scalar access to the arrays goes through memoryviews, which are several times cheaper
than NumPy item access; vectorised work (expiry sweeps, eviction) uses the arrays.
"""
from __future__ import annotations

import random
import sys
from collections.abc import Iterable, Sequence

import numpy as np

from .interface import FLAG_PREFETCHED, EvictionPolicy, StoreBackend
from .scoring import best_victims, victim_scores
from .slabs import BLOCK, PACKED_MAX, ValueSlabs

LFU_INIT_VAL = 5
BULK_EVICT = 256  # evictions of at least this many keys score the whole keyspace at once
_SCORED = ("expire_at", "last_access", "lfu_count", "lfu_time", "reuse", "flags", "live")
_IN_CLASS = BLOCK - 1  # (n + _IN_CLASS) | _IN_CLASS is equal for lengths of one size class
CLOCK_MASK = 0xFFFFFFFF  # last_access keeps the low 32 bits of the ms clock, as Redis keeps 24 of s
_INT_OBJECT_BYTES = sys.getsizeof(10**6)  # a slot number above the small-int cache
_BYTES_HEADER = sys.getsizeof(b"")  # sys.getsizeof(key) is this plus len(key): no call per new key
_META_DTYPES = {
    "expire_at": np.int64,
    "last_access": np.uint32,  # ms clock modulo 2**32 (wraps every 49.7 days; see with_access_times)
    "lfu_count": np.uint8,
    "lfu_time": np.uint16,
    "size": np.uint32,  # packed: the value's length; object: its accounted bytes
    "value_loc": np.uint32,  # block in the slabs; 0: the value is an object in _values
    "reuse": np.float32,
    "flags": np.uint8,
}


def with_access_times(xp, meta: dict, now_ms: int) -> dict:
    """``meta`` with ``last_access`` as absolute ms (now minus idle time) for scoring: the
    stored clock keeps 32 bits, so order and idle times hold for keys idle under 49.7 days."""
    idle = (now_ms - meta["last_access"].astype(xp.int64)) & CLOCK_MASK
    return {**meta, "last_access": now_ms - idle}


def value_size(value: object) -> int:
    """Bytes a value object occupies on the host (containers: shallow + items)."""
    if type(value) is bytes:
        return sys.getsizeof(value)
    if type(value) is dict:
        return sys.getsizeof(value) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in value.items())
    return sys.getsizeof(value)


# predis_server/fastpath.py sets this when its C extension is built: the C side keeps the last
# store view it used open between calls (with the buffers of the arrays and the region), and this
# lets go of it when the store stops using that view.
forget_native_view = None


class NumpyStore(StoreBackend):
    name = "cpu"
    #: longest string packed in the slabs (the GPU store packs longer ones, gpu/cuda.py)
    packed_max = PACKED_MAX
    #: bytes a value kept as a Python object is accounted for
    value_size = staticmethod(value_size)

    def __init__(self, capacity: int = 64) -> None:
        self.on_expire = None
        self._rng = random.Random(0x5EED)
        self._alloc(capacity)

    # -- storage layout -------------------------------------------------------------------
    def _alloc(self, capacity: int) -> None:
        self._drop_native_view()  # the C side must let go of the region before it closes
        if getattr(self, "_slabs", None) is not None:
            self._slabs.close()  # FLUSHALL gives the packed values' memory back at once
        # the same container objects for the store's life, emptied in place (FLUSHALL): the
        # server freezes them out of the cyclic GC's passes at start-up (predis_server/gc_policy.py)
        if hasattr(self, "_index"):
            for container in (self._index, self._keys, self._values, self._free):
                container.clear()
        else:
            self._index: dict[bytes, int] = {}
            self._keys: list[bytes | None] = []
            self._values: dict[int, object] = {}  # slot -> value not packed in the slabs
            self._free: list[int] = []
        # reserved on the first packed value: 16 empty databases reserve no address space
        self._slabs: ValueSlabs | None = None
        self._region = None
        # keys + object values (packed values: self._slabs), in an array the C fast path adds
        # its new keys to (fastpath_c/slabs.h insert_new)
        self.counts = np.zeros(1, dtype=np.int64)
        self._count = memoryview(self.counts)
        self._volatile = 0
        self._capacity = 0
        for name, dtype in _META_DTYPES.items():
            setattr(self, name, np.zeros(0, dtype=dtype))
        self.live = np.zeros(0, dtype=bool)
        self._grow(max(capacity, 16))

    def _grow(self, capacity: int) -> None:
        for name in (*_META_DTYPES, "live"):
            old = getattr(self, name)
            new = self._host_array(name, capacity, old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)
        self._capacity = capacity
        self._drop_native_view()
        self._exp = memoryview(self.expire_at)
        self._atime = memoryview(self.last_access)
        self._lfu = memoryview(self.lfu_count)
        self._lfu_t = memoryview(self.lfu_time)
        self._size = memoryview(self.size)
        self._loc = memoryview(self.value_loc)
        self._flags = memoryview(self.flags)
        self._live = memoryview(self.live)

    def _host_array(self, name: str, capacity: int, dtype) -> np.ndarray:
        """A zeroed per-slot array (the GPU store adds its key arrays through this)."""
        return np.zeros(capacity, dtype=dtype)

    @property
    def _data_bytes(self) -> int:
        return self._count[0]

    @_data_bytes.setter
    def _data_bytes(self, value: int) -> None:
        self._count[0] = value

    def _new_slot(self, key: bytes) -> int:
        if self._free:
            slot = self._free.pop()
            self._keys[slot] = key
        else:
            slot = len(self._keys)
            if slot >= self._capacity:
                self._grow(self._capacity * 2)
            self._keys.append(key)
        self._index[key] = slot
        self._live[slot] = True
        self._count[0] += _BYTES_HEADER + len(key)
        return slot

    def _open_slabs(self) -> ValueSlabs:
        self._slabs = ValueSlabs()
        self._region = self._slabs.region
        self._drop_native_view()
        return self._slabs

    def _forget_value(self, slot: int) -> None:
        loc = self._loc[slot]
        if loc:
            self._slabs.release(loc, self._size[slot])  # type: ignore[union-attr]
            self._loc[slot] = 0
        else:
            self._data_bytes -= self._size[slot]
            self._values.pop(slot, None)

    def _drop(self, key: bytes, slot: int) -> None:
        del self._index[key]
        self._data_bytes -= _BYTES_HEADER + len(key)
        self._forget_value(slot)
        if self._exp[slot]:
            self._volatile -= 1
            self._exp[slot] = 0
        self._keys[slot] = None
        self._live[slot] = False
        self._flags[slot] = 0
        self.reuse[slot] = 0.0
        self._free.append(slot)

    # -- access metadata ------------------------------------------------------------------
    def _touch(self, slot: int, now_ms: int) -> None:
        self._atime[slot] = now_ms & CLOCK_MASK
        if self.track_lfu:
            self._lfu_update(slot, now_ms)

    def _lfu_update(self, slot: int, now_ms: int) -> None:
        counter = self._lfu_decayed(slot, now_ms)
        if counter < 255:
            base = max(counter - LFU_INIT_VAL, 0)
            if self._rng.random() < 1.0 / (base * self.lfu_log_factor + 1):
                counter += 1
        self._lfu[slot] = counter
        self._lfu_t[slot] = (now_ms // 60000) & 0xFFFF

    def _lfu_decayed(self, slot: int, now_ms: int) -> int:
        counter = self._lfu[slot]
        if self.lfu_decay_time:
            elapsed = ((now_ms // 60000) - self._lfu_t[slot]) & 0xFFFF
            periods = elapsed // self.lfu_decay_time
            counter = max(counter - periods, 0)
        return counter

    def _expired(self, slot: int, now_ms: int) -> bool:
        exp = self._exp[slot]
        return 0 < exp <= now_ms

    def _expire(self, key: bytes, slot: int) -> None:
        self._drop(key, slot)
        if self.on_expire is not None:
            self.on_expire(key)

    # -- single-key operations ------------------------------------------------------------
    def get(self, key: bytes, now_ms: int, touch: bool = True) -> object | None:
        slot = self._index.get(key)
        if slot is None:
            return None
        if self._volatile and self._expired(slot, now_ms):
            self._expire(key, slot)
            return None
        if touch:
            self._atime[slot] = now_ms & CLOCK_MASK
            if self.track_lfu:
                self._lfu_update(slot, now_ms)
        loc = self._loc[slot]
        if loc:
            off = loc * BLOCK
            return self._region[off: off + self._size[slot]]
        return self._values[slot]

    def contains(self, key: bytes, now_ms: int) -> bool:
        return self.get(key, now_ms, touch=False) is not None

    def set(self, key: bytes, value: object, now_ms: int, expire_at: int = 0,
            keep_ttl: bool = False) -> int:
        """Store ``value`` under ``key``; its slot (subclasses mirror the write there)."""
        slot = self._index.get(key)
        if slot is None:
            slot = self._new_slot(key)
            self._lfu[slot] = LFU_INIT_VAL
            self._lfu_t[slot] = (now_ms // 60000) & 0xFFFF
            loc = 0
        else:
            if self._flags[slot]:
                self._flags[slot] = 0
            loc = self._loc[slot]
            # a packed string replaced by one of the same size class (SET of a same-sized
            # value, INCR): overwritten in place, no free-list round trip
            if loc and type(value) is bytes and (len(value) + _IN_CLASS) | _IN_CLASS \
                    == (self._size[slot] + _IN_CLASS) | _IN_CLASS:
                off = loc * BLOCK
                self._region[off: off + len(value)] = value
                self._size[slot] = len(value)
            else:
                self._forget_value(slot)
                loc = 0
        if not loc:
            loc = type(value) is bytes and len(value) <= self.packed_max \
                and (self._slabs or self._open_slabs()).store(value)
            if loc:
                self._loc[slot] = loc
                self._size[slot] = len(value)
            else:
                size = self.value_size(value)
                self._values[slot] = value
                self._size[slot] = size
                self._data_bytes += size
        self._atime[slot] = now_ms & CLOCK_MASK
        # With no volatile key every slot's expiry is 0 already: nothing to read or write.
        if not keep_ttl and (expire_at or self._volatile):
            old = self._exp[slot]
            if old and not expire_at:
                self._volatile -= 1
            elif expire_at and not old:
                self._volatile += 1
            self._exp[slot] = expire_at
        return slot

    def delete(self, key: bytes) -> bool:
        slot = self._index.get(key)
        if slot is None:
            return False
        self._drop(key, slot)
        return True

    def get_expire(self, key: bytes) -> int:
        slot = self._index.get(key)
        return 0 if slot is None else self._exp[slot]

    def set_expire(self, key: bytes, expire_at: int) -> None:
        slot = self._index[key]
        old = self._exp[slot]
        if old and not expire_at:
            self._volatile -= 1
        elif expire_at and not old:
            self._volatile += 1
        self._exp[slot] = expire_at

    def add_size(self, key: bytes, delta: int) -> None:
        """A container value changed in place (never a packed string)."""
        slot = self._index[key]
        self._data_bytes += delta
        self._size[slot] = max(0, self._size[slot] + delta)

    # -- the C fast path -------------------------------------------------------------------
    def native_view(self) -> tuple | None:
        """What predis_server/_fastpath.c reads and writes: the index, the object values, the
        metadata arrays and the packed region. Built per call: a write on the Python path may
        replace the arrays (growth) or open the region. None while LFU counters must be
        updated (their random increment stays in Python)."""
        if self.track_lfu:
            return None
        view = self._native
        if view is None:  # built once per layout change (_grow, _open_slabs, _alloc: _drop_native_view)
            view = self._native = self._build_native_view()
        return view

    def _drop_native_view(self) -> None:
        """The layout changed (or is about to): the next native_view() builds a new view."""
        view, self._native = getattr(self, "_native", None), None
        if view is not None and forget_native_view is not None:
            forget_native_view(view)

    def _build_native_view(self) -> tuple:
        # the memoryviews: the C side takes their buffers faster than the arrays'. Then what
        # a new key's insert writes (as set() does for one): the key list, the free slots,
        # live, the LFU fields, the byte count and the slabs' state and free lists.
        slabs = self._slabs
        return (self._index, self._values, self._exp, self._atime, self._loc, self._size,
                self._flags, self._region, self._keys, self._free, self._live, self._lfu,
                self._lfu_t, self._count, slabs and slabs._state, slabs and slabs.free)

    # -- batch operations -----------------------------------------------------------------
    def get_many(self, keys: Sequence[bytes], now_ms: int) -> list[object | None]:
        # NumpyStore.get explicitly: a subclass's get may fetch device values one by one,
        # while get_many callers want its raw slots' values to gather them in one go.
        if self._volatile or self.track_lfu:
            get = NumpyStore.get
            return [get(self, k, now_ms) for k in keys]
        # No key can be expired and only LRU time to set: one dict probe and one store a key.
        slots = list(map(self._index.get, keys))
        values = self._values
        atime, locs, sizes, region = self._atime, self._loc, self._size, self._region
        now_ms &= CLOCK_MASK
        out: list[object | None] = []
        append = out.append
        for slot in slots:
            if slot is None:
                append(None)
                continue
            atime[slot] = now_ms
            loc = locs[slot]
            if loc:
                off = loc * BLOCK
                append(region[off: off + sizes[slot]])
            else:
                append(values[slot])
        return out

    def set_many(self, keys: Sequence[bytes], values: Sequence[object], now_ms: int,
                 expire_at: Sequence[int] | None = None) -> None:
        if expire_at is None:
            for key, value in zip(keys, values):
                self.set(key, value, now_ms)
        else:
            for key, value, exp in zip(keys, values, expire_at):
                self.set(key, value, now_ms, exp)

    def delete_many(self, keys: Iterable[bytes]) -> int:
        return sum(1 for key in keys if self.delete(key))

    def expire_scan(self, now_ms: int, max_slots: int) -> list[bytes]:
        if not self._volatile:
            return []
        n = len(self._keys)
        start = getattr(self, "_expire_cursor", 0)
        if start >= n:
            start = 0
        end = min(n, start + max_slots)
        self._expire_cursor = end if end < n else 0
        window = self.expire_at[start:end]
        dead = np.flatnonzero((window > 0) & (window <= now_ms)) + start
        expired = []
        for slot in dead.tolist():
            key = self._keys[slot]
            if key is not None:
                self._expire(key, slot)
                expired.append(key)
        return expired

    def evict(self, count: int, policy: EvictionPolicy, samples: int, now_ms: int) -> list[bytes]:
        victims: list[bytes] = []
        if policy is EvictionPolicy.NOEVICTION:
            return victims
        if count >= BULK_EVICT:
            return self._evict_bulk(count, policy, now_ms)
        n = len(self._keys)
        for _ in range(count):
            slots = self._sample(policy, max(samples, 1), n)
            if slots.size == 0:
                break
            victim = int(slots[self._victim_index(policy, slots, now_ms)])
            key = self._keys[victim]
            if key is None:
                break
            self._drop(key, victim)
            victims.append(key)
        return victims

    def _scoring_arrays(self, now_ms: int):
        """(array namespace, metadata arrays) for whole-keyspace scoring; the GPU store's are on the device."""
        n = len(self._keys)
        return np, with_access_times(np, {name: getattr(self, name)[:n] for name in _SCORED}, now_ms)

    def _evict_bulk(self, count: int, policy: EvictionPolicy, now_ms: int) -> list[bytes]:
        """Many victims at once (a lowered maxmemory): score every key and take the best exactly."""
        xp, meta = self._scoring_arrays(now_ms)
        scores = victim_scores(xp, meta, policy, now_ms, self.lfu_decay_time, self._rng.randrange(1 << 30))
        slots = best_victims(xp, scores, count)
        victims = []
        for slot in (slots.tolist() if xp is np else xp.asnumpy(slots).tolist()):
            key = self._keys[slot]
            if key is not None:
                self._drop(key, slot)
                victims.append(key)
        return victims

    def _sample(self, policy: EvictionPolicy, samples: int, n: int) -> np.ndarray:
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        live = self.live[:n]
        if policy.volatile_only:
            eligible = live & (self.expire_at[:n] > 0)
        else:
            eligible = live
        # Rejection sampling is cheap while the table is dense; fall back to the exact set.
        draw = np.asarray([self._rng.randrange(n) for _ in range(samples * 4)], dtype=np.int64)
        picked = draw[eligible[draw]][:samples]
        if picked.size == 0:
            everyone = np.flatnonzero(eligible)
            if everyone.size == 0:
                return everyone
            picked = everyone[[self._rng.randrange(everyone.size) for _ in range(min(samples, everyone.size))]]
        return picked

    def _victim_index(self, policy: EvictionPolicy, slots: np.ndarray, now_ms: int) -> int:
        """Index in ``slots`` of the sampled key to evict: the same scores as a bulk eviction."""
        if policy in (EvictionPolicy.ALLKEYS_RANDOM, EvictionPolicy.VOLATILE_RANDOM):
            return 0
        meta = with_access_times(np, {name: getattr(self, name)[slots] for name in _SCORED}, now_ms)
        return int(np.argmin(victim_scores(np, meta, policy, now_ms, self.lfu_decay_time)))

    # -- metadata -------------------------------------------------------------------------
    def idle_ms(self, key: bytes, now_ms: int) -> int:
        return (now_ms - self._atime[self._index[key]]) & CLOCK_MASK

    def lfu_frequency(self, key: bytes, now_ms: int) -> int:
        return self._lfu_decayed(self._index[key], now_ms)

    def set_reuse_scores(self, keys: Sequence[bytes], scores: Sequence[float]) -> None:
        index = self._index
        pairs = [(index[k], s) for k, s in zip(keys, scores) if k in index]
        if pairs:
            slots, values = zip(*pairs)
            self.reuse[list(slots)] = values

    def mark_prefetched(self, key: bytes, prefetched: bool) -> None:
        slot = self._index.get(key)
        if slot is not None:
            self._flags[slot] = FLAG_PREFETCHED if prefetched else 0

    def is_prefetched(self, key: bytes) -> bool:
        slot = self._index.get(key)
        return slot is not None and bool(self._flags[slot] & FLAG_PREFETCHED)

    # -- iteration and size ---------------------------------------------------------------
    def scan(self, cursor: int, count: int) -> tuple[int, list[bytes]]:
        keys = self._keys
        n = len(keys)
        end = min(n, cursor + max(count, 1))
        found = [k for k in keys[cursor:end] if k is not None]
        return (end if end < n else 0), found

    def keys(self) -> list[bytes]:
        return list(self._index)

    def random_key(self) -> bytes | None:
        if not self._index:
            return None
        n = len(self._keys)
        for _ in range(64):
            key = self._keys[self._rng.randrange(n)]
            if key is not None:
                return key
        return self._rng.choice(list(self._index))

    def __len__(self) -> int:
        return len(self._index)

    @property
    def volatile_count(self) -> int:
        return self._volatile

    def used_memory(self) -> int:
        arrays = sum(getattr(self, name).nbytes for name in (*_META_DTYPES, "live"))
        slot_ints = max(0, len(self._index) - 257) * _INT_OBJECT_BYTES
        containers = (sys.getsizeof(self._index) + sys.getsizeof(self._keys)
                      + sys.getsizeof(self._values) + sys.getsizeof(self._free) + 8 * len(self._free))
        packed = self._slabs.memory_bytes() if self._slabs is not None else 0
        return self._data_bytes + packed + arrays + slot_ints + containers

    def clear(self) -> None:
        self._alloc(64)
