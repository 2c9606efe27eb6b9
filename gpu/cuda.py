"""The GPU store: string values, their keys and a hash index in device memory (CuPy).

Layout
------
* **Value arena** (``gpu/arena.py``): every string value and every key's bytes live in
  one device byte buffer; an allocator with size classes and free lists reuses freed space.
* **Device hash index**: open addressing over 64-bit key hashes, verified against the
  full key bytes in the arena (``gpu/kernels.py``), so collisions never give wrong answers.
* **Slot tables on the device**: ``key_off``/``key_len``/``val_off``/``val_len`` per slot,
  used by the lookup and gather kernels (``get_many_packed``, ``gather_device``).
* **Host side**: everything the CPU store holds (key -> slot dict, key list, metadata
  arrays, and a copy of every value, short strings packed in slabs). Single commands and
  pipelines read the host copy: a device round trip per event-loop tick (tens of
  microseconds of launches and copies) costs more than a Python server spends on a whole
  pipeline, which is why an earlier layout that served GETs from the device ran at half
  the CPU store's rate (bench/results/store/ab_servers.md). The device serves batch APIs
  (packed lookups and gathers of many keys) and whole-keyspace scoring:
  ``device_metadata()`` copies the metadata arrays to the device in one transfer each.

Writes are staged: ``set`` changes the host copy and notes the slot (its value in the
stage, a new key in the pending inserts); the next ``sync`` allocates the device blocks the
stage needs (``DeviceArena.alloc_many``: one pass per size class), uploads all staged values
and new keys in one transfer, scatters them with one kernel and inserts the new keys into
the device index with one more. So a new key costs the write a dictionary store and a list
append, not allocator calls; and a sync never waits for the device (nothing is read back:
the index's key hashes, needed again only to remove a key or rebuild the table, stay in
``d_khash`` on the device). Device out-of-memory still fails the write that asks for too much and
nothing else: each write reserves an upper bound of the space it will take
(``size_bound``) and grows the arena *before* it changes anything, so the deferred
allocation of a sync always fits. A string replacing one of the same size class keeps its
device block. ``sync`` runs before every device read, when the stage passes a threshold,
and at the end of an event-loop tick (``flush()``) once the oldest staged write is
SYNC_INTERVAL_S old, so one sync serves the writes of many ticks.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np

from .arena import DeviceArena, size_bound, size_class
from .cpu import CLOCK_MASK, NumpyStore, with_access_times
from .kernels import EMPTY, NumpyKernels

SYNC_INTERVAL_S = 0.05  # the device copy trails host writes by at most this under load
STAGE_MAX_ITEMS = 65536
STAGE_MAX_BYTES = 16 << 20
BIG_VALUE = 1 << 20  # values this large are copied with one memcpy, not through the stage


# Per-slot arrays: the host's mirror of the device blocks, and the device's own (the index's
# key hashes stay on the device: only the device computes them, and only it uses them).
_HOST_SLOT_ARRAYS = {"key_off": np.int64, "key_len": np.int64, "val_off": np.int64, "val_len": np.int64,
                     "on_table": bool}
_DEVICE_SLOT_ARRAYS = {"d_key_off": np.int64, "d_key_len": np.int64, "d_val_off": np.int64,
                       "d_val_len": np.int64, "d_khash": np.uint64}


def _pow2_at_least(n: int) -> int:
    return 1 << max(4, (n - 1).bit_length())


class ArenaStore(NumpyStore):
    """Device layout over an array namespace ``xp`` and kernels ``ops`` (see CupyStore)."""

    name = "arena"

    def __init__(self, xp=np, ops=None, capacity: int = 64) -> None:
        self.xp = xp
        self.ops = ops if ops is not None else NumpyKernels()
        self._to_host = np.asarray if xp is np else xp.asnumpy
        self._reset_device()
        super().__init__(capacity)

    # -- device state ---------------------------------------------------------------------
    def _reset_device(self) -> None:
        xp = self.xp
        self.arena = DeviceArena(xp)
        self.t_hash = xp.zeros(1024, dtype=xp.uint64)
        self.t_slot = xp.full(1024, EMPTY, dtype=xp.int32)
        self._table_used = 0  # entries holding a slot or a tombstone
        self._staged: dict[int, bytes] = {}  # slot -> string value awaiting upload
        self._staged_bytes = 0
        self._staged_since = 0.0  # monotonic time of the oldest write not yet on the device
        self._reserved = 0  # arena bytes the stage's deferred allocations may take (upper bound)
        # slots of new keys awaiting the device index, in write order: a list append per new
        # key; the sync skips slots dropped since (and takes a slot reused since once)
        self._inserts: list[int] = []
        self._insert_dropped = False  # a key of _inserts went before the sync (filter them)
        self._pending_remove: list[int] = []  # slots whose index entry goes (hash: d_khash)
        for name, dtype in _DEVICE_SLOT_ARRAYS.items():
            setattr(self, name, xp.zeros(0, dtype=dtype))
        for name, dtype in _HOST_SLOT_ARRAYS.items():
            setattr(self, name, np.zeros(0, dtype=dtype))

    def _grow(self, capacity: int) -> None:
        super()._grow(capacity)
        xp = self.xp
        for name in _HOST_SLOT_ARRAYS:
            old = getattr(self, name)
            new = np.full(capacity, -1, dtype=old.dtype) if name == "val_off" else np.zeros(capacity, old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)
        for name in _DEVICE_SLOT_ARRAYS:
            old = getattr(self, name)
            new = xp.zeros(capacity, dtype=old.dtype)
            new[: old.size] = old
            setattr(self, name, new)
        # scalar access through memoryviews: several times cheaper than NumPy item access
        self._koff, self._klen = memoryview(self.key_off), memoryview(self.key_len)
        self._voff, self._vlen = memoryview(self.val_off), memoryview(self.val_len)

    # -- the C fast path --------------------------------------------------------------------
    def _build_native_view(self) -> tuple:
        """The CPU store's view plus the stage and the device blocks: the C path stages what
        it overwrites in place, as ``set`` does for a same-class string (block kept)."""
        return (*super()._build_native_view(), self._staged, self._voff, self._vlen)

    def native_written(self, staged_bytes: int) -> None:
        """After the C path staged writes: the bookkeeping ``set`` does for each."""
        if not self._staged_since:
            self._staged_since = time.monotonic()
        self._staged_bytes += staged_bytes
        if len(self._staged) >= STAGE_MAX_ITEMS or self._staged_bytes >= STAGE_MAX_BYTES:
            self.sync()

    # -- writes ---------------------------------------------------------------------------
    def set(self, key: bytes, value: object, now_ms: int, expire_at: int = 0,
            keep_ttl: bool = False) -> int:
        if type(value) is not bytes:
            return self._set_object(key, value, now_ms, expire_at, keep_ttl)
        slot = self._index.get(key)
        n = len(value)
        if n >= BIG_VALUE:
            return self._set_big(key, value, slot, now_ms, expire_at, keep_ttl)
        if slot is None:
            # reserve before any change (device OOM fails this write only): at least
            # size_bound(len(key)) + size_bound(n), inlined (new keys are most writes here)
            reserved = self._reserved + len(key) + n + ((len(key) + n) >> 2) + 48
            arena = self.arena
            if arena.top + reserved > arena.capacity:
                arena.reserve(reserved)
            self._reserved = reserved
            slot = NumpyStore.set(self, key, value, now_ms, expire_at, keep_ttl)
            self._inserts.append(slot)
        else:
            # a string replacing one of the same size class keeps its device block (SET of a
            # same-sized value, INCR): only the new bytes are staged
            keep = self._voff[slot] >= 0 \
                and ((old_len := self._vlen[slot]) == n or size_class(n) == size_class(old_len))
            if not keep:
                self._reserve(size_bound(n))
            NumpyStore.set(self, key, value, now_ms, expire_at, keep_ttl)
            if keep:
                self._vlen[slot] = n
            elif self._voff[slot] >= 0 or slot in self._staged:
                self._release_value(slot)  # its block is of another size class
        staged = self._staged
        staged[slot] = value
        self._staged_bytes += n
        if not self._staged_since:
            self._staged_since = time.monotonic()
        if len(staged) + len(self._inserts) >= STAGE_MAX_ITEMS or self._reserved >= STAGE_MAX_BYTES \
                or self._staged_bytes >= STAGE_MAX_BYTES:
            self.sync()
        return slot

    def _set_object(self, key: bytes, value: object, now_ms: int, expire_at: int, keep_ttl: bool) -> int:
        """A value that is not a string (a hash): kept on the host only; a new key still
        goes into the device index."""
        new = key not in self._index
        if new:
            self._reserve(size_bound(len(key)))
        slot = NumpyStore.set(self, key, value, now_ms, expire_at, keep_ttl)
        if new:
            self._inserts.append(slot)
            if not self._staged_since:
                self._staged_since = time.monotonic()
        elif self._voff[slot] >= 0 or slot in self._staged:
            self._release_value(slot)
        return slot

    def _reserve(self, nbytes: int) -> None:
        arena = self.arena
        if arena.top + self._reserved + nbytes > arena.capacity:
            arena.reserve(self._reserved + nbytes)
        self._reserved += nbytes

    def _set_big(self, key: bytes, value: bytes, slot: int | None, now_ms: int, expire_at: int,
                 keep_ttl: bool) -> int:
        """A value of BIG_VALUE bytes or more: its block is allocated and filled at once (one
        memcpy), not staged."""
        new = slot is None
        block_size = size_class(len(value))
        self._reserve((size_bound(len(key)) if new else 0) + block_size)
        block = self.arena.alloc(len(value))  # fits: the reservation made room for it
        self._reserved -= block_size  # taken now, not deferred to the sync
        slot = NumpyStore.set(self, key, value, now_ms, expire_at, keep_ttl)
        if not new:
            self._release_value(slot)
        else:
            self._inserts.append(slot)
            if not self._staged_since:
                self._staged_since = time.monotonic()
        self._voff[slot] = block
        self._vlen[slot] = len(value)
        self._upload_big(slot, value)
        return slot

    def _release_value(self, slot: int) -> None:
        off = self._voff[slot]
        if off >= 0:
            self.arena.free(off, self._vlen[slot])
            self._voff[slot] = -1
        staged = self._staged.pop(slot, None)
        if staged is not None:
            self._staged_bytes -= len(staged)

    def _upload_big(self, slot: int, value: bytes) -> None:
        off = self._voff[slot]
        self.arena.buf[off: off + len(value)] = self.xp.asarray(np.frombuffer(value, dtype=np.uint8))
        self.d_val_off[slot] = off
        self.d_val_len[slot] = len(value)

    def _drop(self, key: bytes, slot: int) -> None:
        self._release_value(slot)
        if self.on_table[slot]:  # on the device: its key block and index entry go
            self.arena.free(self._koff[slot], self._klen[slot])
            self._pending_remove.append(slot)
            self.on_table[slot] = False
        else:  # it never reached the device: nothing was allocated for it, and the sync
            self._insert_dropped = True  # skips its entry in _inserts
        super()._drop(key, slot)

    def set_many(self, keys: Sequence[bytes], values: Sequence[object], now_ms: int,
                 expire_at: Sequence[int] | None = None) -> None:
        super().set_many(keys, values, now_ms, expire_at)
        self.sync()

    def delete_many(self, keys: Iterable[bytes]) -> int:
        return sum(1 for key in keys if self.delete(key))

    def flush(self) -> None:
        """End of an event-loop tick: writes older than SYNC_INTERVAL_S go to the device, so a
        sync (a few device operations) serves the writes of many ticks, not of each."""
        if (self._staged or self._inserts or self._pending_remove) \
                and time.monotonic() - self._staged_since >= SYNC_INTERVAL_S:
            self.sync()

    # -- the sync: one upload, one scatter, one index update -------------------------------
    def sync(self) -> None:
        """Bring the device copy up to date: every device read calls this first. Nothing here
        waits for the device: the uploads and kernels are queued, and the host never reads
        device data back (the index's key hashes stay there, in d_khash)."""
        xp, ops = self.xp, self.ops
        self._staged_since = 0.0
        if self._pending_remove:
            d_slots = xp.asarray(np.array(self._pending_remove, dtype=np.int32))
            ops.remove(self.t_hash, self.t_slot, self.d_khash[d_slots], d_slots)
            self._pending_remove = []
        staged = self._staged
        n_staged = len(staged)
        insert_idx = np.fromiter(self._inserts, dtype=np.int64, count=len(self._inserts))
        self._inserts = []
        if self._insert_dropped:
            # a slot dropped since its write is not live; one reused since appears twice
            # (keep one: it holds the newer key)
            self._insert_dropped = False
            insert_idx.sort()
            first = np.ones(len(insert_idx), dtype=bool)
            np.not_equal(insert_idx[1:], insert_idx[:-1], out=first[1:])
            insert_idx = insert_idx[first & self.live[insert_idx]]
        n_ins = len(insert_idx)
        if not n_staged and not n_ins:
            self._reserved = 0
            return
        staged_idx = np.fromiter(staged, dtype=np.int64, count=n_staged)
        chunks = list(staged.values())
        if n_ins:
            chunks += map(self._keys.__getitem__, insert_idx.tolist())
        n_chunks = len(chunks)
        lens = np.fromiter(map(len, chunks), dtype=np.int64, count=n_chunks)
        # The device blocks the writes deferred: values without one (new, or of another size
        # class than their block), then the new keys; their space was reserved by the writes.
        # One alloc_many for both (one pass per size class).
        val_lens = lens[:n_staged]
        no_block = np.flatnonzero(self.val_off[staged_idx] < 0)
        if len(no_block) or n_ins:
            blocks = self.arena.alloc_many(np.concatenate([val_lens[no_block], lens[n_staged:]]))
            self.val_off[staged_idx[no_block]] = blocks[: len(no_block)]
            self.key_off[insert_idx] = blocks[len(no_block):]
            self.key_len[insert_idx] = lens[n_staged:]
        self.val_len[staged_idx] = val_lens
        self._reserved = 0
        src = np.zeros(n_chunks, dtype=np.int64)
        np.cumsum(lens[:-1], out=src[1:])
        # The sync's index arrays and the bytes they place go up in one transfer (a small
        # copy costs about as much as a large one): the int64 arrays first (aligned), then
        # the bytes; the device slices below are views into it.
        ints = np.concatenate([self.val_off[staged_idx], self.key_off[insert_idx], src, lens,
                               staged_idx, val_lens, insert_idx, self.key_len[insert_idx]])
        if n_ins and self._table_used + n_ins > self.t_slot.size // 2:
            self._rebuild_table(len(self) + n_ins)
        d_upload = xp.asarray(np.frombuffer(b"".join([ints.tobytes(), *chunks]), dtype=np.uint8))
        d_ints = d_upload[: ints.nbytes].view(xp.int64)
        parts = np.cumsum([0, n_chunks, n_chunks, n_chunks, n_staged, n_staged, n_ins, n_ins]).tolist()
        d_dst, d_src, d_lens, d_staged, d_val_len, d_ins, d_key_len = (
            d_ints[parts[i]: parts[i + 1]] for i in range(7))
        ops.copy_segments(self.arena.buf, d_dst, d_upload[ints.nbytes:], d_src, d_lens)
        if n_staged:
            self.d_val_off[d_staged] = d_dst[:n_staged]
            self.d_val_len[d_staged] = d_val_len
        if n_ins:
            d_off = d_dst[n_staged:]
            self.d_key_off[d_ins] = d_off
            self.d_key_len[d_ins] = d_key_len
            hashes = ops.hash_keys(self.arena.buf, d_off, d_key_len)
            self.d_khash[d_ins] = hashes
            ops.insert(self.t_hash, self.t_slot, hashes, d_ins.astype(xp.int32))
            self.on_table[insert_idx] = True
            self._table_used += n_ins
        staged.clear()  # the same dict: the C path's view holds it
        self._staged_bytes = 0

    def _rebuild_table(self, keys_expected: int) -> None:
        """A fresh table at most a quarter full (drops tombstones); the caller inserts new keys.
        The keys already on it go in again with the hashes the device kept (d_khash)."""
        xp = self.xp
        size = _pow2_at_least(4 * max(keys_expected, 256))
        t_hash = xp.zeros(size, dtype=xp.uint64)
        t_slot = xp.full(size, EMPTY, dtype=xp.int32)
        d_present = xp.asarray(np.flatnonzero(self.on_table).astype(np.int32))
        self.ops.insert(t_hash, t_slot, self.d_khash[d_present], d_present)
        self.t_hash, self.t_slot = t_hash, t_slot
        self._table_used = int(d_present.size)

    # -- device reads (batch APIs; single commands read the host copy) ---------------------
    def lookup_packed(self, keys_buf, key_off, key_len):
        """Device slots (-1 missing) for packed keys already on the device: the index alone."""
        self.sync()
        return self.ops.lookup(self.t_hash, self.t_slot, keys_buf, key_off, key_len, self.arena.buf,
                               self.d_key_off, self.d_key_len)

    def gather_device(self, slots):
        """Values of device ``slots`` (all hits, strings) into one device buffer; (buf, offsets)."""
        xp = self.xp
        lens = self.d_val_len[slots]
        offsets = xp.cumsum(lens) - lens
        total = int(offsets[-1] + lens[-1]) if slots.size else 0
        out = xp.empty(total, dtype=xp.uint8)
        self.ops.copy_segments(out, offsets, self.arena.buf, self.d_val_off[slots], lens)
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
        strings = hit.copy()
        strings[hit] = self.val_off[hits] >= 0
        lens = np.where(strings, self.val_len[np.maximum(slots, 0)], 0)
        offsets = np.zeros(len(slots) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        out = xp.empty(int(offsets[-1]), dtype=xp.uint8)
        d_strings = xp.asarray(strings)
        d_src = xp.where(d_strings, self.d_val_off[xp.maximum(d_slots, 0)], 0)
        self.ops.copy_segments(out, xp.asarray(offsets[:-1]), self.arena.buf, d_src, xp.asarray(lens))
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
    def used_memory(self) -> int:
        """Host copy (as the CPU store counts it) plus the device: arena blocks of values and
        keys, the index and the slot tables, and their host-side mirrors."""
        host = super().used_memory() + sum(getattr(self, name).nbytes for name in _HOST_SLOT_ARRAYS)
        device = (self.arena.live_bytes + self.t_hash.nbytes + self.t_slot.nbytes
                  + sum(getattr(self, name).nbytes for name in _DEVICE_SLOT_ARRAYS))
        return host + device

    def device_bytes(self) -> int:
        """Device memory really reserved: arena capacity, index and slot tables."""
        return (self.arena.capacity + self.t_hash.nbytes + self.t_slot.nbytes
                + sum(getattr(self, name).nbytes for name in _DEVICE_SLOT_ARRAYS))

    def clear(self) -> None:
        self._reset_device()
        self._alloc(64)


class CupyStore(ArenaStore):
    """ArenaStore on a CUDA device through CuPy RawKernels."""

    name = "gpu"
    _kernels = None

    def __init__(self, capacity: int = 64) -> None:
        import cupy

        from .kernels import CudaKernels

        if CupyStore._kernels is None:
            CupyStore._kernels = CudaKernels(cupy)
        super().__init__(cupy, CupyStore._kernels, capacity)
