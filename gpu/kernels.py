"""Batch kernels of the GPU store, and a NumPy emulation with the same signatures.

``CudaKernels`` compiles CuPy RawKernels; ``NumpyKernels`` computes the same results on
the host so the GPU store's bookkeeping can be tested on machines without CUDA (the GPU
test suite checks the two against each other on the accelerator machine).

The device hash index is open addressing with linear probing over a power-of-two table:
``t_hash`` (uint64, the key's 64-bit hash) and ``t_slot`` (int32: slot number, -1 empty,
-2 tombstone). A lookup matches on the hash and then compares the full key bytes (in the
device's mirror of the host's packed region, at ``key_loc[slot] * 4``), so a hash collision
can never return the wrong value. ``reconcile`` brings the index in line with the mirrored
slot arrays over a range of slots, one thread a slot: a slot whose entry no longer matches
(it went, or its key's hash changed) loses it (found by the hash it was inserted with,
``khash``), and a live slot without one gets one. Comparing hashes, not generations, makes
it idempotent: a range reconciled twice, or from a copy taken while the host was writing,
ends right once the copies are complete.
Keys hash with FNV-1a 64 followed by MurmurHash3's fmix64 finaliser, which spreads the
low bits the table mask uses.
"""
from __future__ import annotations

import numpy as np

EMPTY = -1
TOMBSTONE = -2
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = (1 << 64) - 1

CUDA_SOURCE = r"""
typedef unsigned long long u64;
typedef long long i64;

__device__ __forceinline__ u64 fmix64(u64 k) {
    k ^= k >> 33; k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33; k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33; return k;
}

__device__ __forceinline__ u64 key_hash(const unsigned char* p, i64 len) {
    u64 h = 0xcbf29ce484222325ULL;
    for (i64 j = 0; j < len; ++j) { h ^= p[j]; h *= 0x100000001b3ULL; }
    return fmix64(h);
}

#define BLOCK 4  // gpu/slabs.py BLOCK: key_loc counts 4-byte blocks

// Whether slot s holds a key within the mirror (a location past it: a copy still in flight).
__device__ __forceinline__ bool key_at(const unsigned* key_loc, const unsigned* key_len, i64 s,
                                       u64 region_size, u64* off, u64* len) {
    *off = (u64)key_loc[s] * BLOCK;
    *len = key_len[s];
    return key_loc[s] != 0 && *off + *len <= region_size;
}

// Hash each query key, probe the table, verify the full key; slot or -1.
extern "C" __global__ void lookup(const u64* t_hash, const int* t_slot, u64 mask,
                                  const unsigned char* qbuf, const i64* qoff, const i64* qlen,
                                  const unsigned char* region, u64 region_size,
                                  const unsigned* key_loc, const unsigned* key_len, i64 n, int* out) {
    i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x;
    if (i >= n) return;
    const unsigned char* q = qbuf + qoff[i];
    i64 L = qlen[i];
    u64 h = key_hash(q, L);
    u64 pos = h & mask;
    int result = -1;
    for (u64 probe = 0; probe <= mask; ++probe) {
        int s = t_slot[pos];
        if (s == -1) break;
        u64 off, len;
        if (s >= 0 && t_hash[pos] == h && key_at(key_loc, key_len, s, region_size, &off, &len)
            && len == (u64)L) {
            const unsigned char* k = region + off;
            bool eq = true;
            for (i64 j = 0; j < L; ++j) { if (k[j] != q[j]) { eq = false; break; } }
            if (eq) { result = s; break; }
        }
        pos = (pos + 1) & mask;
    }
    out[i] = result;
}

__device__ void table_insert(u64* t_hash, int* t_slot, u64 mask, u64 h, int s) {
    u64 pos = h & mask;
    for (u64 probe = 0; probe <= mask; ++probe) {
        int cur = t_slot[pos];
        while (cur < 0) {  // empty or tombstone: claim it
            int prev = atomicCAS(&t_slot[pos], cur, s);
            if (prev == cur) { t_hash[pos] = h; return; }
            cur = prev;
        }
        pos = (pos + 1) & mask;
    }
}

__device__ void table_remove(int* t_slot, u64 mask, u64 h, int s) {
    u64 pos = h & mask;
    for (u64 probe = 0; probe <= mask; ++probe) {
        int cur = t_slot[pos];
        if (cur == -1) return;
        if (cur == s) { atomicCAS(&t_slot[pos], s, -2); return; }
        pos = (pos + 1) & mask;
    }
}

// Slots lo..hi-1: the index entry of each matches its mirrored key (see the module docstring).
extern "C" __global__ void reconcile(const unsigned char* region, u64 region_size,
                                     const unsigned* key_loc, const unsigned* key_len,
                                     const unsigned char* live, unsigned char* indexed, u64* khash,
                                     u64* t_hash, int* t_slot, u64 mask, i64 lo, i64 hi) {
    i64 s = lo + blockIdx.x * (i64)blockDim.x + threadIdx.x;
    if (s >= hi) return;
    u64 off, len;
    bool alive = live[s] && key_at(key_loc, key_len, s, region_size, &off, &len);
    u64 h = alive ? key_hash(region + off, (i64)len) : 0;
    if (indexed[s]) {
        if (alive && khash[s] == h) return;
        table_remove(t_slot, mask, khash[s], (int)s);
        indexed[s] = 0;
    }
    if (alive) {
        table_insert(t_hash, t_slot, mask, h, (int)s);
        khash[s] = h;
        indexed[s] = 1;
    }
}

// One warp per segment: gathers values into a reply buffer.
extern "C" __global__ void copy_segments(unsigned char* dst, const i64* dst_off,
                                         const unsigned char* src, const i64* src_off,
                                         const i64* lens, i64 n) {
    i64 seg = (blockIdx.x * (i64)blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (seg >= n) return;
    i64 L = lens[seg];
    unsigned char* d = dst + dst_off[seg];
    const unsigned char* s = src + src_off[seg];
    for (i64 j = lane; j < L; j += 32) d[j] = s[j];
}
"""

