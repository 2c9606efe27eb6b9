"""The access collector: a fixed-size ring buffer of access events in NumPy arrays.

Columns (one array each, allocated once): ``key_hash`` ``prefix_hash`` ``suffix`` (see
``models.keycodes``), ``ts`` (µs since the epoch), ``op`` (0 GET, 1 MGET), ``outcome``
(0 hit, 1 miss, 2 hit on a prefetched entry), ``size`` (value bytes), ``tenant`` (``server.mlops.tenant_id``: the ACL user's or key
prefix's id by ``tenant-mode``; 0 = no tenant).

Events arrive in batches from the server's access hook (every tick while prefetching, else
every ``COLLECTOR_BATCH_S`` = 50 ms: a batch's fixed NumPy costs are paid once per thousands
of events, not per tick), so the per-access cost on the event loop is one tuple append. A
batch's events share one timestamp (the time it was handed over). GETs and MGETs the C fast
path answers (pipelined runs, a tick's lone commands) skip the batch while the collector is
the only observer: C writes their events into the ring itself, through ``native_ring``.

Recording does not hash: an event of a key of at most ``RAW_KEY_BYTES`` (24) bytes holds the
key itself, zero-padded, in its three code columns, and the ring's internal ``raw_len``
column says so (the key's length + 1; 0: the columns hold codes, as for longer keys, whose
codes are computed at once). Readers (``recent``, the exporter) get codes: they are
computed on the reader's copy, in the reader's thread (``_decode``: C's ``ring_codes``
without the GIL, else ``models.keycodes.padded_codes``), so the event loop pays a copy of
the key per access, not two hashes and a digit parse, and events nobody reads are never
hashed. The Python path and C write the same bytes.

Sampling is by time window: with rate r the collector records during the first r of every
``window_s`` second period and the access hook is not even installed in between, so the
cost at rate r is about r times the full cost, and sampled stretches keep whole access
sequences (what successor statistics need), unlike per-event coin flips.

The exporter thread writes what was recorded since its last run as an NPZ segment
(``access-<first ts>-<seq>.npz``) into ``export_dir`` and deletes the oldest segments to
stay under ``export_max_bytes``.
"""
from __future__ import annotations

import glob
import logging
import operator
import os
import threading

import numpy as np

from .keycodes import key_codes, padded_codes

log = logging.getLogger("predis.collector")

_FIELDS = [operator.itemgetter(i) for i in range(6)]
HIT, MISS, PREFETCHED_HIT = 0, 1, 2
OP_GET, OP_MGET = 0, 1
COLUMNS = {
    "key_hash": np.uint64, "prefix_hash": np.uint64, "suffix": np.int64, "ts": np.int64,
    "op": np.uint8, "outcome": np.uint8, "size": np.uint32, "tenant": np.uint16,
}
# The columns live in one block, one after another in this order (widest first, so each is
# aligned): the C fast path (predis_server/fastpath_c/ring.h, RING_EVENT_BYTES) writes events into
# it through a single buffer. raw_len is the ring's own (see the module's docstring).
RING_COLUMNS = {**COLUMNS, "raw_len": np.uint8}
RING_LAYOUT = ("key_hash", "prefix_hash", "suffix", "ts", "size", "tenant", "op", "outcome", "raw_len")
EVENT_BYTES = sum(np.dtype(RING_COLUMNS[name]).itemsize for name in RING_LAYOUT)  # 41
RAW_KEY_BYTES = 24  # the three code columns' bytes
_RAW_WORDS = ("key_hash", "prefix_hash", "suffix")


