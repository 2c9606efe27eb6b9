"""Replay a trace against a live Predis or Redis through redis-py, as an application would.

Modes:

``cache-aside``
    GET; on a miss the client reads the origin (SQLite, with the injected delay) and SETs the
    value. Works against Redis and Predis alike.
``read-through``
    plain GETs; the server loads misses from its own configured origin. The client seeds the
    SQLite origin file the server is configured with and checks, with one probe GET, that the
    server really reads through; if it answers nil, :class:`ReadThroughUnavailable` is raised.

Writes in the trace update the origin and then the cache (``write_policy="update"``: SET) or
drop the cached copy (``"invalidate"``: DEL). Figures exclude the first ``warmup`` fraction of
requests: the server's INFO counters are read at the boundary and at the end, and client-side
counters only run after it.

After the run the replay also reports what the cache really held (``resident_keys`` and
``resident_value_bytes``, by SCAN and STRLEN), so servers whose ``used_memory`` counts memory
differently (Redis: allocator bytes including its own start-up and per-key overhead; Predis:
the store's data and metadata only) can be compared at the same nominal cache size, and the
machine's load during the measured phase (``load``: load averages and the share of all CPUs
busy), since replays on a shared machine are only comparable under similar load.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis

from workloads.origin import SqliteOrigin, key_bytes, value_bytes
from workloads.readers import CsvSpec, read_trace, summarize
from workloads.trace import OP_DEL, OP_GET, OP_SET
from workloads.units import parse_cache_size

MODES = ("cache-aside", "read-through")


class ReplayError(RuntimeError):
    """The replay cannot run against this server as asked."""


class ReadThroughUnavailable(ReplayError):
    """The server answered nil for a key seeded in the origin: no read-through origin."""


@dataclass
class ReplayConfig:
    trace: str
    fmt: str | None = None
    host: str = "127.0.0.1"
    port: int = 6379
    password: str | None = None
    mode: str = "cache-aside"
    size: str = "0.05"
    policy: str | None = "allkeys-lru"
    origin_db: str | None = None
    origin_latency_ms: float = 0.0
    warmup: float = 0.1
    concurrency: int = 1
    key_prefix: str = ""
    write_policy: str = "update"
    add_baseline_memory: bool = True
    max_requests: int | None = None
    batch: int = 128
    csv_spec: CsvSpec | None = field(default=None, repr=False)
    default_size: int = 1
    measure_resident: bool = True


@dataclass
class _Counters:
    requests: int = 0
    gets: int = 0
    hits: int = 0
    misses: int = 0
    sets: int = 0
    dels: int = 0
    origin_reads: int = 0
    origin_misses: int = 0
    origin_writes: int = 0
    bytes_from_cache: int = 0
    bytes_to_cache: int = 0
    bytes_from_origin: int = 0
    set_errors: int = 0

    def add(self, other: _Counters) -> None:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)


class _BatchFeeder:
    """Hands out request batches of one streamed trace to the worker threads, in trace order,
    up to a per-phase limit."""

    def __init__(self, chunks: Iterator[np.ndarray], batch: int) -> None:
        self._chunks = chunks
        self._batch = batch
        self._buf: np.ndarray | None = None
        self._pos = 0
        self._lock = threading.Lock()
        self.handed_out = 0
        self.limit = 0

    def take(self) -> np.ndarray | None:
        with self._lock:
            room = self.limit - self.handed_out
            if room <= 0:
                return None
            while self._buf is None or self._pos >= len(self._buf):
                nxt = next(self._chunks, None)
                if nxt is None:
                    return None
                self._buf, self._pos = nxt, 0
            n = min(self._batch, room, len(self._buf) - self._pos)
            out = self._buf[self._pos:self._pos + n]
            self._pos += n
            self.handed_out += n
            return out


class TraceReplayer:
    """One replay run; :meth:`run` returns the result dictionary (see :mod:`workloads.report`)."""

    def __init__(self, config: ReplayConfig) -> None:
        if config.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if config.write_policy not in ("update", "invalidate"):
            raise ValueError("write_policy must be 'update' or 'invalidate'")
        if not 0 <= config.warmup < 1:
            raise ValueError("warmup must be a fraction in [0, 1)")
        self.cfg = config
        self.prefix = config.key_prefix.encode()
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._workers: list[redis.Redis] = []

    # -- setup -----------------------------------------------------------------------------
    def _client(self) -> redis.Redis:
        return redis.Redis(host=self.cfg.host, port=self.cfg.port, password=self.cfg.password,
                           socket_timeout=30, socket_connect_timeout=10)

    def _chunks(self) -> Iterator[np.ndarray]:
        chunks = read_trace(self.cfg.trace, self.cfg.fmt, csv_spec=self.cfg.csv_spec,
                            default_size=self.cfg.default_size)
        if self.cfg.max_requests is None:
            yield from chunks
            return
        left = self.cfg.max_requests
        for c in chunks:
            if left <= 0:
                break
            yield c[:left]
            left -= len(c[:left])

    def _origin_path(self) -> Path:
        if self.cfg.origin_db:
            return Path(self.cfg.origin_db)
        self._tmpdir = tempfile.TemporaryDirectory(prefix="predis-replay-")
        return Path(self._tmpdir.name) / "origin.db"

    def _configure_server(self, r: redis.Redis, cache_bytes: int, max_value: int) -> dict[str, Any]:
        try:
            r.config_set("maxmemory", "0")
            r.flushall()
            probe = b"__predis_replay_probe__"
            probe_value = b"x" * min(max_value, 1 << 20)
            for w in self._workers:
                # Grow each connection's query/reply buffers to the largest value before the
                # baseline is measured, so maxmemory leaves the whole cache size to data.
                w.set(probe, probe_value)
                w.get(probe)
            r.delete(probe)
            r.config_resetstat()
            baseline = int(r.info("memory").get("used_memory", 0)) if self.cfg.add_baseline_memory else 0
            maxmemory = cache_bytes + baseline
            r.config_set("maxmemory", str(maxmemory))
            if self.cfg.policy:
                r.config_set("maxmemory-policy", self.cfg.policy)
            policy = r.config_get("maxmemory-policy").get("maxmemory-policy", "?")
        except redis.ResponseError as e:
            raise ReplayError(f"server refused to be configured (FLUSHALL/CONFIG): {e}") from e
        return {"cache_bytes": cache_bytes, "baseline_used_memory": baseline, "maxmemory": maxmemory,
                "maxmemory_policy": policy}

    def _probe_read_through(self, r: redis.Redis, probe_key: bytes) -> None:
        if r.get(probe_key) is None:
            raise ReadThroughUnavailable(
                f"read-through probe: GET {probe_key!r} (seeded in the origin) returned nil; the server at "
                f"{self.cfg.host}:{self.cfg.port} has no read-through origin configured (set Predis's "
                f"`origin sqlite:///{self._origin_path_used}`) or it reads a different origin. Use "
                f"--mode cache-aside against Redis.")
        r.flushall()
        r.config_resetstat()

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        t_start = time.time()
        summary, keys, sizes = summarize(self._chunks())
        if summary.n_requests == 0:
            raise ReplayError(f"{cfg.trace}: empty trace")
        cache_bytes = parse_cache_size(cfg.size, summary.footprint_bytes)
        origin_path = self._origin_path()
        self._origin_path_used = origin_path
        # In read-through mode the server reads the origin itself, so each write must be
        # committed at once or an evicted key could be reloaded stale.
        origin = SqliteOrigin(origin_path, cfg.origin_latency_ms, self.prefix,
                              commit_every=1 if cfg.mode == "read-through" else 256)
        t0 = time.perf_counter()
        origin.seed(keys, sizes)
        seed_s = time.perf_counter() - t0
        r = self._client()
        try:
            r.ping()
        except redis.ConnectionError as e:
            raise ReplayError(f"cannot reach {cfg.host}:{cfg.port}: {e}") from e
        server = {k: v for k, v in r.info("server").items() if k in ("redis_version", "predis_version", "tcp_port")}
        # Connect the workers first so the baseline memory already holds their client buffers.
        self._workers = [self._client() for _ in range(max(1, cfg.concurrency))]
        server_cfg = self._configure_server(r, cache_bytes, int(sizes.max()))
        if cfg.mode == "read-through":
            self._probe_read_through(r, key_bytes(int(keys[0]), self.prefix))

        feeder = _BatchFeeder(self._chunks(), cfg.batch)
        warm_n = int(cfg.warmup * summary.n_requests)
        feeder.limit = warm_n
        self._run_phase(feeder, origin, measure=False)
        stats0 = r.info("stats")
        feeder.limit = summary.n_requests
        cpu0 = _cpu_times()
        t1 = time.perf_counter()
        counters, latencies = self._run_phase(feeder, origin, measure=True)
        wall = time.perf_counter() - t1
        load = _load(cpu0, _cpu_times())
        if cfg.measure_resident:
            # Lift maxmemory before anything else: Redis counts this connection's buffers (INFO
            # replies, SCAN, pipelined STRLENs) in used_memory and, at small sizes, would evict
            # the data being counted.
            r.config_set("maxmemory", "0")
        stats1 = r.info("stats")
        mem = r.info("memory")
        dbsize = r.dbsize()
        resident_keys = resident_bytes = None
        if cfg.measure_resident:
            resident_keys, resident_bytes = _resident(r)  # STRLEN counts keyspace hits: after stats1
            r.config_set("maxmemory", str(server_cfg["maxmemory"]))
        for w in self._workers:
            w.close()
        r.close()
        origin.close()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()

        hits = int(stats1.get("keyspace_hits", 0)) - int(stats0.get("keyspace_hits", 0))
        misses = int(stats1.get("keyspace_misses", 0)) - int(stats0.get("keyspace_misses", 0))
        lat_us = latencies / 1000.0
        pct = (lambda q: float(np.percentile(lat_us, q))) if len(lat_us) else (lambda q: float("nan"))
        answered = counters.hits / counters.gets if counters.gets else float("nan")
        hit_ratio_client = answered
        if cfg.mode == "read-through":
            # The client cannot see the server's origin reads; the server's misses are them. The
            # server answers misses from the origin, so the client's share of answered GETs is
            # not a hit ratio.
            counters.origin_reads = misses
            hit_ratio_client = float("nan")
        return {
            "kind": "replay",
            "trace": str(cfg.trace),
            "format": cfg.fmt,
            "mode": cfg.mode,
            "size_arg": cfg.size,
            "server": {"host": cfg.host, "port": cfg.port, **server},
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("csv_spec", "password")},
            "trace_summary": asdict(summary),
            **server_cfg,
            "cache_fraction_of_footprint": cache_bytes / max(1, summary.footprint_bytes),
            "origin_seed_seconds": seed_s,
            "warmup_requests": warm_n,
            "measured_requests": counters.requests,
            "hit_ratio_server": hits / (hits + misses) if hits + misses else float("nan"),
            "server_keyspace_hits": hits,
            "server_keyspace_misses": misses,
            "evicted_keys": int(stats1.get("evicted_keys", 0)) - int(stats0.get("evicted_keys", 0)),
            "hit_ratio_client": hit_ratio_client,
            "answered_ratio_client": answered,
            "counters": asdict(counters),
            "bytes_moved": counters.bytes_from_cache + counters.bytes_to_cache + counters.bytes_from_origin,
            "latency_us": {"mean": float(lat_us.mean()) if len(lat_us) else float("nan"), "p50": pct(50),
                           "p90": pct(90), "p99": pct(99), "p999": pct(99.9)},
            "throughput_rps": counters.requests / wall if wall > 0 else float("nan"),
            "measured_seconds": wall,
            "used_memory_end": int(mem.get("used_memory", 0)),
            "dbsize_end": int(dbsize),
            "resident_keys": resident_keys,
            "resident_value_bytes": resident_bytes,
            "resident_fraction_of_cache": (resident_bytes / cache_bytes
                                           if resident_bytes is not None and cache_bytes else None),
            "load": load,
            "total_seconds": time.time() - t_start,
        }

    def _run_phase(self, feeder: _BatchFeeder, origin: SqliteOrigin, measure: bool) -> tuple[_Counters, np.ndarray]:
        n = max(1, self.cfg.concurrency)
        results: list[tuple[_Counters, list[int]]] = [(_Counters(), []) for _ in range(n)]
        errors: list[BaseException] = []

        def work(slot: int) -> None:
            counters, lat = results[slot]
            client = self._workers[slot]
            try:
                while (batch := feeder.take()) is not None:
                    self._serve(client, origin, batch, counters, lat if measure else None)
            except BaseException as e:  # noqa: BLE001 - re-raised after join
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise ReplayError(f"replay worker failed: {errors[0]!r}") from errors[0]
        total = _Counters()
        for c, _ in results:
            total.add(c)
        lat = np.concatenate([np.asarray(l, dtype=np.float64) for _, l in results]) if measure else np.empty(0)
        return total, lat

    def _serve(self, r: redis.Redis, origin: SqliteOrigin, batch: np.ndarray, c: _Counters,
               lat: list[int] | None) -> None:
        read_through = self.cfg.mode == "read-through"
        invalidate = self.cfg.write_policy == "invalidate"
        clock = time.perf_counter_ns
        for op, obj, size in zip(batch["op"].tolist(), batch["key"].tolist(), batch["size"].tolist()):
            key = key_bytes(obj, self.prefix)
            t0 = clock()
            if op == OP_GET:
                c.gets += 1
                value = r.get(key)
                if value is not None:
                    c.hits += 1
                    c.bytes_from_cache += len(value)
                elif read_through:
                    c.misses += 1
                else:
                    c.misses += 1
                    value = origin.get(key)
                    c.origin_reads += 1
                    if value is None:
                        c.origin_misses += 1
                    else:
                        c.bytes_from_origin += len(value)
                        self._set(r, key, value, c)
            elif op == OP_SET:
                value = value_bytes(obj, size)
                origin.put(key, value)
                c.origin_writes += 1
                if invalidate:
                    r.delete(key)
                    c.dels += 1
                else:
                    self._set(r, key, value, c)
            elif op == OP_DEL:
                origin.delete(key)
                r.delete(key)
                c.dels += 1
            if lat is not None:
                lat.append(clock() - t0)
            c.requests += 1

    @staticmethod
    def _set(r: redis.Redis, key: bytes, value: bytes, c: _Counters) -> None:
        try:
            r.set(key, value)
            c.sets += 1
            c.bytes_to_cache += len(value)
        except redis.ResponseError:
            # OOM: the value does not fit under maxmemory even after eviction.
            c.set_errors += 1


def _resident(r: redis.Redis) -> tuple[int, int]:
    """Keys and value bytes the server holds now (SCAN, then STRLEN in pipelined batches)."""
    keys = n_bytes = 0
    cursor = 0
    while True:
        cursor, batch = r.scan(cursor, count=1000)
        if batch:
            pipe = r.pipeline(transaction=False)
            for key in batch:
                pipe.strlen(key)
            lengths = pipe.execute()
            keys += len(batch)
            n_bytes += sum(int(x) for x in lengths)
        if cursor == 0:
            return keys, n_bytes


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _load(before: tuple[int, int] | None, after: tuple[int, int] | None) -> dict[str, Any]:
    """Load averages at the end of the measured phase and the share of all CPUs busy during it
    (this replay's client and server included)."""
    out: dict[str, Any] = {"cores": os.cpu_count()}
    try:
        out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        out["loadavg"] = None
    if before and after and after[1] > before[1]:
        out["cpu_busy"] = round((after[0] - before[0]) / (after[1] - before[1]), 4)
    else:
        out["cpu_busy"] = None
    return out


def replay(config: ReplayConfig) -> dict[str, Any]:
    """Run one replay (see :class:`ReplayConfig`)."""
    return TraceReplayer(config).run()