_THREADS = 256


def host_key_hash(key: bytes) -> int:
    """The device's key hash computed in Python (tests and single keys)."""
    h = FNV_OFFSET
    for byte in key:
        h = ((h ^ byte) * FNV_PRIME) & MASK64
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & MASK64
    return h ^ (h >> 33)


class CudaKernels:
    """The RawKernels, compiled once per process on first use."""

    def __init__(self, cupy) -> None:
        self.cp = cupy
        module = cupy.RawModule(code=CUDA_SOURCE, options=("-std=c++14",))
        self._lookup = module.get_function("lookup")
        self._reconcile = module.get_function("reconcile")
        self._copy = module.get_function("copy_segments")

    @staticmethod
    def _grid(n: int, per_block: int = _THREADS) -> tuple[int]:
        return ((n + per_block - 1) // per_block,)

    def lookup(self, t_hash, t_slot, qbuf, qoff, qlen, region, key_loc, key_len):
        cp = self.cp
        n = int(qoff.size)
        out = cp.empty(n, dtype=cp.int32)
        if n:
            mask = np.uint64(t_slot.size - 1)
            self._lookup(self._grid(n), (_THREADS,), (t_hash, t_slot, mask, qbuf, qoff, qlen, region,
                                                     np.uint64(region.size), key_loc, key_len, np.int64(n), out))
        return out

    def reconcile(self, region, key_loc, key_len, live, indexed, khash, t_hash, t_slot, lo: int, hi: int) -> None:
        if hi > lo:
            self._reconcile(self._grid(hi - lo), (_THREADS,),
                            (region, np.uint64(region.size), key_loc, key_len, live, indexed, khash,
                             t_hash, t_slot, np.uint64(t_slot.size - 1), np.int64(lo), np.int64(hi)))

    def copy_segments(self, dst, dst_off, src, src_off, lens) -> None:
        n = int(lens.size)
        if n:
            self._copy(self._grid(n * 32), (_THREADS,), (dst, dst_off, src, src_off, lens, np.int64(n)))


def _key_spans(region, key_loc, key_len, slots: np.ndarray):
    """(live-in-mirror mask, byte offsets, lengths) of ``slots``' keys, as the kernels' key_at."""
    off = key_loc[slots].astype(np.int64) * 4
    lens = key_len[slots].astype(np.int64)
    return (key_loc[slots] != 0) & (off + lens <= region.size), off, lens


class NumpyKernels:
    """Host emulation of ``CudaKernels`` (same arguments, same results)."""

    def hash_keys(self, buf, off, lens):
        """The 64-bit hash of each key ``buf[off[i]:][:lens[i]]`` (``host_key_hash``, vectorised)."""
        n = off.size
        h = np.full(n, FNV_OFFSET, dtype=np.uint64)
        if n == 0:
            return h
        longest = int(lens.max())
        with np.errstate(over="ignore"):
            for j in range(longest):
                active = lens > j
                idx = np.flatnonzero(active)
                byte = buf[off[idx] + j].astype(np.uint64)
                h[idx] = (h[idx] ^ byte) * np.uint64(FNV_PRIME)
            h ^= h >> np.uint64(33)
            h *= np.uint64(0xFF51AFD7ED558CCD)
            h ^= h >> np.uint64(33)
            h *= np.uint64(0xC4CEB9FE1A85EC53)
            h ^= h >> np.uint64(33)
        return h

    def lookup(self, t_hash, t_slot, qbuf, qoff, qlen, region, key_loc, key_len):
        hashes = self.hash_keys(qbuf, qoff, qlen)
        mask = t_slot.size - 1
        out = np.full(qoff.size, -1, dtype=np.int32)
        for i in range(qoff.size):
            h, length = int(hashes[i]), int(qlen[i])
            query = bytes(qbuf[qoff[i]: qoff[i] + length])
            pos = h & mask
            for _ in range(mask + 1):
                s = int(t_slot[pos])
                if s == EMPTY:
                    break
                if s >= 0 and int(t_hash[pos]) == h:
                    ok, start, klen = _key_spans(region, key_loc, key_len, np.array([s]))
                    if ok[0] and klen[0] == length and bytes(region[start[0]: start[0] + length]) == query:
                        out[i] = s
                        break
                pos = (pos + 1) & mask
        return out

    def reconcile(self, region, key_loc, key_len, live, indexed, khash, t_hash, t_slot, lo: int, hi: int) -> None:
        if hi <= lo:
            return
        slots = np.arange(lo, hi)
        alive, off, lens = _key_spans(region, key_loc, key_len, slots)
        alive &= live[lo:hi].astype(bool)
        hashes = np.zeros(hi - lo, dtype=np.uint64)
        hashes[alive] = self.hash_keys(region, off[alive], lens[alive])
        was = indexed[lo:hi].astype(bool)
        stale = was & ~(alive & (khash[lo:hi] == hashes))
        for s in slots[stale].tolist():
            self._remove(t_slot, int(khash[s]), s)
        indexed[lo:hi][stale] = 0
        for s in slots[alive & ~(was & ~stale)].tolist():
            self._insert(t_hash, t_slot, int(hashes[s - lo]), s)
            khash[s] = hashes[s - lo]
            indexed[s] = 1

    @staticmethod
    def _insert(t_hash, t_slot, h: int, s: int) -> None:
        mask = t_slot.size - 1
        pos = h & mask
        while t_slot[pos] >= 0:
            pos = (pos + 1) & mask
        t_slot[pos] = s
        t_hash[pos] = h

    @staticmethod
    def _remove(t_slot, h: int, s: int) -> None:
        mask = t_slot.size - 1
        pos = h & mask
        for _ in range(mask + 1):
            cur = int(t_slot[pos])
            if cur == EMPTY:
                break
            if cur == s:
                t_slot[pos] = TOMBSTONE
                break
            pos = (pos + 1) & mask

    def copy_segments(self, dst, dst_off, src, src_off, lens) -> None:
        for d, s, n in zip(dst_off.tolist(), src_off.tolist(), lens.tolist()):
            dst[d: d + n] = src[s: s + n]
