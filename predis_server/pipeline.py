"""Runs of plain GET / SET key value / INCR in one connection's pipeline, in one tight loop.

``Server.run_batch`` hands every command to ``Executor.execute``, which costs several Python
calls per command (execute -> call -> handler -> Database -> store) plus the timing and
stats bookkeeping of ``call``. At redis-benchmark -P 16 that overhead, not the store, is
most of the server's CPU. ``FastRuns.run`` executes a run of consecutive plain GET, SET
(exactly ``SET key value``) and INCR commands of one connection directly against the store,
appending the encoded replies, and does the bookkeeping once per run (at most
``RUN_CHUNK`` commands). INCR calls ``strings.incr_by``, the handlers' own operation; GET and
plain SET are a store call each.

The replies, keyspace hits/misses, WRONGTYPE / not-an-integer / overflow errors, error
stats, WATCH signals, LRU/LFU touching and expiry are those the handlers in
``commands/strings.py`` produce. Only the timing granularity differs: one clock reading and
one perf-counter interval per run, commandstats' usec split evenly across its commands.
That is why runs are only taken when nothing needs a single command's own time: the slow
log must be off or have a threshold of at least ``SLOWLOG_FLOOR_US`` (a run slower than the
threshold on average logs each of its commands with that average), and the latency
monitor must be off. Everything that changes a command's path (MULTI, pub/sub, ACL rules,
authentication, CLIENT REPLY, CLIENT PAUSE, maxmemory for writes, renamed or wrapped
handlers, tenants by key prefix) makes ``run`` return 0 and the caller takes the normal path.

Where the C extension is built (``fastpath.py``), ``_native`` runs the chunk in one C call
against the store's layout; the Python loop then takes only a command C refused (an
expired key, a non-integer INCR, an origin load, the first read of a prefetched entry), one
at a time. Without the extension the Python loop takes whole chunks.

With the access hook installed (origin, collector, prefetcher) runs go on: C writes each
GET's event into the collector's ring or the hook's list, the Python loop's ``GetObserver``
records them as ``AccessHook.on_get`` would (prefetched hits included), and with an origin
a run stops before a GET that misses, which the normal path then loads.
"""
from __future__ import annotations

import time
from itertools import repeat
from typing import TYPE_CHECKING, Any

from gpu.interface import StoreFull

from . import errors
from .commands import strings
from .errors import CommandError
from .fastpath import native
from .protocol.encoder import NULL3, NULL_BULK, OK_BYTES, encode_error, join_bulk_strings, only_bytes
from .readthrough import HIT, MISS, OP_GET

if TYPE_CHECKING:
    from .client import Client
    from .server import Server

_perf_ns = time.perf_counter_ns

GET_BATCH_MIN = 4  # shorter runs of GETs go one by one (the batch's setup costs more)
RUN_CHUNK = 64  # at most this many commands a run: run_batch checks output flow control between
SLOWLOG_FLOOR_US = 1000  # a plain GET/SET/INCR takes ~1 µs; lower thresholds need exact timing
_INLINE_VALUE_MAX = 16384  # longer GET values go out as three parts rather than one copy

NOT_FAST, GET, SET, INCR, MGET = 0, 1, 2, 3, 4  # MGET: only in the C path (the Python loop stops at it)
_HANDLERS = {GET: strings.get, SET: strings.set_, INCR: strings.incr, MGET: strings.mget}
incr_by = strings.incr_by
_WRONGTYPE = encode_error(errors.WRONGTYPE)
_WRONGTYPE_MESSAGE = _WRONGTYPE[1:-2].decode()
# each fast kind and where native.run's result tuple counts its commands
_NATIVE_COUNT_AT = ((GET, 2), (SET, 3), (INCR, 4), (MGET, 9))
_OOM = encode_error(errors.OOM)


