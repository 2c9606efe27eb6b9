"""Host-side byte gathers for the GPU store's sync (gpu/cuda.py): the staged values and new
keys copied into one upload buffer, and the one-pass walk over the listed slots. Each has a C
form in gpu/_gather.c (a memcpy per item; NumPy's fancy indexing goes byte by byte and a pass
per array costs a cache miss per slot each) and a Python fallback when it is not built or
PREDIS_NATIVE=no."""
from __future__ import annotations

import os

import numpy as np

try:
    from . import _gather as native_gather
except ImportError:  # built without a compiler: the Python loops below
    native_gather = None
if os.environ.get("PREDIS_NATIVE", "yes").strip().lower() in ("0", "no", "off", "false"):
    native_gather = None

# stage_flags bits (_fastpath.c and _gather.c have the same)
STAGE_VALUE, STAGE_INSERT, STAGE_LISTED = 1, 2, 4


def gather_segments(src, src_off: np.ndarray, dst: np.ndarray, dst_off: np.ndarray, lens: np.ndarray) -> None:
    """``dst[dst_off[i]:][:lens[i]] = src[src_off[i]:][:lens[i]]`` for every i (gpu/_gather.c)."""
    if native_gather is not None:
        native_gather.gather(src, src_off, dst, dst_off, lens)
        return
    source, target = memoryview(src), memoryview(dst)
    for s, d, n in zip(src_off.tolist(), dst_off.tolist(), lens.tolist()):
        target[d: d + n] = source[s: s + n]
    source.release()


def item_lengths(items: list, index: np.ndarray) -> np.ndarray:
    """``len(items[i])`` for every i in ``index`` (int64), items being bytes."""
    out = np.empty(len(index), dtype=np.int64)
    if native_gather is not None:
        native_gather.lengths(items, index, out)
    else:
        out[:] = [len(items[i]) for i in index.tolist()]
    return out


def gather_items(items: list, index: np.ndarray, dst: np.ndarray, at: int) -> None:
    """``dst[at:][:total] = b"".join(items[i] for i in index)``, without the join."""
    if native_gather is not None:
        native_gather.gather_items(items, index, dst, at)
        return
    joined = b"".join([items[i] for i in index.tolist()])
    dst[at: at + len(joined)] = np.frombuffer(joined, dtype=np.uint8)


def take_stage(listed: np.ndarray, stage_flags: np.ndarray, val_len: np.ndarray, val_off: np.ndarray,
               value_loc: np.ndarray, keys: list) -> tuple[np.ndarray, ...]:
    """The stage flags of ``listed`` cleared, and (slots with a value to upload, their val_len,
    val_off (-1: no device block yet) and value_loc (0: an object), slots whose key awaits the
    device index, their keys' lengths)."""
    if native_gather is not None:
        plan = np.empty((6, len(listed)), dtype=np.int64)
        n_staged, n_ins = native_gather.take_stage(listed, stage_flags, val_len, val_off, value_loc, keys, plan)
        return (plan[0, :n_staged], plan[1, :n_staged], plan[2, :n_staged], plan[3, :n_staged],
                plan[4, :n_ins], plan[5, :n_ins])
    flags = stage_flags[listed]
    stage_flags[listed] = 0
    staged, inserted = listed[(flags & STAGE_VALUE) != 0], listed[(flags & STAGE_INSERT) != 0]
    return (staged, val_len[staged], val_off[staged], value_loc[staged].astype(np.int64),
            inserted, item_lengths(keys, inserted))
