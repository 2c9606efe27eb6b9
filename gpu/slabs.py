"""Short byte strings packed into one anonymous memory region, freed space reused by size class.

A Python ``bytes`` object costs 33 bytes of header and is rounded up by pymalloc to 16 bytes:
a 100-byte value takes 144 bytes, plus the 8-byte pointer that holds it. Packed here it takes
its length rounded up to 4, plus the store's 4-byte location: this is most of what lets the
CPU store stay near Redis's memory per key (``bench/vs_redis.py``).

The region is one anonymous ``mmap`` reserved large and never resized (``MAP_NORESERVE``: only
pages actually written count towards RSS); slicing an ``mmap`` returns ``bytes`` with one copy,
which is what GET replies need. Space comes from a bump pointer or from the free list of the
value's size class, so a freed block is reused by the next value of the same class. A location
is a block number (offset / BLOCK) that fits in 32 bits; the store slices
``region[loc * BLOCK: loc * BLOCK + length]`` itself on its hot paths. Block 0 is never handed
out, so 0 means "not packed". A full region makes ``store`` return 0: the value then stays a
Python object, nothing fails.

The CPU store packs strings of up to PACKED_MAX bytes (size classes of BLOCK bytes). The GPU
store (gpu/cuda.py) packs longer strings and its keys too, so that the device can mirror the
region page by page; above PACKED_MAX the classes are four per power of two (at most 25%
waste), so that freed blocks of long strings are reused by strings of similar length.
"""
from __future__ import annotations

import mmap
from array import array

import numpy as np

BLOCK = 4
PACKED_MAX = 1024  # longer values stay Python objects: their header is a small share
RESERVE = BLOCK << 32  # 16 GiB of address space (locations are uint32 block numbers)
# ValueSlabs.state: the bump pointer, the region's end (both in blocks) and the live bytes,
# in one int64 array so that the C fast path (fastpath_c/slabs.h) packs new keys' values as store does
TOP, LIMIT, USED, FREE = 0, 1, 2, 3  # FREE: entries in the free lists (fastpath_c/view.h SLAB_FREE)


def size_class(length: int) -> int:
    """Bytes a packed value of ``length`` occupies: a multiple of BLOCK up to PACKED_MAX, then
    four classes per power of two. Lengths of one BLOCK class always share a class here."""
    if length <= PACKED_MAX:
        return (length + BLOCK - 1) & -BLOCK or BLOCK
    step = 1 << ((length - 1).bit_length() - 3)
    return (length + step - 1) & -step


def _reserve() -> mmap.mmap:
    flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_NORESERVE", 0)
    size = RESERVE
    while True:
        try:
            return mmap.mmap(-1, size, flags=flags)
        except OSError:  # strict overcommit (vm.overcommit_memory=2): reserve less
            if size <= 1 << 24:
                raise
            size >>= 2


class ValueSlabs:
    def __init__(self) -> None:
        self.region = _reserve()
        self.free: dict[int, array] = {}  # size class -> free locations (4 bytes each)
        self.state = np.array([1, len(self.region) // BLOCK, 0, 0], dtype=np.int64)  # block 0 unused
        self._state = memoryview(self.state)  # item access several times cheaper than NumPy's

    @property
    def used_bytes(self) -> int:
        """Size classes of the live packed values."""
        return self._state[USED]

    def store(self, value: bytes) -> int:
        """Copy ``value`` in; its location, 0 if the region is full (up to LIMIT)."""
        n = len(value)
        # size_class, inlined for short values (once a new key)
        cls = ((n + BLOCK - 1) & -BLOCK or BLOCK) if n <= PACKED_MAX else size_class(n)
        free = self.free.get(cls)
        state = self._state
        if free:
            loc = free.pop()
            state[FREE] -= 1
        else:
            loc = state[TOP]
            if loc + cls // BLOCK > state[LIMIT]:
                return 0
            state[TOP] = loc + cls // BLOCK
        off = loc * BLOCK
        self.region[off: off + len(value)] = value
        state[USED] += cls
        return loc

    def release(self, loc: int, length: int) -> None:
        cls = size_class(length)
        self._state[USED] -= cls
        self._state[FREE] += 1
        free = self.free.get(cls)
        if free is None:
            self.free[cls] = array("I", (loc,))
        else:
            free.append(loc)

    def memory_bytes(self) -> int:
        """Bytes the packed values use, as an allocator counts them (Redis's used_memory):
        live blocks and the free lists' entries. Freed blocks wait for reuse and still count
        in RSS, as jemalloc's do in Redis's mem_fragmentation_ratio."""
        return self.used_bytes + 4 * self._state[FREE]  # "I" arrays: 4 bytes an entry, counted as kept

    def close(self) -> None:
        self.region.close()
