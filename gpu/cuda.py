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

Writes are staged by slot: ``set`` (and the C path's in-place overwrites and new keys) change the host
copy and flag the slot in ``stage_flags`` (its value to upload, its key to insert), listing
it once per sync; the value itself stays where the host keeps it (short strings in the
packed region), so the stage holds no objects. The next ``sync`` allocates the device blocks
the stage needs (``DeviceArena.alloc_many``: one pass per size class), gathers the staged
values and new keys into one reused (on CUDA: pinned) host buffer, uploads it in one
asynchronous transfer, scatters it with one kernel and inserts the new keys into the device
index with one more. So a write costs a flag and at most one list entry, not allocator
calls; and a sync never waits for the device (nothing is read back:
the index's key hashes, needed again only to remove a key or rebuild the table, stay in
``d_khash`` on the device). Device out-of-memory still fails the write that asks for too much and
nothing else: each write reserves an upper bound of the space it will take
(``size_bound``) and grows the arena *before* it changes anything, so the deferred
allocation of a sync always fits. A string replacing one of the same size class keeps its
device block. ``sync`` runs before every device read, when the stage passes a threshold,
and at the end of an event-loop tick (``flush()``) once the oldest staged write is
SYNC_INTERVAL_S old, so one sync serves the writes of many ticks. The C path reserves a new
key's space from ``dev_counts`` (the room above the arena's reservations, kept by the
``_reserved`` setter) and leaves the write to ``set`` when the room is too small.

The first CupyStore of a process runs ``gpu/warmup.py warm_up`` on a scratch store: CuPy's lazily built
kernels are made at start-up rather than in the first clients' writes.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np

from .arena import DeviceArena, size_bound, size_class
from .cpu import CLOCK_MASK, NumpyStore, with_access_times
from .host_gather import STAGE_INSERT, STAGE_LISTED, STAGE_VALUE, gather_items, gather_segments, take_stage
from .kernels import EMPTY, NumpyKernels
from .slabs import BLOCK

SYNC_INTERVAL_S = 0.05  # the device copy trails host writes by at most this under load
STAGE_MAX_ITEMS = 65536  # slots listed by either path (the C path's log, the Python list)
STAGE_MAX_BYTES = 16 << 20
BIG_VALUE = 1 << 20  # values this large are copied with one memcpy, not through the stage
# stage_flags bits (STAGE_VALUE, STAGE_INSERT, STAGE_LISTED; gpu/host_gather.py): the slot's
# string value awaits upload; its key awaits the device index; the slot is in the stage log or
# list already (kept while a drop clears the others, so a slot reused before the sync is listed once)
STAGE_LOG_FIRST = 1024  # slots the C path's stage log holds at first; doubled once half full,
STAGE_LOG_MAX = 2 * STAGE_MAX_ITEMS  # up to this (a sync comes at STAGE_MAX_ITEMS)


