"""Read-through and access observation: what GET and MGET call through ``server.access_hook``.

``server.access_hook`` is None unless an origin is configured, prefetching is on, or the
collector is inside a sampling window, so plain Redis behaviour costs GET one attribute
check. When set, it is the ``AccessHook`` below:

* a miss with an origin returns a ``Deferred`` whose future resolves to the origin's value
  (stored with origin-ttl) or to ``-ERR origin ...``/nil; inside EXEC nothing is deferred
  (the origin is treated as absent there, as a transaction must not wait);
* each access becomes an event (key, op, outcome, size, db index, tenant id) appended to a
  per-tick list (tenant id: ``server.mlops.tenant_id(client.user, key)``, by ``tenant-mode``
  the ACL user or the key prefix; 0 without the MLOps loop); once per tick the list goes to the prefetcher and the collector (with the prefetcher
  off, every 50 ms: the collector's per-batch costs then amortise over many events).

``PredictionServices`` owns the loader, collector, exporter, ranker, prefetcher and model
reloader, and follows CONFIG SET of their options.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from .errors import CommandError
from .replies import Deferred

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("predis.readthrough")

HIT, MISS, PREFETCHED_HIT = 0, 1, 2  # models.collector's outcome codes
OP_GET, OP_MGET = 0, 1
COLLECTOR_BATCH_S = 0.05
LEARN_DEFER_S = 0.002    # learning waits at most this long for a client's origin read (_learn_check;
                         # 0: learn right after each tick, as before the deferral)
LEARN_NOW_EVENTS = 64    # a batch this large is learned at once


class AccessHook:
    def __init__(self, services: PredictionServices) -> None:
        self.services = services
        self.loader = None          # OriginLoader when an origin is configured
        self.observing = False      # record events (collector window open or prefetch on)
        self.prefetcher = None
        self.in_exec = 0
        self.events: list[tuple[bytes, int, int, int, int, int]] = []
        self.tenant_of = None       # server.mlops.tenant_id (set once the loop is installed)
        self.learn_timer: asyncio.TimerHandle | None = None  # deferred learning (_learn_check)
        self.learning_waits = False  # learning waits for a client's origin read to start

    # -- GET / MGET ---------------------------------------------------------------------------
    def on_get(self, client: Any, key: bytes, value: bytes | None) -> object:
        if value is not None:
            if self.observing:
                tenant_of = self.tenant_of
                self.batch().append((key, OP_GET, self.hit_outcome(client.db, key), len(value), client.db.id,
                                     0 if tenant_of is None else tenant_of(client.user, key)))
            return value
        if self.observing:
            tenant_of = self.tenant_of
            self.batch().append((key, OP_GET, MISS, 0, client.db.id,
                                 0 if tenant_of is None else tenant_of(client.user, key)))
        if self.loader is None or self.in_exec:
            return None
        return self._load_one(client.db, key)

    def on_mget(self, client: Any, argv: list[bytes], values: list) -> object:
        db = client.db
        keys = argv[1:]
        if self.observing:
            tenant_of = self.tenant_of
            user = client.user
            events = self.batch()
            for key, value in zip(keys, values):
                tenant = 0 if tenant_of is None else tenant_of(user, key)
                if value is None:
                    events.append((key, OP_MGET, MISS, 0, db.id, tenant))
                else:
                    events.append((key, OP_MGET, self.hit_outcome(db, key), len(value), db.id, tenant))
        if self.loader is None or self.in_exec:
            return values
        missing = [i for i, v in enumerate(values) if v is None and db.peek(keys[i]) is None]
        if not missing:
            return values
        loop = asyncio.get_running_loop()
        out = loop.create_future()
        pending = [len(missing)]
        result = list(values)
        failure: list[str] = []

        def one_done(index: int, value: Any, error: BaseException | None) -> None:
            if error is not None:
                failure.append(str(error))
                value = None
            elif value is not None:
                self._store(db, keys[index], value)
            result[index] = value
            pending[0] -= 1
            if pending[0] == 0 and not out.done():
                if failure and self.services.error_reply == "error":
                    out.set_exception(CommandError(f"ERR origin {failure[0]}"))
                else:
                    out.set_result(result)

        load = self.loader.load
        for index in missing:
            load(keys[index], then=lambda v, e, i=index: one_done(i, v, e))
        self._learn_when_started()
        return Deferred(out)

    # -- loading ------------------------------------------------------------------------------
    def _load_one(self, db: Any, key: bytes) -> Deferred:
        out = asyncio.get_running_loop().create_future()

        def done(value: Any, error: BaseException | None) -> None:
            # called by the loader as the read ends (no future hop before the reply)
            if error is not None:
                if self.services.error_reply == "error":
                    out.set_exception(CommandError(f"ERR origin {error}"))
                else:
                    out.set_result(None)
                return
            if value is not None:
                self._store(db, key, value)
            out.set_result(value)

        self.loader.load(key, then=done)  # type: ignore[union-attr]
        self._learn_when_started()
        return Deferred(out)

    def _store(self, db: Any, key: bytes, value: bytes) -> None:
        prefetcher = self.prefetcher
        if db.peek(key) is not None:
            if prefetcher is not None:
                prefetcher.on_demand_load(db, key)
            return  # a client wrote it meanwhile, or a prefetch stored it
        if prefetcher is not None and not prefetcher.admits(db, key):
            return  # read too rarely to displace what is cached: answered, not stored
        ttl_ms = self.services.ttl_ms
        try:
            db.set(key, value, db.clock() + ttl_ms if ttl_ms else 0)
        except CommandError:
            return  # OOM under noeviction: answer the value without caching it
        if prefetcher is not None:
            prefetcher.on_stored(db, key)  # its predicted reuse, before eviction compares it
        keyspace = db.keyspace
        if keyspace.maxmemory:
            # room for this value only: what prefetched stores owe is evicted off the reply path
            keyspace.enforce_maxmemory(allowance=prefetcher.evict_owed if prefetcher is not None else 0)

    # -- per-tick events ----------------------------------------------------------------------
    def batch(self) -> list[tuple]:
        """This tick's event list, to append to; its processing is scheduled when it starts."""
        events = self.events
        if not events:
            self._schedule_tick()
        return events

    def event_sink(self, now_ms: int) -> Any:
        """The collector, when the C fast path may record GET events straight into its ring:
        the collector is the only observer (a prefetcher learns from each event in Python)
        and its window is open. None otherwise."""
        if self.prefetcher is not None:
            return None
        collector = self.services.collector
        if collector is None or not collector.window_open(now_ms / 1000):
            return None
        return collector

    def hit_outcome(self, db: Any, key: bytes) -> int:
        """HIT, or PREFETCHED_HIT for the first read of a key the prefetcher loaded (which
        the prefetcher is told)."""
        prefetcher = self.prefetcher
        if prefetcher is not None and prefetcher.unread and prefetcher.on_hit(db, key):
            return PREFETCHED_HIT
        return HIT

    def _schedule_tick(self) -> None:
        # The prefetcher learns soon (a prediction is worth most right away; see _learn_check
        # for when); the collector alone takes events in batches of up to COLLECTOR_BATCH_S, so
        # its per-batch costs (hashing, ring-buffer writes) are paid once per thousands of
        # events, not per tick.
        loop = self.services.server.loop
        if self.prefetcher is not None:
            loop.call_soon(self._learn_check)
        else:
            loop.call_later(COLLECTOR_BATCH_S, self._tick)

    def _learn_check(self) -> None:
        """After the tick that recorded the first pending event (its replies are written):
        learn now, or a little later where learning now would hold the interpreter while a
        client waits.

        Learning is CPU on the loop thread. Run right after a lone client's hit, it delays
        that client's next request; run right after a miss, it delays the origin read's
        worker thread, which needs the interpreter to start. So a small batch (fewer than
        LEARN_NOW_EVENTS events) waits: until a client's origin read is on its way (the
        client then waits for the origin anyway: learning there costs it nothing), or at
        most LEARN_DEFER_S. A larger batch (a busy server) is learned at once."""
        if not self.events:
            return
        loader = self.loader
        if loader is not None and loader.demand_running and not loader.demand_queued:
            self._client_waits()  # a client already waits on the origin
            return
        if loader is None or LEARN_DEFER_S <= 0 or len(self.events) >= LEARN_NOW_EVENTS:
            self._tick()  # a busy server
            return
        if loader.demand_queued:
            self._learn_when_started()
        if self.learn_timer is None:  # at the latest (also if a read waits long for a worker)
            self.learn_timer = self.services.server.loop.call_later(LEARN_DEFER_S, self._learn_deferred)

    def _learn_deferred(self) -> None:
        self.learn_timer = None
        self._tick()

    def _learn_when_started(self) -> None:
        """A client's origin read was requested: pending learning runs once it has started."""
        if self.prefetcher is None or self.learning_waits or self.loader is None or LEARN_DEFER_S <= 0:
            return
        self.learning_waits = True
        self.loader.when_demand_started(self._learn_started)

    def _learn_started(self) -> None:
        self.learning_waits = False
        self._client_waits()

    def _client_waits(self) -> None:
        """A client's origin read has started: the loop's deferred work (the eviction prefetched
        stores owe, then learning) runs now, while the client waits for the origin anyway."""
        prefetcher = self.prefetcher
        if prefetcher is not None and prefetcher.evict_owed:
            prefetcher.evict_owed_now()
        self._tick()

    def flush(self) -> None:
        """Hand pending events over now (INFO, export and shutdown see every recorded access;
        the C fast path, before it writes into the collector's ring itself, keeps the order)."""
        if self.events:
            self._tick()

    def _tick(self) -> None:
        if self.learn_timer is not None:
            self.learn_timer.cancel()
            self.learn_timer = None
        events, self.events = self.events, []
        if not events:
            return  # flushed early; this was the batch's scheduled call
        services = self.services
        try:
            collector = services.collector
            now = time.time()
            # events of a batch that began inside a window belong to it even if it closed since
            if collector is not None and (collector.window_open(now) or collector.window_open(now - COLLECTOR_BATCH_S)):
                collector.record(events, now)
            if self.prefetcher is not None:
                self.prefetcher.observe(events)
        except Exception:  # learning must never break serving
            log.exception("access event processing failed")


