"""The GPU store: the host's packed region and slot arrays mirrored on the device, a hash index
there, and CuPy kernels over them.

Layout
------
* **Host side**: everything the CPU store holds (key -> slot dict, key list, metadata arrays,
  values), with every string shorter than BIG_VALUE packed in the slabs' region
  (``gpu/slabs.py``; the CPU store packs only up to PACKED_MAX) and every key's bytes packed
  there too (``key_loc``/``key_len`` per slot, uint32 as ``value_loc``). Single commands and
  pipelines read the host copy: a device round trip per event-loop tick costs more than a
  Python server spends on a whole pipeline (bench/results/store/ab_servers.md).
* **Device mirror** (``gpu/mirror.py``): the region's used part and the per-slot arrays a
  device read needs (``value_loc``, ``size``, ``key_loc``, ``key_len``, ``live``), copied
  page by page as writes dirty them. Values of BIG_VALUE bytes or more are not packed: each
  gets a block of the device arena (``gpu/arena.py``), allocated and filled when written
  (``d_big_off``/``d_big_len``); hashes and other non-strings stay on the host only.
* **Device hash index**: open addressing over 64-bit key hashes (``t_hash``/``t_slot``),
  verified against the full key bytes in the mirror, so collisions never give wrong answers
  (``gpu/kernels.py``). ``d_khash``/``d_indexed`` record what each slot's entry was made from.

A write changes the host copy and marks the pages it touched (the C fast path likewise), and
nothing else: no per-slot stage, log or Python call. ``sync`` copies the dirty pages (slot
pages first) and runs one kernel, ``reconcile``, over the range of dirty slot pages: a slot
whose key went or changed loses its index entry, a live one without an entry gets one,
hashed from the mirrored bytes. The host never waits for the device in a sync and never
reads device data back. ``sync`` runs before every device read (the batch APIs:
``lookup_packed``, ``gather_device``, ``get_many_packed``), and at the end of an event-loop
tick (``flush()``) once the oldest change is ``gpu-sync-interval`` old (1 s), so one sync serves
the writes of many ticks. (No trigger by the number of dirty pages: the marks take no memory that grows, and
a sync's CPU cost is mostly per copy, not per page, so syncing more often only costs more.)

Device out-of-memory fails the write that needs the space and nothing else: a write that may
take region space beyond the mirrored part grows the mirror first (the slabs' LIMIT is
that part's end: the C path leaves such writes to ``set``), and a big value's block is
allocated before anything changes. Whole-keyspace scoring reads ``device_metadata()``.

The first CupyStore of a process runs ``gpu/warmup.py warm_up`` on a scratch store: CuPy's
lazily built kernels are made at start-up rather than in the first clients' writes.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np

from .arena import DeviceArena
from .cpu import _IN_CLASS, CLOCK_MASK, NumpyStore, with_access_times
from .kernels import EMPTY, NumpyKernels
from .mirror import (
    INSERTS,
    PAGE_SHIFT,
    REGION_RUNS,
    SINCE,
    SLOT_PAGE_SHIFT,
    SLOT_RUNS,
    PageMirror,
    dirty_runs,
)
from .slabs import BLOCK, LIMIT, TOP, size_class

# The device copy trails host writes by at most this under load (config gpu-sync-interval, in ms).
# Every device read syncs first, so the periodic sync only bounds what a device read must catch up
# on; each costs the event loop its copies' and kernel's launches, and random overwrites dirty the
# whole region between two syncs however short the interval: rarer is cheaper
# (bench/results/store/page_mirror.md compares 50 ms with 1 s).
SYNC_INTERVAL_S = 1.0
BIG_VALUE = 1 << 20  # values this large get a device block of their own, written at once

# Host arrays the device mirrors, slot for slot (NumpyStore has the first three).
_MIRRORED = ("value_loc", "size", "key_loc", "key_len", "live")
_KEY_ARRAYS = {"key_loc": np.uint32, "key_len": np.uint32}
# Device-only per-slot arrays: what each slot's index entry was made from; big values' blocks.
_DEVICE_ONLY = {"d_indexed": np.uint8, "d_khash": np.uint64, "d_big_off": np.int64, "d_big_len": np.int64}


def _pow2_at_least(n: int) -> int:
    return 1 << max(4, (n - 1).bit_length())


class ArenaStore(NumpyStore):
    """Device layout over an array namespace ``xp`` and kernels ``ops`` (see CupyStore)."""

    name = "arena"
    packed_max = BIG_VALUE - 1

    def __init__(self, xp=np, ops=None, capacity: int = 64) -> None:
        self.xp = xp
        self.ops = ops if ops is not None else NumpyKernels()
        self._to_host = np.asarray if xp is np else xp.asnumpy
        super().__init__(capacity)

    # -- layout ---------------------------------------------------------------------------
    def _new_mirror(self) -> PageMirror:
        return PageMirror(self.xp, self.arena)

    def _alloc(self, capacity: int) -> None:
        mirror = getattr(self, "mirror", None)
        if mirror is not None:
            mirror.release()  # before the slabs' region closes (FLUSHALL)
        xp = self.xp
        self.arena = DeviceArena(xp)
        self.mirror = self._new_mirror()
        self._mstate = self.mirror._state
        self.t_hash = xp.zeros(1024, dtype=xp.uint64)
        self.t_slot = xp.full(1024, EMPTY, dtype=xp.int32)
        self._table_used = 0  # entries holding a slot or a tombstone (an upper bound)
        self._big: dict[int, tuple[int, int]] = {}  # slot -> its BIG_VALUE string's (block, length)
        for name in _MIRRORED:
            setattr(self, "d_" + name, xp.zeros(0, dtype=np.bool_ if name == "live" else np.uint32))
        for name, dtype in _DEVICE_ONLY.items():
            setattr(self, name, xp.zeros(0, dtype=dtype))
        for name, dtype in _KEY_ARRAYS.items():
            setattr(self, name, np.zeros(0, dtype=dtype))
        super()._alloc(capacity)

    def _grow(self, capacity: int) -> None:
        super()._grow(capacity)
        xp = self.xp
        for name, dtype in _KEY_ARRAYS.items():
            old = getattr(self, name)
            new = self._host_array(name, capacity, dtype)
            new[: len(old)] = old
            setattr(self, name, new)
        for name in (*("d_" + m for m in _MIRRORED), *_DEVICE_ONLY):
            old = getattr(self, name)
            new = xp.zeros(capacity, dtype=old.dtype)
            new[: old.size] = old
            setattr(self, name, new)
        self.mirror.grow_slots(capacity)
        self._kloc, self._klen = memoryview(self.key_loc), memoryview(self.key_len)

    def _open_slabs(self):
        slabs = super()._open_slabs()
        slabs.state[LIMIT] = 0  # nothing mirrored yet: _room grows the mirror first
        self.mirror.open_region(slabs.region)
        return slabs

    def _room(self, nbytes: int) -> None:
        """Make the region's mirrored part hold ``nbytes`` more above TOP, or raise StoreFull
        (before the write changes anything)."""
        slabs = self._slabs or self._open_slabs()
        state = slabs._state
        needed = state[TOP] * BLOCK + nbytes
        if needed > self.mirror.mirrored:
            state[LIMIT] = self.mirror.grow_region(needed) // BLOCK

    @property
    def staged_since(self) -> float:
        """Monotonic time of the oldest change not on the device yet, 0.0 when none: all the
        event loop's end of tick (predis_server/batching.py) reads."""
        return self._mstate[SINCE] * 1e-9

    # -- the C fast path --------------------------------------------------------------------
    def _build_native_view(self) -> tuple:
        """The CPU store's view plus what the C path's writes mark and a new key's insert
        writes besides: the key locations and lengths, the two dirty maps and the state."""
        mirror = self.mirror
        return (*super()._build_native_view(), self._kloc, self._klen, memoryview(mirror.region_dirty),
                memoryview(mirror.slot_dirty), self._mstate)

    # -- writes ---------------------------------------------------------------------------
    def set(self, key: bytes, value: object, now_ms: int, expire_at: int = 0,
            keep_ttl: bool = False) -> int:
        slot = self._index.get(key)
        new = slot is None
        string = type(value) is bytes
        if string and len(value) >= BIG_VALUE:
            return self._set_big(key, value, slot, now_ms, expire_at, keep_ttl)
        # region space this write may take (blocks: a new key's; a string's unless it keeps
        # its block, as NumpyStore.set does for the same BLOCK class), made room for first
        need = size_class(len(key)) if new else 0
        if string and (new or not self._loc[slot]
                       or (len(value) + _IN_CLASS) | _IN_CLASS != (self._size[slot] + _IN_CLASS) | _IN_CLASS):
            need += size_class(len(value))
        slabs = self._slabs
        if slabs is None or slabs._state[TOP] * BLOCK + need > self.mirror.mirrored:
            self._room(need)
        before = None if new else (self._loc[slot], self._size[slot])
        slot = NumpyStore.set(self, key, value, now_ms, expire_at, keep_ttl)
        if new:
            self._place_key(slot, key)
        loc = self._loc[slot]
        if loc:
            self.mirror.mark_region(loc * BLOCK, len(value))
        if before != (loc, self._size[slot]):  # the mirrored slot arrays changed (a TTL is not mirrored)
            self.mirror.mark_slot(slot)
        return slot

    def _place_key(self, slot: int, key: bytes) -> None:
        """A new key's bytes into the region (room made by the caller), then its slot's fields."""
        loc = self._slabs.store(key)  # type: ignore[union-attr]
        self.mirror.mark_region(loc * BLOCK, len(key))
        self._kloc[slot] = loc
        self._klen[slot] = len(key)
        self._mstate[INSERTS] += 1

    def _set_big(self, key: bytes, value: bytes, slot: int | None, now_ms: int, expire_at: int,
                 keep_ttl: bool) -> int:
        """A value of BIG_VALUE bytes or more: a Python object on the host, its device block
        allocated and filled at once (one copy), both before anything changes."""
        new = slot is None
        self._room(size_class(len(key)) if new else 0)
        block = self.arena.alloc(len(value))
        slot = NumpyStore.set(self, key, value, now_ms, expire_at, keep_ttl)  # frees an old block
        if new:
            self._place_key(slot, key)
        self._big[slot] = (block, len(value))
        self.arena.buf[block: block + len(value)] = self.xp.asarray(np.frombuffer(value, dtype=np.uint8))
        self.d_big_off[slot] = block
        self.d_big_len[slot] = len(value)
        self.mirror.mark_slot(slot)
        return slot

    def _forget_value(self, slot: int) -> None:
        big = self._big.pop(slot, None)
        if big is not None:
            self.arena.free(*big)
            self.d_big_len[slot] = 0
        super()._forget_value(slot)

    def _drop(self, key: bytes, slot: int) -> None:
        loc = self._kloc[slot]
        if loc:
            self._slabs.release(loc, self._klen[slot])  # type: ignore[union-attr]
            self._kloc[slot] = 0
        super()._drop(key, slot)
        self.mirror.mark_slot(slot)

    def set_many(self, keys: Sequence[bytes], values: Sequence[object], now_ms: int,
                 expire_at: Sequence[int] | None = None) -> None:
        super().set_many(keys, values, now_ms, expire_at)
        self.sync()

    def delete_many(self, keys: Iterable[bytes]) -> int:
        return sum(1 for key in keys if self.delete(key))

    def flush(self, interval_s: float | None = None) -> None:
        """End of an event-loop tick: changes older than ``interval_s`` (the server's
        ``gpu-sync-interval``; default SYNC_INTERVAL_S) go to the device, so a sync (a few copies
        and a kernel) serves many ticks."""
        state = self._mstate
        since = state[SINCE]
        if since and time.monotonic_ns() - since >= (SYNC_INTERVAL_S if interval_s is None else interval_s) * 1e9:
            self.sync()

    # -- the sync: dirty pages copied, the index reconciled ----------------------------------
    def sync(self) -> None:
        """Bring the device copy up to date: every device read calls this first. Nothing here
        waits for the device: the copies and the kernel are queued, nothing is read back."""
        state = self._mstate
        if not state[SINCE]:
            return
        mirror = self.mirror
        state[SINCE] = 0
        inserts = state[INSERTS]
        state[INSERTS] = 0
        n_slots = len(self._keys)
        slot_runs = dirty_runs(mirror.slot_dirty, len(mirror.slot_dirty), SLOT_RUNS)
        if slot_runs:  # slot pages before region pages (see gpu/mirror.py)
            mirror.upload_slots(slot_runs, [(getattr(self, "d_" + name), getattr(self, name)) for name in _MIRRORED],
                                self._capacity)
        if self._slabs is not None:
            top_pages = ((self._slabs._state[TOP] * BLOCK) >> PAGE_SHIFT) + 1
            region_runs = dirty_runs(mirror.region_dirty, top_pages, REGION_RUNS)
            if region_runs:
                mirror.upload_region(region_runs)
        if self._table_used + inserts > self.t_slot.size // 2:
            self._rebuild_table(len(self) + inserts)
            lo, hi = 0, n_slots
        elif slot_runs:
            self._table_used += inserts
            lo, hi = slot_runs[0][0] << SLOT_PAGE_SHIFT, min(slot_runs[-1][1] << SLOT_PAGE_SHIFT, n_slots)
        else:
            return
        self.ops.reconcile(mirror.region, self.d_key_loc, self.d_key_len, self.d_live, self.d_indexed,
                           self.d_khash, self.t_hash, self.t_slot, lo, hi)

    def _rebuild_table(self, keys_expected: int) -> None:
        """A fresh table at most a quarter full (drops tombstones); the caller reconciles every
        slot into it."""
        xp = self.xp
        size = _pow2_at_least(4 * max(keys_expected, 256))
        self.t_hash = xp.zeros(size, dtype=xp.uint64)
        self.t_slot = xp.full(size, EMPTY, dtype=xp.int32)
        self.d_indexed[:] = 0
        self._table_used = len(self)

    # -- device reads (batch APIs; single commands read the host copy) ---------------------
    def lookup_packed(self, keys_buf, key_off, key_len):
        """Device slots (-1 missing) for packed keys already on the device: the index alone."""
        self.sync()
        return self.lookup_index(keys_buf, key_off, key_len)

    def lookup_index(self, keys_buf, key_off, key_len):
        """``lookup_packed`` without its sync, for a device copy known to be current (the
        store benchmark's device-side timing): the index kernel alone."""
        return self.ops.lookup(self.t_hash, self.t_slot, keys_buf, key_off, key_len, self.mirror.region,
                               self.d_key_loc, self.d_key_len)

    def gather_device(self, slots):
        """Values of device ``slots`` (all hits) into one device buffer; (buf, offsets). A
        value that is not a string is empty."""
        xp = self.xp
        loc = self.d_value_loc[slots]
        packed = loc != 0
        lens = xp.where(packed, self.d_size[slots], 0).astype(xp.int64)
        big_lens = xp.where(packed, 0, self.d_big_len[slots]) if self._big else None
        if big_lens is not None:
            lens += big_lens
        offsets = xp.cumsum(lens) - lens
        total = int(offsets[-1] + lens[-1]) if slots.size else 0
        out = xp.empty(total, dtype=xp.uint8)
        self.ops.copy_segments(out, offsets, self.mirror.region, loc.astype(xp.int64) * BLOCK,
                               xp.where(packed, lens, 0))
        if big_lens is not None:
            self.ops.copy_segments(out, offsets, self.arena.buf, self.d_big_off[slots], big_lens)
        return out, offsets

    def get_many_packed(self, keys_buf: np.ndarray, key_off: np.ndarray, key_len: np.ndarray,
                        now_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batch GET of packed host keys through the device index.

        Returns (slots, values buffer, n+1 offsets); a missing or non-string key has slot -1
        or an empty span. Keys go up in one copy, slots and values come back in two.
        """
        xp = self.xp
        d_slots = self.lookup_packed(xp.asarray(keys_buf), xp.asarray(key_off), xp.asarray(key_len))
        slots = self._to_host(d_slots).astype(np.int64)
        hit = slots >= 0
        if self._volatile and hit.any():
            exp = self.expire_at[slots[hit]]
            dead = (exp > 0) & (exp <= now_ms)
            if dead.any():
                for slot in np.unique(slots[hit][dead]).tolist():
                    self._expire(self._keys[slot], slot)  # type: ignore[arg-type]
                return self.get_many_packed(keys_buf, key_off, key_len, now_ms)
        hits = slots[hit]
        self.last_access[hits] = now_ms & CLOCK_MASK
        if self.track_lfu:
            for slot in hits.tolist():
                self._lfu_update(slot, now_ms)
        # spans from the host arrays: the sync above made the device's the same
        at = np.maximum(slots, 0)
        loc = np.where(hit, self.value_loc[at], 0).astype(np.int64)
        lens = np.where(loc != 0, self.size[at], 0).astype(np.int64)
        big = [i for i in np.flatnonzero(hit & (loc == 0)).tolist() if slots[i] in self._big]
        for i in big:
            lens[i] = self._big[slots[i]][1]
        offsets = np.zeros(len(slots) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        out = xp.empty(int(offsets[-1]), dtype=xp.uint8)
        d_offsets = xp.asarray(offsets[:-1])
        self.ops.copy_segments(out, d_offsets, self.mirror.region, xp.asarray(loc * BLOCK),
                               xp.asarray(np.where(loc != 0, lens, 0)))
        if big:
            idx = np.array(big, dtype=np.int64)
            blocks = np.array([self._big[slots[i]][0] for i in big], dtype=np.int64)
            self.ops.copy_segments(out, xp.asarray(offsets[idx]), self.arena.buf, xp.asarray(blocks),
                                   xp.asarray(lens[idx]))
        return slots, self._to_host(out), offsets

    # -- whole-keyspace scoring on the device ---------------------------------------------
    def device_metadata(self) -> dict:
        """The metadata arrays copied to the device (one transfer each) for vectorised scoring."""
        n = len(self._keys)
        xp = self.xp
        return {name: xp.asarray(getattr(self, name)[:n]) for name in
                ("expire_at", "last_access", "lfu_count", "lfu_time", "reuse", "flags", "live")}

    def _scoring_arrays(self, now_ms: int):
        return self.xp, with_access_times(self.xp, self.device_metadata(), now_ms)

    # -- size -----------------------------------------------------------------------------
    def _device_slot_bytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in (*("d_" + m for m in _MIRRORED), *_DEVICE_ONLY))

    def used_memory(self) -> int:
        """Host copy (as the CPU store counts it, keys' packed bytes included) plus the key
        arrays and the dirty maps' used part; and on the device, as the host's allocators count
        (used, not reserved: ``device_bytes`` has the capacities): the mirror's used part, big
        values' blocks, the index and the slot arrays."""
        top = self._slabs._state[TOP] * BLOCK if self._slabs is not None else 0
        host = (super().used_memory() + self.key_loc.nbytes + self.key_len.nbytes
                + self.mirror.slot_dirty.nbytes + (top >> PAGE_SHIFT))
        return (host + top + self.arena.live_bytes + self.t_hash.nbytes + self.t_slot.nbytes
                + self._device_slot_bytes())

    def device_bytes(self) -> int:
        """Device memory really reserved: the region's mirror, the arena, index and slot arrays."""
        return (self.mirror.capacity + self.arena.capacity + self.t_hash.nbytes + self.t_slot.nbytes
                + self._device_slot_bytes())


class CupyStore(ArenaStore):
    """ArenaStore on a CUDA device through CuPy RawKernels; the mirror's copies are DMAs."""

    name = "gpu"
    _kernels = None
    _warmed = False  # warm_up ran in this process

    def __init__(self, capacity: int = 64) -> None:
        import cupy

        from .kernels import CudaKernels

        if CupyStore._kernels is None:
            CupyStore._kernels = CudaKernels(cupy)
        super().__init__(cupy, CupyStore._kernels, capacity)
        if not CupyStore._warmed:  # at start-up (the keyspace's first store), not in a client's write
            CupyStore._warmed = True
            from .warmup import warm_up

            warm_up(CupyStore())

    def _new_mirror(self) -> PageMirror:
        from .mirror import CudaPageMirror

        return CudaPageMirror(self.xp, self.arena)

    def __del__(self) -> None:
        mirror = getattr(self, "mirror", None)
        if mirror is not None:
            try:
                mirror.release()
            except (AttributeError, TypeError, RuntimeError):  # shutdown: CUDA may be gone already
                return