class AccessCollector:
    def __init__(self, capacity: int = 1_000_000, sampling: float = 0.01, export_dir: str = "",
                 export_max_bytes: int = 256 * 1024 * 1024, window_s: float = 1.0) -> None:
        self.capacity = max(16, int(capacity))
        self._block = np.zeros(self.capacity * EVENT_BYTES, dtype=np.uint8)
        views, offset = {}, 0
        for name in RING_LAYOUT:
            width = self.capacity * np.dtype(RING_COLUMNS[name]).itemsize
            views[name] = self._block[offset:offset + width].view(RING_COLUMNS[name])
            offset += width
        # the ring's columns as stored (short keys' bytes in the code columns: see raw_len);
        # recent() gives events with their codes
        self.arrays = {name: views[name] for name in RING_COLUMNS}
        self._ring = None  # the C fast path's handle on _block (native_ring)
        # where the count of events ever recorded lives (ring position = written % capacity):
        # here, or in the C ring once there is one (C runs advance it there, see ``written``)
        self._count: _Count | object = _Count()
        self.exported_upto = 0    # events already exported
        self.sampling = sampling
        self.window_s = window_s
        self.export_dir = export_dir
        self.export_max_bytes = export_max_bytes
        self.segments_written = 0
        self.export_dropped = 0   # events overwritten before the exporter saw them
        self._lock = threading.Lock()
        self._seq = 0

    @property
    def written(self) -> int:
        """Events ever recorded (the next goes at ``written % capacity``)."""
        return self._count.written

    @written.setter
    def written(self, value: int) -> None:
        self._count.written = value

    # -- recording (event loop) -------------------------------------------------------------
    def window_open(self, now: float) -> bool:
        """Whether ``now`` (seconds) falls inside a sampling window."""
        if self.sampling >= 1.0:
            return True
        if self.sampling <= 0.0:
            return False
        return (now % self.window_s) < self.sampling * self.window_s

    def record(self, events: list[tuple], now: float) -> None:
        """Append a batch of (key, op, outcome, size, db, tenant) events observed at ``now`` (s).

        The access hook's events carry the db index (the prefetcher's) and the tenant id (ours).
        A batch of 5-tuples (key, op, outcome, size, tenant) has no db field: its fifth is the
        tenant. One shape per batch, so the check is per batch, not per event."""
        n = len(events)
        if n == 0:
            return
        tenant_field = _FIELDS[5] if len(events[0]) > 5 else _FIELDS[4]
        if n > self.capacity:
            events = events[-self.capacity:]
            n = self.capacity
        # one C-level pass per column (zip(*events) with thousands of arguments is slower)
        key_hash, prefix_hash, suffix, raw_len = _raw_columns(list(map(_FIELDS[0], events)))
        columns = {
            "key_hash": key_hash, "prefix_hash": prefix_hash, "suffix": suffix, "raw_len": raw_len,
            "ts": np.full(n, int(now * 1e6), dtype=np.int64),
            "op": np.fromiter(map(_FIELDS[1], events), np.uint8, n),
            "outcome": np.fromiter(map(_FIELDS[2], events), np.uint8, n),
            "size": np.fromiter(map(_FIELDS[3], events), np.uint32, n),
            "tenant": np.fromiter(map(tenant_field, events), np.uint16, n),
        }
        with self._lock:
            start = self.written % self.capacity
            first = min(n, self.capacity - start)
            for name, values in columns.items():
                arr = self.arrays[name]
                arr[start:start + first] = values[:first]
                if first < n:
                    arr[:n - first] = values[first:]
            self.written += n

    def native_ring(self) -> object:
        """The C fast path's handle on the ring (predis_server/fastpath_c/ring.h ``ring``), the sink
        its runs write GET/MGET events into: it holds the block (``RING_LAYOUT``) and, from
        now on, ``written``, which a run advances as it writes (no Python per run); the events
        carry the run's time and the handle's ``tenant``, which the caller sets. C runs write
        without ``_lock`` (they hold the GIL, and Python recording never runs meanwhile);
        readers that let the GIL go while they copy check for overwrites (``_settled``)."""
        ring = self._ring
        if ring is None:
            from predis_server.fastpath import native
            with self._lock:
                ring = native.ring(self._block, self.capacity)
                ring.written = self._count.written
                self._ring = self._count = ring
        return ring

    # -- reading ----------------------------------------------------------------------------
    def recent(self, limit: int | None = None) -> dict[str, np.ndarray]:
        """The last ``limit`` events (all held when None), oldest first, as copies."""
        with self._lock:
            held = min(self.written, self.capacity)
            count = held if limit is None else min(limit, held)
            batch = self._settled(self.written - count, self._slice(self.written - count, self.written))[1]
        return _decode(batch)

    def _slice(self, begin: int, end: int) -> dict[str, np.ndarray]:
        idx = np.arange(begin, end) % self.capacity
        return {name: arr[idx] for name, arr in self.arrays.items()}

    def _settled(self, begin: int, batch: dict[str, np.ndarray]) -> tuple[int, dict[str, np.ndarray]]:
        """(begin, batch) less the events at its start that C runs overwrote while the copy
        ran: NumPy lets the GIL go while it copies a large slice, and the event loop's runs
        write into the ring without ``_lock``. Those events were the oldest held, the next to
        be overwritten anyway; the rest of the copy is intact (the ring is written in order)."""
        overwritten = self.written - self.capacity - begin
        if overwritten <= 0:
            return begin, batch
        return begin + overwritten, {name: values[overwritten:] for name, values in batch.items()}

    # -- export (exporter thread) -----------------------------------------------------------
    def export_once(self) -> str | None:
        """Write events recorded since the last export as one NPZ segment; returns its path."""
        if not self.export_dir:
            return None
        with self._lock:
            begin = max(self.exported_upto, self.written - self.capacity)
            end = self.written
            if end <= begin:
                return None
            begin, batch = self._settled(begin, self._slice(begin, end))
            self.export_dropped += begin - self.exported_upto
            self.exported_upto = end
            if end <= begin:
                return None
        batch = _decode(batch)
        os.makedirs(self.export_dir, exist_ok=True)
        self._seq += 1
        name = f"access-{int(batch['ts'][0])}-{os.getpid()}-{self._seq:06d}.npz"
        tmp = os.path.join(self.export_dir, "." + name + ".tmp")
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **batch)
        os.replace(tmp, os.path.join(self.export_dir, name))
        self.segments_written += 1
        self._enforce_cap()
        return os.path.join(self.export_dir, name)

    def _enforce_cap(self) -> None:
        segments = sorted(glob.glob(os.path.join(self.export_dir, "access-*.npz")), key=os.path.getmtime)
        sizes = [os.path.getsize(p) for p in segments]
        total = sum(sizes)
        while len(segments) > 1 and total > self.export_max_bytes:  # the newest always stays
            total -= sizes.pop(0)
            os.unlink(segments.pop(0))