class PrefetchLoads:
    """The loader as the prefetcher sees it: its loads are prefetch reads, which start only
    when no client's read waits (``OriginLoader``); ``inflight`` is the loader's own map, so a
    client's miss on a key being prefetched joins that read.

    The prefetcher's done-callback runs as the read's first then-callback (``PrefetchRead``):
    before the callback of a client that joined the read, as with plain future callbacks. So
    the prefetch stores its value first and the client's load finds it there (counted as a
    late prefetch, ``Prefetcher.on_demand_load``), not the other way round."""

    __slots__ = ("inflight", "loader")

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.inflight = loader.inflight

    def load(self, key: bytes) -> PrefetchRead | asyncio.Future:
        future = self.loader.load(key, prefetch=True)
        return future if future.done() else PrefetchRead(self.loader, key, future)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class PrefetchRead:
    """A prefetch's future whose done-callbacks run as the loader's then-callbacks."""

    __slots__ = ("future", "key", "loader")

    def __init__(self, loader: Any, key: bytes, future: asyncio.Future) -> None:
        self.loader, self.key, self.future = loader, key, future

    def add_done_callback(self, fn: Any) -> None:
        future = self.future
        if future.done() or not self.loader.then(self.key, lambda _v, _e: fn(future)):
            future.add_done_callback(fn)

    def __await__(self) -> Any:
        return self.future.__await__()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.future, name)


