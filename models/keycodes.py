"""Vectorised, process-stable key codes: a 64-bit key hash, a hash of the key without its
numeric suffix, and that suffix as an integer (-1 when the key has none).

``user:1001`` -> (hash(b"user:1001"), hash(b"user:"), 1001). The collector stores these
instead of keys; the candidate generator uses them as key identities both when training
from collector segments and when serving, so training and serving see the same ids.
Python's ``hash()`` is salted per process, hence this hash: the key zero-padded to 8-byte
words, each word salted by its position and mixed (splitmix64 finaliser), the sum mixed
again with the length. One batch is one set of NumPy operations on an (n, width) matrix.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_TEN = np.array([10**i for i in range(19)], dtype=np.int64)


def _mix(h: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(30))
        h = h * np.uint64(0xBF58476D1CE4E5B9)
        h = h ^ (h >> np.uint64(27))
        h = h * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


_WIDE = 64  # keys up to this long take the fixed-width path
_COLS = np.arange(_WIDE, dtype=np.int64)


def key_codes(keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(key_hash uint64, prefix_hash uint64, suffix int64) for each key, in one vectorised pass."""
    n = len(keys)
    if n <= _SMALL_BATCH:
        return _python_codes(keys)  # NumPy's per-call overhead dwarfs a few keys' work
    lens = np.fromiter(map(len, keys), dtype=np.int64, count=n)
    if int(lens.max()) <= _WIDE:
        return _fixed_width_codes(keys, lens)
    return _python_codes(keys)  # a key longer than _WIDE bytes: rare, per key in Python


def _fixed_width_codes(keys: Sequence[bytes], lens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes computed on an (n, width) byte matrix hashed 8 bytes at a time.

    ``np.array(keys, "S<w>")`` copies every key in C (zero-padded to a multiple of 8 bytes);
    the hash then works on uint64 words, not bytes: no per-byte segment bookkeeping, 8x fewer
    64-bit operations. The length is mixed in, so trailing NUL bytes still count.
    """
    n = len(keys)
    width = -(-max(1, int(lens.max())) // 8) * 8
    return padded_codes(np.array(keys, dtype=f"S{width}").view(np.uint8).reshape(n, width), lens)


def padded_codes(buf: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The codes of keys held zero-padded in the rows of an (n, width) uint8 matrix (width a
    multiple of 8, at most 64), ``lens`` their lengths: the collector's ring holds short keys
    so (``models.collector``)."""
    n, width = buf.shape
    lens = lens.astype(np.int64, copy=False)
    cols = _COLS[:width]
    inside = cols < lens[:, None]
    is_digit = (buf >= 48) & (buf <= 57) & inside
    non_digit = inside & ~is_digit
    # the last non-digit column (-1: none), from an argmax over the reversed rows
    last_non_digit = np.where(non_digit.any(axis=1), width - 1 - np.argmax(non_digit[:, ::-1], axis=1), -1)
    in_suffix = is_digit & (cols > last_non_digit[:, None])
    n_digits = in_suffix.sum(axis=1)
    key_hash = _words_hash(buf, lens)
    suffix = np.full(n, -1, dtype=np.int64)
    rows = np.flatnonzero(n_digits)
    if len(rows) == 0:
        return key_hash, key_hash.copy(), suffix
    stripped = buf.copy()
    stripped[in_suffix] = 0
    prefix_hash = _words_hash(stripped, lens - n_digits)
    # the suffix's last 18 digits as an integer: Horner's rule column by column (a few
    # operations on n-vectors per column, not a gather of powers of ten per byte)
    take = in_suffix[rows] & (cols >= (lens[rows] - 18)[:, None])
    digits = buf[rows].astype(np.int64) - 48
    value = np.zeros(len(rows), dtype=np.int64)
    for col in range(width):
        value = np.where(take[:, col], value * 10 + digits[:, col], value)
    suffix[rows] = value
    return key_hash, prefix_hash, suffix


_WORD_SALT = _mix(np.arange(1, _WIDE // 8 + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))


def _words_hash(buf: np.ndarray, lens: np.ndarray) -> np.ndarray:
    words = buf.view(np.uint64)  # (n, width/8), little-endian words of the zero-padded key
    with np.errstate(over="ignore"):
        mixed = _mix(words ^ _WORD_SALT[:words.shape[1]])
        mixed[_COLS[:words.shape[1]] * 8 >= lens[:, None]] = 0  # padding words: the batch's width must not count
        total = mixed.sum(axis=1, dtype=np.uint64)
        return _mix(total + lens.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))


_SMALL_BATCH = 24
_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix_int(h: int) -> int:
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & _M64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & _M64
    return h ^ (h >> 31)


_SALT_INTS: list[int] = []


def _hash_int(key: bytes) -> int:
    """The word hash of one key, in Python ints (equal to ``_words_hash``)."""
    salts = _SALT_INTS
    total = 0
    for j in range(0, len(key), 8):
        w = j >> 3
        while w >= len(salts):
            salts.append(_mix_int(((len(salts) + 1) * _GOLDEN) & _M64))
        total += _mix_int(int.from_bytes(key[j:j + 8], "little") ^ salts[w])
    return _mix_int((total + len(key) * _GOLDEN) & _M64)


def _python_codes(keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hashes, prefixes, suffixes = [], [], []
    for key in keys:
        h = _hash_int(key)
        prefix = key.rstrip(b"0123456789")
        hashes.append(h)
        if len(prefix) == len(key):
            prefixes.append(h)
            suffixes.append(-1)
        else:
            prefixes.append(_hash_int(prefix))
            suffixes.append(int(key[len(prefix):][-18:]))
    return (np.array(hashes, dtype=np.uint64), np.array(prefixes, dtype=np.uint64),
            np.array(suffixes, dtype=np.int64))


def prefix_of(key: bytes) -> tuple[bytes, int, int]:
    """(prefix bytes, suffix value or -1, suffix width) for one key (serving: building stride keys)."""
    prefix = key.rstrip(b"0123456789")
    digits = key[len(prefix):]
    if not digits:
        return key, -1, 0
    return prefix, int(digits[-18:]), len(digits)