def _raw_columns(keys: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The three code columns and raw_len of a batch of keys as C writes them: a short key's
    bytes zero-padded (raw_len: its length + 1), a longer key's codes (raw_len 0)."""
    n = len(keys)
    lens = np.fromiter(map(len, keys), dtype=np.int64, count=n)
    words = np.array(keys, dtype=f"S{RAW_KEY_BYTES}").view(np.uint64).reshape(n, 3)  # longer: cut, replaced below
    key_hash, prefix_hash = words[:, 0].copy(), words[:, 1].copy()
    suffix = words[:, 2].view(np.int64).copy()
    raw_len = np.where(lens <= RAW_KEY_BYTES, lens + 1, 0).astype(np.uint8)
    long_rows = np.flatnonzero(raw_len == 0)
    if len(long_rows):
        codes = key_codes([keys[i] for i in long_rows])
        for column, values in zip((key_hash, prefix_hash, suffix), codes):
            column[long_rows] = values
    return key_hash, prefix_hash, suffix, raw_len


def _decode(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A reader's copy of ring events (``RING_COLUMNS``) as events with codes (``COLUMNS``):
    the events that hold their key get its codes, in place."""
    raw_len = batch.pop("raw_len")
    rows = np.flatnonzero(raw_len)
    if len(rows) == 0:
        return batch
    from predis_server.fastpath import native

    if native is not None:
        native.ring_codes(batch["key_hash"], batch["prefix_hash"], batch["suffix"], raw_len)
        return batch
    words = np.stack([batch[name][rows].view(np.uint64) for name in _RAW_WORDS], axis=1)
    codes = padded_codes(words.view(np.uint8).reshape(len(rows), RAW_KEY_BYTES), raw_len[rows] - 1)
    for name, values in zip(_RAW_WORDS, codes):
        batch[name][rows] = values
    return batch


class _Count:
    """The collector's count of recorded events until the C ring holds it."""

    __slots__ = ("written",)

    def __init__(self) -> None:
        self.written = 0


class CollectorExporter(threading.Thread):
    """Background thread: exports a segment every ``interval_s`` seconds until stopped."""

    def __init__(self, collector: AccessCollector, interval_s: float = 5.0) -> None:
        super().__init__(name="predis-collector-export", daemon=True)
        self.collector = collector
        self.interval_s = interval_s
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            self._export()
        self._export()

    def _export(self) -> None:
        try:
            self.collector.export_once()
        except Exception:  # a full disk must not kill the server
            log.exception("collector export failed")

    def stop(self) -> None:
        self.stopping.set()


def load_segments(paths: list[str]) -> dict[str, np.ndarray]:
    """Concatenate NPZ segments (directories expand to their segments) in time order."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            files.extend(glob.glob(os.path.join(path, "access-*.npz")))
        else:
            files.append(path)
    parts = []
    for f in sorted(files):
        with np.load(f) as data:
            parts.append({name: data[name] for name in COLUMNS})
    if not parts:
        return {name: np.zeros(0, dtype=dtype) for name, dtype in COLUMNS.items()}
    merged = {name: np.concatenate([p[name] for p in parts]) for name in COLUMNS}
    order = np.argsort(merged["ts"], kind="stable")
    return {name: arr[order] for name, arr in merged.items()}
