"""The GPU store's device copy of the host's packed region and slot arrays, kept page by page.

The host writes; the device follows. Every write marks what it touched in two small dirty
maps: one byte per 4 KiB page of the packed region (``region_dirty``) and one byte per 1024
slots of the per-slot arrays (``slot_dirty``). The C fast path does the same in
predis_server/fastpath_c/mirror_marks.h (mark_region, mark_slot), so a write costs a byte
store or two and no per-slot stage, list or Python call. ``state`` holds what both paths
update besides: SINCE (monotonic ns of the oldest change not on the device, 0: none) and
INSERTS (new keys since the last sync: the index's growth).

A sync (gpu/cuda.py ``ArenaStore.sync``) takes the dirty pages, coalesced into a bounded
number of runs (gaps of up to MERGE_GAP clean pages merged, then the smallest gaps until at
most SLOT_RUNS or REGION_RUNS runs are left; a region run is cut where one registered chunk
meets the next, a few more copies at most), and copies slot runs *before* region runs: the
host writes a key's bytes before the slot arrays that point at them, so a copy of the slot
arrays that shows a key is followed by one of bytes at least as new. Nothing is read back
and nothing waits: on CUDA (``CudaPageMirror``) the copies are asynchronous DMAs, from the
region registered with CUDA chunk by chunk as its mirror grows (``cudaHostRegister`` on the
new sub-range only: the region is a MAP_NORESERVE reservation of 16 GiB); the slot arrays are
plain (pageable) host memory, which the driver stages: a sync's slot pages are a few KiB each,
while pinned arrays would be allocated anew (cudaHostAlloc pins and maps every page) each time
the arrays grow. A page the host writes while its copy is in flight is marked again
and copied by the next sync, so the device is exact after the sync that precedes a read.

The region's device mirror holds [0, capacity); the host bytes its copies read are
[0, mirrored), mirrored <= capacity, grown a step at a time (MIRRORED_STEP) while the device
mirror doubles. The slabs' LIMIT is kept at ``mirrored`` (>= their TOP), so the C path's new
keys fall back to the store's ``set`` at the edge, which extends it (``grow_region``: on the
device allocate and copy when the capacity is short, then register the next step) or fails
with StoreFull before it changes anything.
"""
from __future__ import annotations

from bisect import bisect_right
from time import monotonic_ns as _monotonic_ns

import numpy as np

from .interface import StoreFull

PAGE_SHIFT = 12  # region pages of 4 KiB (fastpath_c/view.h PAGE_SHIFT)
SLOT_PAGE_SHIFT = 10  # slot pages of 1024 slots (fastpath_c/view.h SLOT_PAGE_SHIFT)
SINCE, INSERTS = 0, 1  # PageMirror.state (fastpath_c/view.h MIRROR_*)
MERGE_GAP = 4  # clean pages between two dirty ones copied rather than a second copy issued
REGION_RUNS = 32  # copies of region runs a sync issues at most
SLOT_RUNS = 8  # runs of slot pages (each a copy per mirrored array)
MIN_MIRROR = 1 << 20
GROWTH_STEP = 1 << 30  # the mirror doubles up to this, then grows by it
# The host range the device copies read from (registered with CUDA, which pins and populates
# each page) grows in steps of at least MIRRORED_STEP or an eighth of itself, not with the device
# mirror's doubling: registering the doubled range at once pinned up to twice the pages the
# slabs used, long before any write reached them.
MIRRORED_STEP = 4 << 20
MIRRORED_SHARE = 8


