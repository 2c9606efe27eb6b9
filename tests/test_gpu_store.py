"""The CuPy store on a real device: kernels against their NumPy emulation, device OOM,
a large keyspace, and a Predis server running on the GPU backend.

Everything here is marked ``gpu``: it skips without CUDA and runs on the accelerator machine
(``pytest -m gpu tests/test_gpu_store.py tests/test_store.py``).
"""
from __future__ import annotations

import random

import numpy as np
import pytest

from gpu.interface import StoreFull
from gpu.kernels import EMPTY, NumpyKernels, host_key_hash

pytestmark = pytest.mark.gpu
NOW = 1_700_000_000_000


@pytest.fixture(scope="module")
def cp():
    return pytest.importorskip("cupy")


@pytest.fixture(scope="module")
def kernels(cp):
    from gpu.kernels import CudaKernels

    return CudaKernels(cp)


def _packed(keys):
    lens = np.array([len(k) for k in keys], dtype=np.int64)
    offs = np.zeros(len(keys), dtype=np.int64)
    np.cumsum(lens[:-1], out=offs[1:])
    return np.frombuffer(b"".join(keys), dtype=np.uint8).copy(), offs, lens


def test_hash_kernel_matches_host_hash(cp, kernels):
    rng = random.Random(3)
    keys = [rng.randbytes(rng.randrange(0, 40)) for _ in range(5000)]
    buf, offs, lens = _packed(keys)
    device = cp.asnumpy(kernels.hash_keys(cp.asarray(buf), cp.asarray(offs), cp.asarray(lens)))
    emulated = NumpyKernels().hash_keys(buf, offs, lens)
    assert (device == emulated).all()
    assert [int(h) for h in device[:50]] == [host_key_hash(k) for k in keys[:50]]


def test_insert_lookup_remove_match_the_emulation(cp, kernels):
    rng = random.Random(4)
    keys = list({rng.randbytes(16) for _ in range(20000)})
    arena, key_off, key_len = _packed(keys)
    size = 1 << 16
    hashes = kernels.hash_keys(cp.asarray(arena), cp.asarray(key_off), cp.asarray(key_len))
    t_hash = cp.zeros(size, dtype=cp.uint64)
    t_slot = cp.full(size, EMPTY, dtype=cp.int32)
    slots = cp.arange(len(keys), dtype=cp.int32)
    kernels.insert(t_hash, t_slot, hashes, slots)
    assert int((t_slot >= 0).sum()) == len(keys)
    kernels.remove(t_hash, t_slot, hashes[:5000], slots[:5000])
    queries = keys[:6000] + [rng.randbytes(16) for _ in range(1000)]
    qbuf, qoff, qlen = _packed(queries)
    d = [cp.asarray(a) for a in (qbuf, qoff, qlen, arena, key_off, key_len)]
    got = cp.asnumpy(kernels.lookup(t_hash, t_slot, d[0], d[1], d[2], d[3], d[4], d[5]))
    expected = [-1] * 5000 + list(range(5000, 6000)) + [-1] * 1000
    assert got.tolist() == expected


def test_copy_segments_gathers_exactly(cp, kernels):
    rng = np.random.default_rng(5)
    src = rng.integers(0, 256, 1 << 20, dtype=np.uint8)
    lens = rng.integers(0, 3000, 300).astype(np.int64)
    src_off = rng.integers(0, (1 << 20) - 3000, 300).astype(np.int64)
    dst_off = np.zeros(300, dtype=np.int64)
    np.cumsum(lens[:-1], out=dst_off[1:])
    dst = cp.full(int(lens.sum()) + 7, 0xAB, dtype=cp.uint8)  # poisoned; the tail must stay so
    kernels.copy_segments(dst, cp.asarray(dst_off), cp.asarray(src), cp.asarray(src_off), cp.asarray(lens))
    expected = np.concatenate([src[o: o + n] for o, n in zip(src_off, lens)])
    host = cp.asnumpy(dst)
    assert (host[: len(expected)] == expected).all() and (host[len(expected):] == 0xAB).all()


def test_real_device_oom_is_storefull_and_data_survives(cp):
    from gpu.arena import DeviceArena
    from gpu.cuda import CupyStore

    with pytest.raises(StoreFull):
        DeviceArena(cp)._allocate(1 << 44)  # 16 TiB: more than any card
    store = CupyStore()
    store.set(b"kept", b"safe", NOW)
    store.sync()
    store.arena.top = store.arena.capacity  # force a growth on the next allocation
    store.arena.free_lists.clear()
    original = store.arena._grow

    def huge_growth(needed):
        original(1 << 44)

    store.arena._grow = huge_growth
    with pytest.raises(StoreFull):
        store.set(b"new", b"v" * 100, NOW)
    assert store.get(b"kept", NOW) == b"safe" and store.get(b"new", NOW) is None


def test_million_keys_packed_get(cp):
    from gpu.cuda import CupyStore

    n = 1_000_000
    keys = [b"key:%012d" % i for i in range(n)]
    store = CupyStore()
    store.set_many(keys, [b"%0100d" % i for i in range(n)], NOW)
    probe = keys[::997] + [b"key:missing00000"]
    slots, buf, offs = store.get_many_packed(*_packed(probe), NOW)
    assert slots[-1] == -1
    for i in range(0, len(probe) - 1, 37):
        assert buf[offs[i]: offs[i + 1]].tobytes() == b"%0100d" % (i * 997)
    assert store.get_many(keys[:5], NOW) == [b"%0100d" % i for i in range(5)]


def test_server_on_the_gpu_backend():
    from resp import RawConnection, encode_command
    from servers import predis_process

    with predis_process("--store-backend", "gpu") as server:
        conn = RawConnection(server.port)
        assert conn.call("SET", "a", "1") == b"+OK\r\n"
        assert conn.call("GET", "a") == b"$1\r\n1\r\n"
        conn.send(b"".join(encode_command("SET", f"k{i}", f"v{i}") for i in range(2000)))
        for _ in range(2000):
            assert conn.read_reply() == b"+OK\r\n"
        conn.send(b"".join(encode_command("GET", f"k{i}") for i in range(2000)))
        for i in range(2000):
            value = f"v{i}".encode()
            assert conn.read_reply() == b"$%d\r\n%s\r\n" % (len(value), value)
        assert conn.call("MGET", "k1", "nope", "k2") == b"*3\r\n$2\r\nv1\r\n$-1\r\n$2\r\nv2\r\n"
        conn.close()