# Per-slot arrays: the host's mirror of the device blocks, and the device's own (the index's
# key hashes stay on the device: only the device computes them, and only it uses them).
# val_len: the length of the slot's string on the device or, while it is staged, of the one
# staged (its device block, kept or not yet allocated, is of that length's size class).
_HOST_SLOT_ARRAYS = {"key_off": np.int64, "key_len": np.int64, "val_off": np.int64, "val_len": np.int64,
                     "on_table": bool, "stage_flags": np.uint8}
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
        self._staged_bytes = 0  # bytes of the staged values (at their val_len)
        # monotonic time of the oldest change not yet on the device, 0.0 when none: the
        # event loop's end of tick (predis_server/batching.py) reads only this
        self.staged_since = 0.0
        # arena bytes the stage's deferred allocations may take (an upper bound), and the room
        # left above them (capacity - top - reserved): the C fast path reserves a new key's
        # space from that room (_fastpath.c insert_new) and leaves the write to set() without it
        self.dev_counts = np.zeros(2, dtype=np.int64)
        self._dev_count = memoryview(self.dev_counts)
        self._reserved = 0
        # The slots flagged in stage_flags since the last sync, each listed once: by the C
        # path in its log ([0] the count, then the slots), by Python writes in a list.
        self._set_stage_log(np.zeros(STAGE_LOG_FIRST + 1, dtype=np.int64))
        self._stage_list: list[int] = []
        self._pending_remove: list[int] = []  # slots whose index entry goes (hash: d_khash)
        self._upload_host: np.ndarray | None = None  # the sync's host buffer, reused
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
        self._sflags = memoryview(self.stage_flags)

    @property
    def _reserved(self) -> int:
        return self._dev_count[0]

    @_reserved.setter
    def _reserved(self, value: int) -> None:
        count, arena = self._dev_count, self.arena
        count[0] = value
        count[1] = arena.capacity - arena.top - value

    def _set_stage_log(self, log: np.ndarray) -> None:
        self._stage_log = log
        self._log = memoryview(log)
        self._native = None  # the C path's view holds the log

    def _stage(self, slot: int, bits: int) -> None:
        """Flag ``slot`` for the next sync (listed once)."""
        flags = self._sflags[slot]
        if not flags:  # no flag, not even STAGE_LISTED: not listed since the last sync
            self._stage_list.append(slot)
        self._sflags[slot] = flags | bits | STAGE_LISTED

    # -- the C fast path --------------------------------------------------------------------
    def _build_native_view(self) -> tuple:
        """The CPU store's view plus the stage flags, the device blocks and the stage log: the
        C path stages what it overwrites in place, as ``set`` does for a same-class string
        (block kept)."""
        return (*super()._build_native_view(), self._sflags, self._voff, self._vlen, self._log,
                self._dev_count)

    def native_written(self, staged_bytes: int) -> None:
        """After the C path staged writes: the bookkeeping ``set`` does for each."""
        if not self.staged_since:
            self.staged_since = time.monotonic()
        self._staged_bytes += staged_bytes
        listed = self._log[0]
        if listed >= STAGE_MAX_ITEMS or self._staged_bytes >= STAGE_MAX_BYTES \
                or self._dev_count[0] >= STAGE_MAX_BYTES:
            self.sync()
        elif 2 * listed >= len(self._stage_log) - 1 and len(self._stage_log) - 1 < STAGE_LOG_MAX:
            # half full: a larger log now, so later runs never find it full (a full log sends
            # the C path's writes to set(), several times slower)
            log = np.zeros(min(2 * (len(self._stage_log) - 1), STAGE_LOG_MAX) + 1, dtype=np.int64)
            log[: listed + 1] = self._stage_log[: listed + 1]
            self._set_stage_log(log)

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
            flags = self._sflags  # after the set: it may have grown the arrays
            if not flags[slot]:  # else listed already: a slot freed and reused since the sync
                self._stage_list.append(slot)
            flags[slot] = STAGE_VALUE | STAGE_INSERT | STAGE_LISTED
            self._staged_bytes += n
        else:
            # a string replacing one of the same size class keeps its device block, or the
            # space reserved for it while staged (SET of a same-sized value, INCR)
            staged = self._sflags[slot] & STAGE_VALUE
            keep = (staged or self._voff[slot] >= 0) \
                and ((old_len := self._vlen[slot]) == n or size_class(n) == size_class(old_len))
            if not keep:
                self._reserve(size_bound(n))
            NumpyStore.set(self, key, value, now_ms, expire_at, keep_ttl)
            if keep:
                self._staged_bytes += n - old_len if staged else n
            else:
                if staged or self._voff[slot] >= 0:
                    self._release_value(slot)  # its block is of another size class
                self._staged_bytes += n
            self._stage(slot, STAGE_VALUE)
        self._vlen[slot] = n
        if not self.staged_since:
            self.staged_since = time.monotonic()
        if len(self._stage_list) >= STAGE_MAX_ITEMS or self._reserved >= STAGE_MAX_BYTES \
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
            self._stage(slot, STAGE_INSERT)
            if not self.staged_since:
                self.staged_since = time.monotonic()
        elif self._voff[slot] >= 0 or self._sflags[slot] & STAGE_VALUE:
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
            self._stage(slot, STAGE_INSERT)
            if not self.staged_since:
                self.staged_since = time.monotonic()
        self._voff[slot] = block
        self._vlen[slot] = len(value)
        self._upload_big(slot, value)
        return slot

    def _release_value(self, slot: int) -> None:
        off = self._voff[slot]
        if off >= 0:
            self.arena.free(off, self._vlen[slot])
            self._voff[slot] = -1
        flags = self._sflags[slot]
        if flags & STAGE_VALUE:  # the staged value goes too (its reservation lapses at the sync)
            self._staged_bytes -= self._vlen[slot]
            self._sflags[slot] = flags & ~STAGE_VALUE

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
            if not self.staged_since:
                self.staged_since = time.monotonic()
        else:  # it never reached the device: nothing was allocated for it, nothing to insert
            self._sflags[slot] &= ~STAGE_INSERT
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
        since = self.staged_since  # set by every change the device has not seen yet
        if since and time.monotonic() - since >= SYNC_INTERVAL_S:
            self.sync()

    # -- the sync: one upload, one scatter, one index update -------------------------------
    def sync(self) -> None:
        """Bring the device copy up to date: every device read calls this first. Nothing here
        waits for the device: the uploads and kernels are queued, and the host never reads
        device data back (the index's key hashes stay there, in d_khash)."""
        xp, ops = self.xp, self.ops
        self.staged_since = 0.0
        if self._pending_remove:
            d_slots = xp.asarray(np.array(self._pending_remove, dtype=np.int32))
            ops.remove(self.t_hash, self.t_slot, self.d_khash[d_slots], d_slots)
            self._pending_remove = []
        # slots holding a string to upload (with their lengths, device blocks, packed blocks)
        # and live keys not in the device index
        staged_idx, val_lens, val_offs, val_locs, insert_idx, key_lens = self._take_stage()
        n_staged, n_ins = len(staged_idx), len(insert_idx)
        self._staged_bytes = 0
        if not n_staged and not n_ins:
            self._reserved = 0
            return
        # The device blocks the writes deferred: values without one (new, or of another size
        # class than their block), then the new keys; their space was reserved by the writes.
        # One alloc_many for both (one pass per size class).
        no_block = np.flatnonzero(val_offs < 0)
        key_offs = key_lens[:0]
        if len(no_block) or n_ins:
            blocks = self.arena.alloc_many(np.concatenate([val_lens[no_block], key_lens]))
            val_offs[no_block] = blocks[: len(no_block)]
            self.val_off[staged_idx[no_block]] = val_offs[no_block]
            key_offs = blocks[len(no_block):]
            self.key_off[insert_idx] = key_offs
            self.key_len[insert_idx] = key_lens
        self._reserved = 0
        lens = np.concatenate([val_lens, key_lens])
        n_chunks = n_staged + n_ins
        src = np.zeros(n_chunks, dtype=np.int64)
        np.cumsum(lens[:-1], out=src[1:])
        # The sync's index arrays and the bytes they place go up in one transfer (a small
        # copy costs about as much as a large one): the int64 arrays first (aligned), then
        # the values (gathered from where the host keeps them), then the keys; the device
        # slices below are views into it.
        ints = np.concatenate([val_offs, key_offs, src, lens,
                               staged_idx, val_lens, insert_idx, key_lens])
        if n_ins and self._table_used + n_ins > self.t_slot.size // 2:
            self._rebuild_table(len(self) + n_ins)
        head = ints.nbytes
        total = head + int(src[-1] + lens[-1])
        host = self._upload_buffer(total)
        host[:head] = ints.view(np.uint8)
        self._gather_values(staged_idx, val_locs, val_lens, src[:n_staged] + head, host)
        if n_ins:
            gather_items(self._keys, insert_idx, host, head + int(src[n_staged]))
        d_upload = self._to_device(host[:total])
        d_ints = d_upload[:head].view(xp.int64)
        parts = np.cumsum([0, n_chunks, n_chunks, n_chunks, n_staged, n_staged, n_ins, n_ins]).tolist()
        d_dst, d_src, d_lens, d_staged, d_val_len, d_ins, d_key_len = (
            d_ints[parts[i]: parts[i + 1]] for i in range(7))
        ops.copy_segments(self.arena.buf, d_dst, d_upload[head:], d_src, d_lens)
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

    def _take_stage(self) -> tuple[np.ndarray, ...]:
        """The slots listed since the last sync (the C path's log, then Python's list; both
        start empty again), their stage flags cleared: those with a value to upload, with
        its length, device block (-1: none yet) and packed block (0: an object), and those
        whose key awaits the device index, with its length (``host_gather.take_stage``)."""
        log = self._stage_log
        n_log = int(log[0])
        listed = log[1: 1 + n_log].copy()
        log[0] = 0
        if self._stage_list:
            listed = np.concatenate([listed, np.array(self._stage_list, dtype=np.int64)])
            self._stage_list = []
        return take_stage(listed, self.stage_flags, self.val_len, self.val_off, self.value_loc, self._keys)

    def _gather_values(self, slots: np.ndarray, loc: np.ndarray, lens: np.ndarray, at: np.ndarray,
                       host: np.ndarray) -> None:
        """The staged strings of ``slots`` (packed blocks ``loc``) into ``host`` at offsets
        ``at``: packed ones from the region (one memcpy each), the rest (longer strings) from
        their objects."""
        if not len(slots):
            return
        packed = loc != 0
        if packed.any():
            gather_segments(self._region, loc[packed] * BLOCK, host, at[packed], lens[packed])
        values = self._values
        for slot, offset in zip(slots[~packed].tolist(), at[~packed].tolist()):
            value = values[slot]
            host[offset: offset + len(value)] = np.frombuffer(value, dtype=np.uint8)

    def _upload_buffer(self, nbytes: int) -> np.ndarray:
        """The host buffer a sync builds its upload in, reused (grown to a power of two)."""
        buf = self._upload_host
        if buf is None or buf.size < nbytes:
            buf = self._upload_host = self._host_buffer(_pow2_at_least(nbytes))
        return buf

    def _host_buffer(self, nbytes: int) -> np.ndarray:
        return np.empty(nbytes, dtype=np.uint8)

    def _to_device(self, host: np.ndarray):
        """``host`` on the device; NumPy: the buffer itself (the sync uses it before it returns)."""
        return host

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
        host = super().used_memory() + sum(getattr(self, name).nbytes for name in _HOST_SLOT_ARRAYS) \
            + self._stage_log.nbytes
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
    _warmed = False  # warm_up ran in this process

    def __init__(self, capacity: int = 64) -> None:
        import cupy

        from .kernels import CudaKernels

        if CupyStore._kernels is None:
            CupyStore._kernels = CudaKernels(cupy)
        self._upload_done = None  # the event after the last upload (its buffer is reused)
        super().__init__(cupy, CupyStore._kernels, capacity)
        if not CupyStore._warmed:  # at start-up (the keyspace's first store), not in a client's write
            CupyStore._warmed = True
            from .warmup import warm_up

            warm_up(CupyStore())

    def _upload_buffer(self, nbytes: int) -> np.ndarray:
        if self._upload_done is not None:  # the last sync's copy has read the buffer (mostly
            self._upload_done.synchronize()  # long done: a sync comes SYNC_INTERVAL_S later)
            self._upload_done = None
        return super()._upload_buffer(nbytes)

    def _host_buffer(self, nbytes: int) -> np.ndarray:
        """Pinned (page-locked) memory: the copy is one DMA the host does not wait for.
        (cupy.cuda's allocator, not cupyx.empty_pinned: importing cupyx would cost the
        server's first sync; see bench/results/store/stage_by_slot.md.)"""
        memory = self.xp.cuda.alloc_pinned_memory(nbytes)
        return np.ndarray((nbytes,), dtype=np.uint8, buffer=memory)  # holds the memory

    def _to_device(self, host: np.ndarray):
        cupy = self.xp
        stream = cupy.cuda.get_current_stream()
        d_upload = cupy.empty(host.size, dtype=cupy.uint8)
        d_upload.set(host, stream=stream)  # asynchronous from pinned memory
        self._upload_done = stream.record()
        return d_upload
