"""A byte arena in device memory with an allocator that reuses freed space: the GPU store's
blocks for values of BIG_VALUE bytes or more (gpu/cuda.py), each allocated and filled when it
is written. Shorter strings and all keys live in the host's packed region, which the device
mirrors page by page instead (gpu/mirror.py).

The buffer is one ``xp.uint8`` array (CuPy on the GPU, NumPy in the host emulation used by
tests). Allocation sizes are rounded to size classes (16-byte steps up to 128, then four
steps per doubling, so waste stays under 25%); a freed block goes on its class's free list
and the next allocation of that class takes it before the bump pointer moves. The
bookkeeping (bump pointer, free lists) is host-side: it is a few integers per operation.

Growth allocates the larger buffer *before* releasing the old one, so a device
out-of-memory error leaves the arena and everything in it intact and surfaces as
``StoreFull`` to the write that asked for space. ``_allocate`` is the GPU store's one device
allocation with that error mapping (the region mirror grows through it too).
"""
from __future__ import annotations

from .interface import StoreFull

MIN_CAPACITY = 1 << 20


def size_class(n: int) -> int:
    """The block size an ``n``-byte allocation really takes."""
    if n <= 128:
        return max(16, (n + 15) & ~15)
    step = 1 << ((n - 1).bit_length() - 3)  # four classes per power of two
    return (n + step - 1) & ~(step - 1)


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