class PredictionServices:
    """Wires origin, collector, prefetcher and model reload into the server and its config."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.config = server.config
        self.hook = AccessHook(self)
        self.loader = None
        self.collector = None
        self.exporter = None
        self.ranker = None
        self.prefetcher = None
        self.reloader = None
        self.window_handle: asyncio.TimerHandle | None = None
        self.last_reconcile = 0.0
        self.origin_error = ""
        c = server.config
        for name in ("origin", "origin-timeout"):
            c.watch(name, lambda _v: self._open_origin())
        for name in ("origin-ttl", "origin-error-reply", "prefetch-threshold", "prefetch-max-inflight",
                     "prefetch-memory-share", "prefetch-stream-floor", "prefetch-precision-floor"):
            c.watch(name, lambda _v: self._apply_prefetch_limits())
        for name in ("prefetch-enabled", "collector-sampling", "collector-export-dir", "models-dir"):
            c.watch(name, lambda _v: self._reconfigure())
        server.hooks.setdefault("start", []).append(self.start)
        server.hooks.setdefault("cron", []).append(self.cron)
        server.hooks.setdefault("shutdown", []).append(self.shutdown)

    @property
    def ttl_ms(self) -> int:
        return self.config.origin_ttl * 1000

    @property
    def error_reply(self) -> str:
        return self.config.origin_error_reply

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        self._wrap_exec()
        self._open_origin()
        self._reconfigure()

    def _wrap_exec(self) -> None:
        # Queued GETs run inside EXEC's handler, where a Deferred cannot be answered:
        # mark EXEC's extent so the hook treats the origin as absent there.
        cmd = self.server.executor.table.get(b"exec")
        if cmd is None or getattr(cmd.handler, "_predis_no_defer", False):
            return
        original = cmd.handler
        hook = self.hook

        def exec_without_deferral(client: Any, argv: list[bytes]) -> object:
            hook.in_exec += 1
            try:
                return original(client, argv)
            finally:
                hook.in_exec -= 1

        exec_without_deferral._predis_no_defer = True  # type: ignore[attr-defined]
        cmd.handler = exec_without_deferral

    async def shutdown(self) -> None:
        self.hook.flush()
        if self.exporter is not None:
            self.exporter.stop()
            self.exporter.join(5)
        if self.reloader is not None:
            self.reloader.stop()
        if self.ranker is not None:
            self.ranker.close()
        if self.loader is not None:
            self.loader.close()

    def _open_origin(self) -> None:
        from .origin import OriginLoader, open_origin

        if self.loader is not None:
            self.loader.close()
            self.loader = None
        url = self.config.origin
        self.origin_error = ""
        if url:
            try:
                origin = open_origin(url)
                self.loader = OriginLoader(origin, timeout_s=self.config.origin_timeout / 1000.0)
            except Exception as exc:  # a bad URL leaves the server running without an origin
                self.origin_error = str(exc)
                log.error("origin %s unusable: %s", url, exc)
        self.hook.loader = self.loader
        self.hook.learning_waits = False  # a wait on the old loader's reads is void
        if self.prefetcher is not None:
            self.prefetcher.loader = self._prefetch_loader()
        self._install_hook()

    def _prefetch_loader(self) -> PrefetchLoads | None:
        return None if self.loader is None else PrefetchLoads(self.loader)

    def _apply_prefetch_limits(self) -> None:
        p = self.prefetcher
        if p is not None:
            c = self.config
            if p.threshold != c.prefetch_threshold:
                p.threshold = c.prefetch_threshold
                p.control.reset(c.prefetch_threshold)  # a new threshold restarts the precision control
            p.control.floor = c.prefetch_precision_floor
            p.max_inflight = c.prefetch_max_inflight
            p.memory_share = c.prefetch_memory_share
            p.ttl_ms = self.ttl_ms
            p.stream_floor = c.prefetch_stream_floor

    def _reconfigure(self) -> None:
        c = self.config
        if self.server.loop is None:
            return  # start() applies it
        if (c.collector_sampling > 0 or c.prefetch_enabled) and self.collector is None:
            from models.collector import AccessCollector

            self.collector = AccessCollector(c.collector_buffer_events, c.collector_sampling)
        if self.collector is not None:
            self.collector.sampling = c.collector_sampling
            self.collector.export_dir = c.collector_export_dir
            self.collector.export_max_bytes = c.collector_export_max_bytes
            if c.collector_export_dir and self.exporter is None:
                from models.collector import CollectorExporter

                self.exporter = CollectorExporter(self.collector)
                self.exporter.start()
        if c.prefetch_enabled or c.models_dir:
            self._ensure_ranker()
        if c.prefetch_enabled and self.prefetcher is None:
            from models.prefetch import Prefetcher

            self.prefetcher = Prefetcher(self.server, self._prefetch_loader(), self.ranker)
            self._apply_prefetch_limits()
        elif not c.prefetch_enabled and self.prefetcher is not None:
            self.prefetcher = None
        self.hook.prefetcher = self.prefetcher
        if self.reloader is not None:
            self.reloader.set_directory(c.models_dir)
        self._install_hook()

    def _ensure_ranker(self) -> None:
        if self.ranker is None:
            from models.ranker import RankerService
            from models.reload import ModelReloader

            self.ranker = RankerService()
            self.reloader = ModelReloader(self)
            self.reloader.set_directory(self.config.models_dir)

    def _install_hook(self) -> None:
        """Set server.access_hook only when something needs it (else GET pays one check)."""
        c = self.config
        # the MLOps loop is installed after this object (services), so look it up here
        self.hook.tenant_of = getattr(getattr(self.server, "mlops", None), "tenant_id", None)
        collector_on = self.collector is not None and self.collector.window_open(time.time())
        self.hook.observing = bool(self.prefetcher is not None or collector_on)
        needed = self.loader is not None or self.hook.observing
        self.server.access_hook = self.hook if needed else None
        fast_runs = getattr(self.server, "fast_runs", None)
        if fast_runs is not None:
            fast_runs.observers_changed()
        if self.window_handle is not None:
            self.window_handle.cancel()
            self.window_handle = None
        loop = self.server.loop
        if loop is not None and self.collector is not None and 0 < c.collector_sampling < 1:
            # Re-evaluate at the next window edge.
            period = self.collector.window_s
            now = time.time()
            phase = now % period
            open_len = c.collector_sampling * period
            delay = (open_len - phase) if phase < open_len else (period - phase)
            self.window_handle = loop.call_later(max(delay, 0.001), self._install_hook)

    def cron(self) -> None:
        now = time.monotonic()
        if now - self.last_reconcile < 1.0:
            return
        self.last_reconcile = now
        if self.prefetcher is not None:
            self.prefetcher.reconcile()
        if self.reloader is not None:
            self.reloader.poll()


def install(server: Server) -> PredictionServices:
    server.access_hook = None
    services = PredictionServices(server)
    server.prediction = services
    return services
