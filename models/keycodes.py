"""Vectorised, process-stable key codes: a 64-bit key hash, a hash of the key without its
numeric suffix, and that suffix as an integer (-1 when the key has none).

``user:1001`` -> (hash(b"user:1001"), hash(b"user:"), 1001). The collector stores these
instead of keys; the candidate generator uses them as key identities both when training
from collector segments and when serving, so training and serving see the same ids.
Python's ``hash()`` is salted per process, hence this polynomial hash (uint64, wrapping),
finished with splitmix64 so near-identical keys spread.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_P = np.uint64(0x100000001B3)
_MAX_POW = 4096
_POW = np.ones(_MAX_POW, dtype=np.uint64)
with np.errstate(over="ignore"):
    for _i in range(1, _MAX_POW):
        _POW[_i] = _POW[_i - 1] * _P
_TEN = np.array([10**i for i in range(19)], dtype=np.int64)


def _mix(h: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(30))
        h = h * np.uint64(0xBF58476D1CE4E5B9)
        h = h ^ (h >> np.uint64(27))
        h = h * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def key_codes(keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(key_hash uint64, prefix_hash uint64, suffix int64) for each key, in one vectorised pass."""
    n = len(keys)
    lens = np.fromiter(map(len, keys), dtype=np.int64, count=n)
    key_hash = np.zeros(n, dtype=np.uint64)
    prefix_hash = np.zeros(n, dtype=np.uint64)
    suffix = np.full(n, -1, dtype=np.int64)
    suffix_len = np.zeros(n, dtype=np.int64)
    total = int(lens.sum()) if n else 0
    if total:
        buf = np.frombuffer(b"".join(keys), dtype=np.uint8)
        ends = np.cumsum(lens)
        starts = ends - lens
        nonempty = lens > 0
        seg = np.repeat(np.arange(n), lens)
        pos = np.arange(total, dtype=np.int64)
        offset = pos - starts[seg]
        is_digit = (buf >= 48) & (buf <= 57)
        s = starts[nonempty]
        last_non_digit = np.maximum.reduceat(np.where(is_digit, -1, pos), s)
        lnd = np.full(n, -1, dtype=np.int64)
        lnd[nonempty] = last_non_digit
        in_suffix = is_digit & (pos > lnd[seg])
        weights = _POW[np.minimum(offset, _MAX_POW - 1)]
        vals = buf.astype(np.uint64) + np.uint64(1)
        with np.errstate(over="ignore"):
            term = vals * weights
            key_hash[nonempty] = np.add.reduceat(term, s)
            prefix_hash[nonempty] = np.add.reduceat(np.where(in_suffix, np.uint64(0), term), s)
        from_end = ends[seg] - 1 - pos
        digit_term = np.where(in_suffix & (from_end < 18), (buf.astype(np.int64) - 48) * _TEN[np.minimum(from_end, 18)], 0)
        digits = np.add.reduceat(digit_term, s)
        n_digits = np.add.reduceat(in_suffix.astype(np.int64), s)
        suffix_len[nonempty] = n_digits
        has_suffix = n_digits > 0
        sfx = np.full(int(nonempty.sum()), -1, dtype=np.int64)
        sfx[has_suffix] = digits[has_suffix]
        suffix[nonempty] = sfx
    with np.errstate(over="ignore"):
        key_hash = _mix(key_hash + lens.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        prefix_len = lens - suffix_len
        prefix_hash = _mix(prefix_hash + prefix_len.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    return key_hash, prefix_hash, suffix


def prefix_of(key: bytes) -> tuple[bytes, int, int]:
    """(prefix bytes, suffix value or -1, suffix width) for one key (serving: building stride keys)."""
    prefix = key.rstrip(b"0123456789")
    digits = key[len(prefix):]
    if not digits:
        return key, -1, 0
    return prefix, int(digits[-18:]), len(digits)
