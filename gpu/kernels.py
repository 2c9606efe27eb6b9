"""Batch kernels of the GPU store, and a NumPy emulation with the same signatures.

``CudaKernels`` compiles CuPy RawKernels; ``NumpyKernels`` computes the same results on
the host so the GPU store's bookkeeping can be tested on machines without CUDA (the GPU
test suite checks the two against each other on the accelerator machine).

The device hash index is open addressing with linear probing over a power-of-two table:
``t_hash`` (uint64, the key's 64-bit hash) and ``t_slot`` (int32: slot number, -1 empty,
-2 tombstone). A lookup matches on the hash and then compares the full key bytes (kept in
the arena at ``key_off[slot]``), so a hash collision can never return the wrong value.
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

extern "C" __global__ void hash_keys(const unsigned char* buf, const i64* off, const i64* len,
                                     i64 n, u64* out) {
    i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x;
    if (i < n) out[i] = key_hash(buf + off[i], len[i]);
}

// Hash each query key, probe the table, verify the full key; slot or -1.
extern "C" __global__ void lookup(const u64* t_hash, const int* t_slot, u64 mask,
                                  const unsigned char* qbuf, const i64* qoff, const i64* qlen,
                                  const unsigned char* arena, const i64* key_off, const i64* key_len,
                                  i64 n, int* out) {
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
        if (s >= 0 && t_hash[pos] == h && key_len[s] == L) {
            const unsigned char* k = arena + key_off[s];
            bool eq = true;
            for (i64 j = 0; j < L; ++j) { if (k[j] != q[j]) { eq = false; break; } }
            if (eq) { result = s; break; }
        }
        pos = (pos + 1) & mask;
    }
    out[i] = result;
}

// Keys are known absent (the host index says so); claim an empty or tombstone entry.
extern "C" __global__ void insert(u64* t_hash, int* t_slot, u64 mask, const u64* hashes,
                                  const int* slots, i64 n) {
    i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x;
    if (i >= n) return;
    u64 h = hashes[i];
    int s = slots[i];
    u64 pos = h & mask;
    for (u64 probe = 0; probe <= mask; ++probe) {
        int cur = t_slot[pos];
        while (cur < 0) {
            int prev = atomicCAS(&t_slot[pos], cur, s);
            if (prev == cur) { t_hash[pos] = h; return; }
            cur = prev;
        }
        pos = (pos + 1) & mask;
    }
}

extern "C" __global__ void remove_slots(u64* t_hash, int* t_slot, u64 mask, const u64* hashes,
                                        const int* slots, i64 n) {
    i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x;
    if (i >= n) return;
    u64 pos = hashes[i] & mask;
    int s = slots[i];
    for (u64 probe = 0; probe <= mask; ++probe) {
        int cur = t_slot[pos];
        if (cur == -1) return;
        if (cur == s) { t_slot[pos] = -2; return; }
        pos = (pos + 1) & mask;
    }
}

// One warp per segment: gathers values into a reply buffer or scatters uploads into the arena.
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
        self._hash = module.get_function("hash_keys")
        self._lookup = module.get_function("lookup")
        self._insert = module.get_function("insert")
        self._remove = module.get_function("remove_slots")
        self._copy = module.get_function("copy_segments")

    @staticmethod
    def _grid(n: int, per_block: int = _THREADS) -> tuple[int]:
        return ((n + per_block - 1) // per_block,)

    def hash_keys(self, buf, off, lens):
        cp = self.cp
        n = int(off.size)
        out = cp.empty(n, dtype=cp.uint64)
        if n:
            self._hash(self._grid(n), (_THREADS,), (buf, off, lens, np.int64(n), out))
        return out

    def lookup(self, t_hash, t_slot, qbuf, qoff, qlen, arena, key_off, key_len):
        cp = self.cp
        n = int(qoff.size)
        out = cp.empty(n, dtype=cp.int32)
        if n:
            mask = np.uint64(t_slot.size - 1)
            self._lookup(self._grid(n), (_THREADS,),
                         (t_hash, t_slot, mask, qbuf, qoff, qlen, arena, key_off, key_len, np.int64(n), out))
        return out

    def insert(self, t_hash, t_slot, hashes, slots) -> None:
        n = int(slots.size)
        if n:
            self._insert(self._grid(n), (_THREADS,),
                         (t_hash, t_slot, np.uint64(t_slot.size - 1), hashes, slots, np.int64(n)))

    def remove(self, t_hash, t_slot, hashes, slots) -> None:
        n = int(slots.size)
        if n:
            self._remove(self._grid(n), (_THREADS,),
                         (t_hash, t_slot, np.uint64(t_slot.size - 1), hashes, slots, np.int64(n)))

    def copy_segments(self, dst, dst_off, src, src_off, lens) -> None:
        n = int(lens.size)
        if n:
            self._copy(self._grid(n * 32), (_THREADS,), (dst, dst_off, src, src_off, lens, np.int64(n)))


class NumpyKernels:
    """Host emulation of ``CudaKernels`` (same arguments, same results)."""

    def hash_keys(self, buf, off, lens):
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

    def lookup(self, t_hash, t_slot, qbuf, qoff, qlen, arena, key_off, key_len):
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
                if s >= 0 and int(t_hash[pos]) == h and int(key_len[s]) == length:
                    start = int(key_off[s])
                    if bytes(arena[start: start + length]) == query:
                        out[i] = s
                        break
                pos = (pos + 1) & mask
        return out

    def insert(self, t_hash, t_slot, hashes, slots) -> None:
        mask = t_slot.size - 1
        for h, s in zip(hashes.tolist(), slots.tolist()):
            pos = h & mask
            while t_slot[pos] >= 0:
                pos = (pos + 1) & mask
            t_slot[pos] = s
            t_hash[pos] = h

    def remove(self, t_hash, t_slot, hashes, slots) -> None:
        mask = t_slot.size - 1
        for h, s in zip(hashes.tolist(), slots.tolist()):
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