class FastRuns:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.executor = server.executor
        self.keyspace = server.keyspace
        self.stats = server.stats
        self.config = server.config
        # argv[0] exactly as sent -> GET/SET/INCR/NOT_FAST; filled on first use, so start-up
        # renames are respected (the row is found by name, then recognised by its handler)
        self.kinds: dict[bytes, int] = {}
        self.rows: dict[int, Any] = {}
        self._tenant_source: Any = None  # the hook's tenant_of that _tenant_ids came from
        # this tick's event sink when no observer reads events (run_batch resets it each tick)
        self.quiet_sink: tuple | None = None
        # the collector's ring while it is the only observer, its tenant set for ring_user's
        # runs (the access hook resets it whenever observers change: observers_changed)
        self.collector_ring: Any = None
        self.ring_user: Any = None
        self._tenant_ids: dict[str | None, int] = {}

    def kind_of(self, name: bytes) -> int:
        """The fast kind of a command name as sent (cached; NOT_FAST for everything else)."""
        kind = self.kinds.get(name)
        if kind is not None:
            return kind
        kind = NOT_FAST
        cmd = self.executor.table.get(name.lower())
        if cmd is not None and not cmd.subcommands:
            for candidate, handler in _HANDLERS.items():
                if cmd.handler is handler:
                    kind = candidate
                    self.rows[candidate] = cmd
        if len(self.kinds) < 4096:
            self.kinds[name] = kind
        return kind

    def _allowed(self, client: Client) -> bool:
        return self.client_allowed(client) and self.allowed_globally()

    @staticmethod
    def client_allowed(client: Client) -> bool:
        """This client's state lets its plain commands skip their own path (no MULTI, no
        pub/sub, authenticated, replies on)."""
        return client.authenticated and client.multi is None and client.reply_mode == "on" \
            and not client.channels and not client.patterns

    def allowed_globally(self) -> bool:
        """No server setting needs a single command's own path (ACL rules, tenants by key,
        CLIENT PAUSE, a slow log or latency monitor finer than a run, wrapped handlers)."""
        server = self.server
        config = self.config
        threshold = config.slowlog_log_slower_than
        if self.executor.acl.enforcing or (server.access_hook is not None and config.tenant_mode != "user") \
                or server.paused_until or 0 <= threshold < SLOWLOG_FLOOR_US or config.latency_monitor_threshold:
            return False
        # a handler wrapped after start-up (an extension) must run as it is now
        for kind, cmd in self.rows.items():
            if cmd.handler is not _HANDLERS[kind]:
                return False
        return True

    @staticmethod
    def _gets(keys: list[bytes], store: Any, now: int, out: list[bytes], null: bytes,
              watch: GetObserver | None, loads_misses: bool) -> tuple[int, int, int, bool]:
        """A run of plain GETs: one ``get_many`` and, when all hit, one join for all replies.
        (GETs answered, hits among them, WRONGTYPE replies, stopped before an origin load)."""
        values = store.get_many(keys, now)
        stop = loads_misses and None in values
        if stop:  # the GETs before the first miss; the miss loads the normal way
            cut = values.index(None)
            keys, values = keys[:cut], values[:cut]
        if values and None not in values and only_bytes(values):
            out.append(join_bulk_strings(values))
            if watch is not None:
                watch.hits(keys, values)
            return len(values), len(values), 0, stop
        if watch is not None:
            watch.mixed(keys, values)
        hits = wrong = 0
        for value in values:
            if value is None:
                out.append(null)
                continue
            hits += 1
            if type(value) is bytes:
                out.append(b"$%d\r\n%s\r\n" % (len(value), value))
            else:
                out.append(_WRONGTYPE)
                wrong += 1
        return len(values), hits, wrong, stop

    def run(self, client: Client, commands: list[Any], start: int) -> int:
        """Run the plain GET/SET/INCR commands from ``commands[start]`` on; how many ran (0:
        none, the caller runs ``commands[start]`` the normal way)."""
        if not self._allowed(client):
            return 0
        if native is not None:
            ran = self._native(client, commands, start)
            if ran:
                return ran
        ks = self.keyspace
        writes = not ks.maxmemory  # with maxmemory every write checks memory first: normal path
        kinds = self.kinds
        out = client.output
        append = out.append
        db = client.db
        store = db.store
        store_get = store.get
        store_set = store.set
        touch = not client.no_touch  # CLIENT NO-TOUCH
        null = NULL3 if client.resp == 3 else NULL_BULK
        hook = self.server.access_hook
        watch = GetObserver(hook, client) if hook is not None else None
        # with an origin a GET miss is a load (a Deferred reply): the run stops before it
        loads_misses = hook is not None and hook.loader is not None and not hook.in_exec
        # with the extension this loop takes only the command the C path refused (an expired
        # key, a non-integer INCR, an origin load...); the next call starts in C again
        in_c = native is not None and store.native_view() is not None
        end = min(len(commands), start + (1 if in_c else RUN_CHUNK))
        counts = [0, 0, 0, 0, 0]
        failed = [0, 0, 0, 0, 0]
        error_replies: list[bytes] = []
        hits = misses = 0
        now = ks.source_clock()
        ks.now_ms = now  # what the handlers INCR calls read as the command's time
        began = _perf_ns()
        i = start
        try:
            while i < end:
                argv = commands[i]
                if type(argv) is not list:
                    break
                kind = kinds.get(argv[0])
                argc = len(argv)
                if kind == GET:
                    if argc != 2:
                        break
                    if touch:
                        # consecutive GETs: one get_many and one join for all their replies
                        j = i + 1
                        while j < end:
                            nxt = commands[j]
                            if type(nxt) is not list or len(nxt) != 2 or kinds.get(nxt[0]) != GET:
                                break
                            j += 1
                        if j - i >= GET_BATCH_MIN:
                            done, run_hits, wrong, stop = self._gets(
                                [argv[1] for argv in commands[i:j]], store, now, out, null, watch, loads_misses)
                            hits += run_hits
                            misses += done - run_hits
                            if wrong:
                                failed[GET] += wrong
                                error_replies += [_WRONGTYPE] * wrong
                            counts[GET] += done
                            i += done
                            if stop:
                                break
                            continue
                    value = store_get(argv[1], now, touch)
                    if watch is not None:
                        if value is None:
                            if loads_misses:
                                break  # the normal path loads it from the origin
                            watch.miss(argv[1])
                        elif type(value) is bytes:
                            watch.hit(argv[1], value)
                    if value is None:
                        misses += 1
                        append(null)
                    else:
                        hits += 1
                        if type(value) is not bytes:
                            append(_WRONGTYPE)
                            failed[GET] += 1
                            error_replies.append(_WRONGTYPE)
                        elif len(value) < _INLINE_VALUE_MAX:
                            append(b"$%d\r\n%s\r\n" % (len(value), value))
                        else:
                            append(b"$%d\r\n" % len(value))
                            append(value)
                            append(b"\r\n")
                elif kind == SET:
                    if argc != 3 or not writes:
                        break
                    key = argv[1]
                    try:
                        store_set(key, argv[2], now, 0, False)
                    except StoreFull:
                        append(_OOM)
                        failed[SET] += 1
                        error_replies.append(_OOM)
                    else:
                        append(OK_BYTES)
                        if ks.watchers:
                            ks.signal_modified(db.id, key)
                elif kind == INCR:
                    if argc != 2 or not writes:
                        break
                    try:
                        append(b":%d\r\n" % incr_by(client, argv[1], 1))
                    except CommandError as exc:
                        reply = encode_error(exc.message)
                        append(reply)
                        failed[INCR] += 1
                        error_replies.append(reply)
                else:
                    break
                counts[kind] += 1
                i += 1
        finally:
            ks.now_ms = 0
        elapsed_ns = _perf_ns() - began
        ran = i - start
        if not ran:
            return 0
        self._account(client, commands, start, ran, self.count(counts, failed, error_replies, elapsed_ns, ran))
        ks.stats.keyspace_hits += hits
        ks.stats.keyspace_misses += misses
        return ran

    def _native(self, client: Client, commands: list[Any], start: int) -> int:
        """The run in C (fastpath.py): one call for the chunk and its bookkeeping. How many
        ran; 0 when C refused the first command, which the Python loop below then takes.
        With the access hook the GETs' events go along: into the collector's ring when it is
        the only observer (events the Python path queued first, so the ring keeps the order),
        else appended to the hook's list as the Python path appends them; with an origin, C
        stops before a miss (a load, answered later)."""
        store = client.db.store
        view = store.native_view()
        if view is None:
            return 0
        ks = self.keyspace
        now = ks.source_clock()
        options = (0 if client.no_touch else native.OPT_TOUCH) \
            | (0 if ks.maxmemory or ks.watchers else native.OPT_WRITES)
        hook = self.server.access_hook
        sink = None
        if hook is not None:
            if hook.loader is not None and not hook.in_exec:
                options |= native.OPT_STOP_AT_MISS
            if hook.observing:
                # the collector's ring as it stands (events the Python path queued go in
                # first, so the ring keeps the order), or the sink decided at this tick's
                # first run, or a new decision
                sink = self.collector_ring
                if sink is None or client.user != self.ring_user or hook.events:
                    sink = self.quiet_sink or self._event_sink(hook, client, now)
        null = NULL3 if client.resp == 3 else NULL_BULK
        end = min(len(commands), start + RUN_CHUNK)
        began = _perf_ns()
        result = native.run(commands, start, end, self.kinds, view, now, options, null, _WRONGTYPE, sink, store)
        ran, reply, *_, recorded, _ = result
        if not ran:
            return 0
        if sink is not None and sink is self.quiet_sink:
            hook.prefetcher.skipped(recorded)
        client.output.append(reply)
        self._account(client, commands, start, ran, self.count_native(result, _perf_ns() - began))
        return ran

    def _event_sink(self, hook: Any, client: Client, now: int) -> Any:
        """The sink for a run's GET events: the collector's ring when it is the only observer
        (events the Python path queued go in first, so the ring keeps the order), kept with
        this client's tenant set until observers change or another user's run comes; else the
        hook's list for the prefetcher; or, when nobody would read them, a sink that only
        counts them (and still defers first reads of prefetched entries), kept for the rest
        of the tick: the budget's clock and the collector's window move between ticks."""
        collector = hook.event_sink(now)
        if collector is not None:
            hook.flush()
            ring = collector.native_ring()
            ring.tenant = self._tenant(hook, client)
            self.collector_ring, self.ring_user = ring, client.user
            return ring
        prefetcher = hook.prefetcher
        recording = hook.services.collector
        if prefetcher is not None and not prefetcher.wants_events() \
                and (recording is None or not recording.window_open(now / 1000)):
            self.quiet_sink = (None, prefetcher.unread, 0, 0)
            return self.quiet_sink
        return (hook.batch(), None if prefetcher is None else prefetcher.unread, client.db.id,
                self._tenant(hook, client))

    def lone_ring(self, hook: Any, client: Client) -> Any:
        """The collector's ring for a batch of lone commands (lone_batch.py) when recording is
        all the access hook does (no origin to load misses, no prefetcher to tell), its tenant
        set to ``client``'s user (the batch keeps to that user); None otherwise."""
        if hook.loader is not None or hook.prefetcher is not None or not hook.observing:
            return None
        ring = self.collector_ring
        if ring is None or client.user != self.ring_user or hook.events:
            ring = self._event_sink(hook, client, self.keyspace.source_clock())
        return ring if ring is self.collector_ring else None

    def observers_changed(self) -> None:
        """The access hook's observers or their settings changed: decide event sinks afresh."""
        self.quiet_sink = self.collector_ring = self.ring_user = None

    def _tenant(self, hook: Any, client: Client) -> int:
        """The run's tenant id (runs only happen with tenants by ACL user): asked of
        ``hook.tenant_of`` once per user, since ids, once given, never change."""
        tenant_of = hook.tenant_of
        if tenant_of is None:
            return 0
        if tenant_of is not self._tenant_source:
            self._tenant_source, self._tenant_ids = tenant_of, {}
        tenant = self._tenant_ids.get(client.user)
        if tenant is None:
            tenant = tenant_of(client.user, b"")
            if len(self._tenant_ids) < 4096:
                self._tenant_ids[client.user] = tenant
        return tenant

    def _account(self, client: Client, commands: list[Any], start: int, ran: int, average_us: int) -> None:
        """A counted run's last command and slow log entries (``average_us``: from ``count``
        or ``count_native``)."""
        client.last_command = commands[start + ran - 1][0]
        if average_us >= SLOWLOG_FLOOR_US:  # runs happen only with no finer slow-log threshold
            self.slow_log(average_us, [(client, argv) for argv in commands[start:start + ran]])

    def count(self, counts: list[int], failed: list[int], error_replies: list[bytes],
              elapsed_ns: int, ran: int) -> int:
        """commandstats, errorstats and the command counter of ``ran`` commands run together
        (usec split evenly); their average time in µs."""
        rows = self.rows
        for kind in (GET, SET, INCR, MGET):
            count = counts[kind]
            if count:
                cmd = rows[kind]
                cmd.calls += count
                cmd.usec += elapsed_ns * count // ran // 1000
                cmd.failed_calls += failed[kind]
        stats = self.stats
        stats.total_commands_processed += ran
        for reply in error_replies:
            stats.count_error(reply[1:-2].decode())
        return elapsed_ns // ran // 1000

    def count_native(self, result: tuple, elapsed_ns: int) -> int:
        """``count`` for a ``native.run`` result tuple, without building its lists (once a
        tick at -P 1), plus the run's keyspace hits and misses; the average time in µs.
        C answers WRONGTYPE only to GETs."""
        ran = result[0]
        rows = self.rows
        for kind, at in _NATIVE_COUNT_AT:
            count = result[at]
            if count:
                cmd = rows[kind]
                cmd.calls += count
                cmd.usec += elapsed_ns * count // ran // 1000
        stats = self.stats
        stats.total_commands_processed += ran
        stats.keyspace_hits += result[5]
        stats.keyspace_misses += result[6]
        wrong = result[7]
        if wrong:
            rows[GET].failed_calls += wrong
            for _ in range(wrong):
                stats.count_error(_WRONGTYPE_MESSAGE)
        return elapsed_ns // ran // 1000

    def slow_log(self, average_us: int, commands: Any) -> None:
        """A run slower on average than the slow log's threshold (a stall: GC, a resize)
        logs each of its (client, argv) with that average."""
        config = self.config
        threshold = config.slowlog_log_slower_than
        if 0 <= threshold <= average_us:
            for client, argv in commands:
                self.server.slowlog.add(argv, average_us, client.addr, client.name, config.slowlog_max_len)


