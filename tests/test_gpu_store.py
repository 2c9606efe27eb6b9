"""The CuPy store on a real device: kernels against their NumPy emulation, device OOM,
a large keyspace, and a Predis server running on the GPU backend.

Everything here is marked ``gpu``: it skips without CUDA and runs on the accelerator machine
(``pytest -m gpu tests/test_gpu_store.py tests/test_store.py tests/test_device_layout.py``).
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


def _region_of(keys, rng):
    """keys packed in a region as the slabs would (4-byte blocks, block 0 unused), shuffled."""
    order = list(range(len(keys)))
    rng.shuffle(order)
    region = bytearray(4)
    key_loc = np.zeros(len(keys), dtype=np.uint32)
    for i in order:
        key_loc[i] = len(region) // 4
        region += keys[i] + b"\0" * ((-len(keys[i])) % 4 or (4 if not keys[i] else 0))
    return np.frombuffer(bytes(region), dtype=np.uint8).copy(), key_loc, np.array([len(k) for k in keys], np.uint32)


def test_reconcile_and_lookup_match_the_emulation(cp, kernels):
    """reconcile indexes live slots from the mirrored key bytes (hashes as host_key_hash), and
    after keys die, move or change, a second pass leaves exactly the live keys findable; the
    device and the emulation agree on every lookup."""
    rng = random.Random(4)
    keys = list({rng.randbytes(rng.randrange(0, 40)) for _ in range(20000)})
    n = len(keys)
    region, key_loc, key_len = _region_of(keys, rng)
    live = np.array([rng.random() < 0.9 for _ in keys])
    emulation = NumpyKernels()
    tables = []
    for ops, xp in ((kernels, cp), (emulation, np)):
        t = {"t_hash": xp.zeros(1 << 16, dtype=xp.uint64), "t_slot": xp.full(1 << 16, EMPTY, dtype=xp.int32),
             "indexed": xp.zeros(n, dtype=xp.uint8), "khash": xp.zeros(n, dtype=xp.uint64)}
        ops.reconcile(xp.asarray(region), xp.asarray(key_loc), xp.asarray(key_len), xp.asarray(live),
                      t["indexed"], t["khash"], t["t_hash"], t["t_slot"], 0, n)
        tables.append(t)
    device, host = tables
    assert (cp.asnumpy(device["indexed"]) == live).all() and (host["indexed"] == live).all()
    assert (cp.asnumpy(device["khash"])[live] == host["khash"][live]).all()
    assert [int(h) for h in host["khash"][:50][live[:50]]] == [host_key_hash(k) for k, a in zip(keys[:50], live[:50]) if a]
    # keys die, move (same key, another location), change (another key in the slot)
    live2 = live.copy()
    live2[:2000] = ~live2[:2000]
    keys2 = list(keys)
    for i in range(2000, 4000):
        keys2[i] = b"changed:%d" % i
    region2, key_loc2, key_len2 = _region_of(keys2, rng)
    queries = keys[:6000] + keys2[2000:4000] + [rng.randbytes(16) for _ in range(1000)]
    expected = [i if live2[i] and keys2[i] == k else -1 for i, k in enumerate(keys[:6000])] \
        + [i if live2[i] else -1 for i in range(2000, 4000)] + [-1] * 1000
    qbuf, qoff, qlen = _packed(queries)
    for (ops, xp), t in zip(((kernels, cp), (emulation, np)), tables):
        d = [xp.asarray(a) for a in (region2, key_loc2, key_len2, live2, qbuf, qoff, qlen)]
        ops.reconcile(d[0], d[1], d[2], d[3], t["indexed"], t["khash"], t["t_hash"], t["t_slot"], 0, n)
        got = ops.lookup(t["t_hash"], t["t_slot"], d[4], d[5], d[6], d[0], d[1], d[2])
        got = cp.asnumpy(got) if xp is cp else got
        assert got.tolist() == expected
        t_slot = cp.asnumpy(t["t_slot"]) if xp is cp else t["t_slot"]
        assert sorted(t_slot[t_slot >= 0].tolist()) == np.flatnonzero(live2).tolist()


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
    from gpu.cuda import BIG_VALUE, CupyStore
    from gpu.slabs import TOP

    with pytest.raises(StoreFull):
        DeviceArena(cp)._allocate(1 << 44)  # 16 TiB: more than any card
    store = CupyStore()
    store.set(b"kept", b"safe", NOW)
    store.sync()
    store._slabs.state[TOP] = store.mirror.capacity // 4  # the region's mirror is full
    original = store.arena._allocate
    store.arena._allocate = lambda nbytes: original(1 << 44)  # every growth asks too much
    with pytest.raises(StoreFull):
        store.set(b"new", b"v" * 100, NOW)  # the mirror cannot grow
    with pytest.raises(StoreFull):
        store.set(b"kept", b"b" * (BIG_VALUE + 1), NOW)  # nor the big values' arena (1 MiB)
    assert store.get(b"kept", NOW) == b"safe" and store.get(b"new", NOW) is None
    slots, buf, offs = store.get_many_packed(*_packed([b"kept", b"new"]), NOW)
    assert slots[1] == -1 and buf[offs[0]: offs[1]].tobytes() == b"safe"


def test_region_is_registered_in_chunks_and_released(cp):
    """The region's mirrored part is registered with CUDA as it grows (sub-ranges, never the
    whole reservation, no further than the device mirror) and unregistered before FLUSHALL
    closes it."""
    from gpu.cuda import CupyStore

    store = CupyStore()
    keys = [b"reg:%06d" % i for i in range(20000)]
    store.set_many(keys, [b"x" * 200] * len(keys), NOW)  # about 4.5 MiB: the mirror grows 1 -> 8 MiB
    mirror = store.mirror
    assert mirror.registered_bytes == mirror.mirrored <= mirror.capacity < len(store._slabs.region)
    assert len(mirror._chunks) > 1
    slots, buf, _ = store.get_many_packed(*_packed(keys[::501]), NOW)
    assert (slots >= 0).all() and buf.tobytes() == b"x" * 200 * len(slots)
    store.clear()
    assert mirror.registered_bytes == 0 and store.mirror.registered_bytes == 0


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
