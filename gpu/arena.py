"""A byte arena in device memory with an allocator that reuses freed space.

The buffer is one ``xp.uint8`` array (CuPy on the GPU, NumPy in the host emulation used by
tests). Allocation sizes are rounded to size classes (16-byte steps up to 128, then four
steps per doubling, so waste stays under 25%); a freed block goes on its class's free list
and the next allocation of that class takes it before the bump pointer moves. The
bookkeeping (bump pointer, free lists) is host-side: it is a few integers per operation.

Growth allocates the larger buffer *before* releasing the old one, so a device
out-of-memory error leaves the arena and everything in it intact and surfaces as
``StoreFull`` to the write that asked for space.
"""
from __future__ import annotations

import numpy as np

from .interface import StoreFull

MIN_CAPACITY = 1 << 20


def size_class(n: int) -> int:
    """The block size an ``n``-byte allocation really takes."""
    if n <= 128:
        return max(16, (n + 15) & ~15)
    step = 1 << ((n - 1).bit_length() - 3)  # four classes per power of two
    return (n + step - 1) & ~(step - 1)


def size_classes(n: np.ndarray) -> np.ndarray:
    """``size_class`` of every length in ``n`` (int64), vectorised."""
    n = np.asarray(n, dtype=np.int64)
    out = np.maximum(16, (n + 15) & ~15)
    big = np.flatnonzero(n > 128)
    if len(big):  # four classes per power of two: steps of a power of two over 128
        m = n[big]
        # bit length of m - 1 (exact through float64 for any length a value can have)
        step = np.left_shift(1, np.frexp((m - 1).astype(np.float64))[1].astype(np.int64) - 3)
        out[big] = (m + step - 1) & ~(step - 1)
    return out


def size_bound(n: int) -> int:
    """An upper bound of ``size_class(n)`` that costs no branch: what a deferred write reserves."""
    return n + (n >> 2) + 16


class DeviceArena:
    def __init__(self, xp, capacity: int = MIN_CAPACITY) -> None:
        self.xp = xp
        self.buf = self._allocate(max(capacity, MIN_CAPACITY))
        self.capacity = int(self.buf.size)  # bytes in buf (an attribute: read on every write)
        self.top = 0  # bump pointer: everything below was handed out at least once
        self.free_lists: dict[int, list[int]] = {}
        self.free_bytes = 0  # bytes sitting on free lists
        self.live_bytes = 0  # bytes in blocks handed out and not yet freed

    def _allocate(self, nbytes: int):
        try:
            return self.xp.empty(nbytes, dtype=self.xp.uint8)
        except MemoryError as exc:  # cupy's OutOfMemoryError subclasses MemoryError
            raise StoreFull(f"device memory exhausted allocating {nbytes} bytes") from exc
        except Exception as exc:  # CUDA errors other than OOM (e.g. cudaErrorMemoryAllocation)
            if "memory" in str(exc).lower():
                raise StoreFull(f"device memory exhausted allocating {nbytes} bytes") from exc
            raise

    def alloc(self, n: int) -> int:
        """Offset of a block for ``n`` bytes; raises StoreFull when the device has no room."""
        size = size_class(n)
        bucket = self.free_lists.get(size)
        if bucket:
            self.free_bytes -= size
            self.live_bytes += size
            return bucket.pop()
        if self.top + size > self.capacity:
            self._grow(self.top + size)
        offset = self.top
        self.top += size
        self.live_bytes += size
        return offset

    def reserve(self, nbytes: int) -> None:
        """Make room for ``nbytes`` more above the bump pointer now (raises StoreFull), so
        allocations deferred to a later ``alloc_many`` of at most that much cannot fail."""
        if self.top + nbytes > self.capacity:
            self._grow(self.top + nbytes)

    def alloc_many(self, lengths: np.ndarray) -> np.ndarray:
        """Offsets of blocks for every length in ``lengths``, free lists first, then the bump
        pointer: one pass per size class, not per block."""
        classes = size_classes(lengths)
        out = np.empty(len(classes), dtype=np.int64)
        if not len(classes):
            return out
        if classes.max() <= 1 << 16:  # classes are multiples of 16: a count per class, no sort
            sizes = np.flatnonzero(np.bincount(classes >> 4)) << 4
        else:
            sizes = np.unique(classes)
        if len(sizes) <= 8:  # the common case (a sync's values and keys): a mask per class
            groups = (np.flatnonzero(classes == size) for size in sizes)
        else:  # many classes: one stable sort groups them
            inverse = np.searchsorted(sizes, classes)
            order = np.argsort(inverse, kind="stable")
            bounds = np.searchsorted(inverse[order], np.arange(len(sizes) + 1))
            groups = (order[bounds[i]: bounds[i + 1]] for i in range(len(sizes)))
        bump = []
        for size, idx in zip(sizes.tolist(), groups):
            bucket = self.free_lists.get(size)
            take = min(len(bucket), len(idx)) if bucket else 0
            if take:
                out[idx[:take]] = bucket[-take:]
                del bucket[-take:]
                self.free_bytes -= take * size
            if take < len(idx):
                bump.append((idx[take:], size))
        needed = sum(len(idx) * size for idx, size in bump)
        if self.top + needed > self.capacity:
            self._grow(self.top + needed)
        for idx, size in bump:
            out[idx] = self.top + size * np.arange(len(idx), dtype=np.int64)
            self.top += size * len(idx)
        self.live_bytes += int(classes.sum())
        return out

    def free(self, offset: int, n: int) -> None:
        size = size_class(n)
        self.free_lists.setdefault(size, []).append(offset)
        self.free_bytes += size
        self.live_bytes -= size

    def _grow(self, needed: int) -> None:
        capacity = self.capacity
        while capacity < needed:
            capacity = capacity * 2 if capacity < (1 << 30) else capacity + (1 << 30)
        capacity = max(capacity, needed)
        new = self._allocate(capacity)
        new[: self.top] = self.buf[: self.top]
        self.buf = new
        self.capacity = capacity

    def reset(self) -> None:
        self.buf = self._allocate(MIN_CAPACITY)
        self.capacity = MIN_CAPACITY
        self.top = 0
        self.free_lists = {}
        self.free_bytes = 0
        self.live_bytes = 0
