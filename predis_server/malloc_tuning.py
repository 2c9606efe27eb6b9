"""glibc malloc settings for a server that allocates and frees large reply buffers all day.

glibc serves each allocation of 128 KiB or more with its own ``mmap`` and gives it back with
``munmap`` when freed, and trims the heap's free top above 128 KiB (both thresholds move up
only as far as the largest block freed so far). A pipelined MGET of 100 keys builds a 175 KB
reply per connection per tick, so every tick paid page faults on fresh pages and the
unmapping (bench/request_path.py's MGET-100 at -P 16: 13.0 µs CPU per MGET with
``--untuned-malloc``, 9.4 µs tuned; bench/results/request_path*.md). Redis's jemalloc keeps freed
pages for reuse and purges them after a delay; these settings give glibc the same habit
within bounds: blocks up to MMAP_THRESHOLD come from the heap, and up to TRIM_THRESHOLD of
free heap top is kept for the next tick. Blocks above (big values) still get their own
mapping and go back to the system when freed.
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 32 << 20


def tune_malloc() -> bool:
    """Apply the settings where the C library is glibc; whether they were applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
        gnu_get_libc_version = libc.gnu_get_libc_version  # glibc only (musl has no libc.so.6 of this)
    except (OSError, AttributeError):
        return False
    del gnu_get_libc_version
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
