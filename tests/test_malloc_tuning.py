"""predis_server/malloc_tuning.py: after tune_malloc, a reply-sized block (1 MiB) comes from
the heap instead of a mapping of its own (glibc's mallinfo2 counts the mappings)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes
from predis_server.malloc_tuning import tune_malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2

def mappings_for_a_block():
    before = libc.mallinfo2().hblks
    block = bytearray(1 << 20)
    during = libc.mallinfo2().hblks
    del block
    return during - before

untuned = mappings_for_a_block()
print(untuned, int(tune_malloc()), mappings_for_a_block())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_reply_sized_blocks_come_from_the_heap_after_tuning():
    try:
        out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                             timeout=60, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
                             ).stdout.split()
    except subprocess.CalledProcessError as exc:
        if "mallinfo2" in exc.stderr or "libc.so.6" in exc.stderr:
            pytest.skip("not glibc 2.33+")
        raise
    untuned, applied, tuned = map(int, out)
    assert applied == 1
    assert untuned == 1  # glibc's default: a mapping of its own
    assert tuned == 0