class GetObserver:
    """The access events of a run's GETs, recorded as ``AccessHook.on_get`` records them
    (its ``batch`` and ``hit_outcome``): nothing unless the hook observes (collector window
    open or prefetching on). Tenants are by ACL user here, so one id serves the whole run."""

    __slots__ = ("db", "events", "hook", "tenant")

    def __init__(self, hook: Any, client: Client) -> None:
        self.hook = hook
        self.db = client.db
        self.events = hook.batch() if hook.observing else None
        self.tenant = 0 if hook.tenant_of is None or self.events is None else hook.tenant_of(client.user, b"")

    def hit(self, key: bytes, value: bytes) -> None:
        if self.events is not None:
            self.events.append((key, OP_GET, self.hook.hit_outcome(self.db, key), len(value),
                                self.db.id, self.tenant))

    def miss(self, key: bytes) -> None:
        if self.events is not None:
            self.events.append((key, OP_GET, MISS, 0, self.db.id, self.tenant))

    def hits(self, keys: list[bytes], values: list[bytes]) -> None:
        if self.events is None:
            return
        prefetcher = self.hook.prefetcher
        if prefetcher is not None and prefetcher.unread:  # some may be prefetched hits
            for key, value in zip(keys, values):
                self.hit(key, value)
        else:
            self.events.extend(zip(keys, repeat(OP_GET), repeat(HIT), map(len, values),
                                   repeat(self.db.id), repeat(self.tenant)))

    def mixed(self, keys: list[bytes], values: list) -> None:
        for key, value in zip(keys, values):
            if value is None:
                self.miss(key)
            elif type(value) is bytes:
                self.hit(key, value)