def dirty_runs(bitmap: np.ndarray, n_pages: int, max_runs: int, merge_gap: int = MERGE_GAP) -> list[tuple[int, int]]:
    """The marked pages of ``bitmap[:n_pages]`` as at most ``max_runs`` [start, end) runs of
    pages, the marks cleared. Gaps of up to ``merge_gap`` clean pages are merged into their
    run, then the smallest remaining gaps until ``max_runs`` runs are left."""
    pages = np.flatnonzero(bitmap[:n_pages])
    if not len(pages):
        return []
    bitmap[pages] = 0
    gaps = np.diff(pages) - 1
    breaks = np.flatnonzero(gaps > merge_gap)
    if len(breaks) >= max_runs:  # keep the max_runs - 1 largest gaps
        cut = len(breaks) - (max_runs - 1)
        breaks = np.sort(breaks[np.argpartition(gaps[breaks], cut)[cut:]]) if max_runs > 1 else breaks[:0]
    starts = np.concatenate([pages[:1], pages[breaks + 1]])
    ends = np.concatenate([pages[breaks], pages[-1:]]) + 1
    return list(zip(starts.tolist(), ends.tolist()))


class PageMirror:
    """Dirty maps, the device's region mirror and the copies, over an array namespace ``xp``
    (NumPy: plain slice copies into separate arrays, so CI runs the same bookkeeping)."""

    def __init__(self, xp, arena) -> None:
        self.xp = xp
        self._arena = arena  # its _allocate: the store's device allocation (StoreFull on OOM)
        self.state = np.zeros(2, dtype=np.int64)
        self._state = memoryview(self.state)
        self.region = xp.zeros(0, dtype=xp.uint8)  # the device mirror of [0, capacity)
        self.capacity = 0
        self.mirrored = 0  # host region bytes [0, mirrored) the copies may read (CUDA: registered)
        self.host_region = None  # the slabs' mmap, once open
        self.region_dirty = np.zeros(0, dtype=np.uint8)
        self.slot_dirty = np.zeros(0, dtype=np.uint8)
        self._cuts: list[int] = []  # region offsets where one registered chunk meets the next
        self._rdirty = memoryview(self.region_dirty)
        self._sdirty = memoryview(self.slot_dirty)

    # -- marks ----------------------------------------------------------------------------
    def open_region(self, host_region) -> None:
        """The slabs opened their region (an mmap): a mark per page of all of it (lazily zero)."""
        self.host_region = host_region
        self.region_dirty = np.zeros((len(host_region) >> PAGE_SHIFT) + 1, dtype=np.uint8)
        self._rdirty = memoryview(self.region_dirty)

    def grow_slots(self, capacity: int) -> None:
        old = self.slot_dirty
        self.slot_dirty = np.zeros((capacity >> SLOT_PAGE_SHIFT) + 1, dtype=np.uint8)
        self.slot_dirty[: len(old)] = old
        self._sdirty = memoryview(self.slot_dirty)

    def mark_region(self, offset: int, n: int) -> None:
        first, last = offset >> PAGE_SHIFT, (offset + max(n, 1) - 1) >> PAGE_SHIFT
        state = self._state
        if first == last:
            self._rdirty[first] = 1
        else:
            self.region_dirty[first: last + 1] = 1
        if not state[SINCE]:
            state[SINCE] = _monotonic_ns()

    def mark_slot(self, slot: int) -> None:
        self._sdirty[slot >> SLOT_PAGE_SHIFT] = 1
        state = self._state
        if not state[SINCE]:
            state[SINCE] = _monotonic_ns()

    # -- the region's device mirror ---------------------------------------------------------
    def grow_region(self, needed: int) -> int:
        """Mirror at least ``needed`` region bytes (StoreFull, nothing changed, if the device has
        no room); the new ``mirrored`` end, which the slabs' LIMIT follows."""
        if needed > self.capacity:
            capacity = max(self.capacity, MIN_MIRROR)
            while capacity < needed:
                capacity = capacity * 2 if capacity < GROWTH_STEP else capacity + GROWTH_STEP
            capacity = min(capacity, len(self.host_region))
            if capacity < needed:
                raise StoreFull(f"the packed region is full ({capacity} bytes)")
            new = self._arena._allocate(capacity)
            new[: self.capacity] = self.region[: self.capacity]  # a device-side copy
            self.region, self.capacity = new, capacity
        if needed > self.mirrored:
            end = max(needed, self.mirrored + max(MIRRORED_STEP, self.mirrored // MIRRORED_SHARE))
            end = min(-(-end >> PAGE_SHIFT) << PAGE_SHIFT, self.capacity)
            self._registered(self.mirrored, end)
            self.mirrored = end
        return self.mirrored

    def _registered(self, start: int, end: int) -> None:
        """Host region bytes [start, end) now mirrored (CUDA: registered for DMA)."""

    @property
    def registered_bytes(self) -> int:
        """Host region bytes held resident for the device's copies (CUDA's registration)."""
        return 0

    def release(self) -> None:
        """Before the region closes (FLUSHALL, a store dropped): undo what _registered did."""
        self.host_region = None

    # -- copies -----------------------------------------------------------------------------
    def upload(self, dst, src: np.ndarray, start: int, end: int) -> None:
        """``dst[start:end] = src[start:end]`` from host array ``src`` to device array ``dst``."""
        dst[start:end] = src[start:end]

    def upload_slots(self, runs: list[tuple[int, int]], pairs: list[tuple], capacity: int) -> None:
        """The slot pages of ``runs`` of every (device, host) array pair."""
        for first, last in runs:
            start, end = first << SLOT_PAGE_SHIFT, min(last << SLOT_PAGE_SHIFT, capacity)
            for dst, src in pairs:
                self.upload(dst, src, start, end)

    def upload_region(self, runs: list[tuple[int, int]]) -> None:
        view = np.frombuffer(self.host_region, dtype=np.uint8)  # released below: the mmap can close
        try:
            for start, end in self.byte_ranges(runs):
                self.upload(self.region, view, start, end)
        finally:
            del view

    def byte_ranges(self, runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The region bytes of page ``runs``, cut where one registered chunk ends and the next
        begins: one CUDA copy may not span two registrations (cudaErrorInvalidValue)."""
        cuts = self._cuts
        out = []
        for first, last in runs:
            start, end = first << PAGE_SHIFT, min(last << PAGE_SHIFT, self.mirrored)
            for cut in cuts[bisect_right(cuts, start): bisect_right(cuts, end - 1)]:
                out.append((start, cut))
                start = cut
            out.append((start, end))
        return out


class CudaPageMirror(PageMirror):
    """The copies as DMAs the host does not wait for: the region registered in chunks."""

    def __init__(self, cupy, arena) -> None:
        super().__init__(cupy, arena)
        self._chunks: list[tuple[int, int]] = []  # (address, bytes) registered
        self._region_address = 0

    def open_region(self, host_region) -> None:
        super().open_region(host_region)
        view = np.frombuffer(host_region, dtype=np.uint8)
        self._region_address = view.ctypes.data
        del view

    def _registered(self, start: int, end: int) -> None:
        runtime = self.xp.cuda.runtime
        if start:  # a copy never spans two chunks, registered or not
            self._cuts.append(start)
        try:
            runtime.hostRegister(self._region_address + start, end - start, 0)
        except runtime.CUDARuntimeError:  # copies from it stay correct, through a staging buffer
            return
        self._chunks.append((self._region_address + start, end - start))

    @property
    def registered_bytes(self) -> int:
        return sum(size for _, size in self._chunks)

    def release(self) -> None:
        # no copy may still read the region once it is unregistered
        self.xp.cuda.get_current_stream().synchronize()
        if self._chunks:
            for address, _ in self._chunks:
                self.xp.cuda.runtime.hostUnregister(address)
            self._chunks, self._cuts = [], []
        super().release()

    def upload(self, dst, src: np.ndarray, start: int, end: int) -> None:
        if end <= start:
            return
        width = src.itemsize
        self.xp.cuda.runtime.memcpyAsync(dst.data.ptr + start * width, src.ctypes.data + start * width,
                                         (end - start) * width, 1,  # cudaMemcpyHostToDevice
                                         self.xp.cuda.get_current_stream().ptr)
