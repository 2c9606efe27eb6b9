"""Start-up, listeners, the batch loop, background tasks, signals and graceful shutdown.

Every connection parses its bytes into argv lists and hands them to ``enqueue``; the
commands of all connections that became ready in one event-loop tick run together in
``run_batch`` (arrival order per connection, one after the other, Redis semantics), and
each connection's replies leave in a single write.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import time
from typing import Any

from gpu import backend_class

from . import batching
from .acl import AccessControl
from .client import Client
from .commands import COMMANDS
from .config import Config
from .errors import CommandError, ProtocolError
from .executor import Executor
from .gc_policy import freeze_start_up_objects
from .keyspace import Keyspace
from .lone_batch import MIN_LONE, LoneBatch
from .pipeline import FastRuns
from .protocol.connection import OUTPUT_BATCH_LIMIT, Connection
from .protocol.encoder import OK_BYTES, encode, encode_bulk_array, encode_error
from .pubsub_hub import PubSubHub
from .replies import OK, Deferred, NoReply, Resolved
from .services import install_services, throttle_failed_auth
from .stats import LatencyMonitor, Slowlog, Stats

log = logging.getLogger("predis")


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.stats = Stats()
        self.slowlog = Slowlog()
        self.latency = LatencyMonitor()
        self.started = time.time()
        self.run_id = os.urandom(20).hex()
        self.backend = backend_class(config.store_backend)
        self.keyspace = Keyspace(config.databases, self.backend, self.stats)
        self.pubsub = PubSubHub(self)
        self.connections: dict[int, Connection] = {}
        self.acl = AccessControl(COMMANDS, self.stats)
        self.executor = Executor(self)
        self.fast_runs = FastRuns(self)
        self.lone_batch = LoneBatch(self.fast_runs)
        self.coalesce = batching.wants_coalescing(self.keyspace)  # False for the CPU store
        self.pending: list[tuple[Connection, list[Any]]] = []
        self.dirty: set[Connection] = set()
        self.batch_scheduled = False
        self.paused_until = 0.0
        self.pause_writes_only = False
        self.paused: list[tuple[Connection, list[Any]]] = []
        self.active_expire = config.active_expire_enabled
        self.loop: asyncio.AbstractEventLoop | None = None
        self.listeners: list[asyncio.base_events.Server] = []
        self.shutdown_event: asyncio.Event | None = None
        self.exit_code = 0
        self.hooks: dict[str, list[Any]] = {}  # extension points: "cron", "shutdown"
        from .readthrough import install as install_prediction

        install_prediction(self)  # sets self.access_hook (None: GET/MGET behave as plain Redis)
        install_services(self)  # ACL users, rename-command, TLS, metrics, audit log
        self._apply_memory_config()
        for name in ("maxmemory", "maxmemory-policy", "maxmemory-samples", "lfu-log-factor",
                     "lfu-decay-time"):
            config.watch(name, lambda _value: self._apply_memory_config())
        for name in ("proto-max-bulk-len", "client-query-buffer-limit"):
            config.watch(name, lambda _value: self._apply_parser_limits())

    @property
    def clients(self) -> dict[int, Connection]:
        return self.connections

    def _apply_memory_config(self) -> None:
        c = self.config
        self.keyspace.configure(c.maxmemory, c.maxmemory_policy, c.maxmemory_samples,
                                c.lfu_log_factor, c.lfu_decay_time)

    def _apply_parser_limits(self) -> None:
        for conn in self.connections.values():
            conn.parser.set_limits(self.config.proto_max_bulk_len, self.config.client_query_buffer_limit)

    # -- authentication and access --------------------------------------------------------
    loop_name = "asyncio"

    def auth_required(self) -> bool:
        return self.acl.auth_required()

    def has_acl_users(self) -> bool:
        return self.acl.has_users()

    def authenticate(self, username: str, password: bytes, client: Client) -> bool:
        """Constant-time password check against the ACL users (predis_server/acl.py)."""
        ok = self.acl.authenticate(username, password)
        if not ok:
            from .commands.connection import client_info_line

            self.acl.add_log("auth", b"AUTH", username, client_info_line(client))
            throttle_failed_auth(self, client)
        self.audit("auth-success" if ok else "auth-failure", client, user=username)
        return ok

    def audit(self, event: str, client: Client | None, **fields: Any) -> None:
        """Hand a security-relevant event to the audit hooks (none until an audit log is set)."""
        for hook in self.hooks.get("audit", ()):
            hook(event, client, fields)

    def protected_mode_allows(self, peer: object, kind: str) -> bool:
        if kind == "unix" or not self.config.protected_mode or self.config.requirepass:
            return True
        if isinstance(peer, tuple):
            try:
                return ipaddress.ip_address(peer[0].split("%")[0]).is_loopback
            except ValueError:
                return True
        return True

    @staticmethod
    def protected_mode_message() -> str:
        return ("DENIED Redis is running in protected mode because protected mode is enabled and no "
                "password is set for the default user. In this mode connections are only accepted "
                "from the loopback interface. If you want to connect from external computers to "
                "Redis you may adopt one of the following solutions: 1) Just disable protected mode "
                "sending the command 'CONFIG SET protected-mode no' from the loopback interface by "
                "connecting to Redis from the same host the server is running, however MAKE SURE "
                "Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to "
                "make this change permanent. 2) Alternatively you can just disable the protected mode "
                "by editing the Redis configuration file, and setting the protected mode option to "
                "'no', and then restarting the server. 3) If you started the server manually just for "
                "testing, restart it with the '--protected-mode no' option. 4) Set up an "
                "authentication password for the default user. NOTE: You only need to do one of the "
                "above things in order for the server to start accepting connections from the "
                "outside.")

    # -- connections ----------------------------------------------------------------------
    def register(self, conn: Connection) -> None:
        assert conn.client is not None
        self.connections[conn.client.id] = conn

    def unregister(self, conn: Connection) -> None:
        client = conn.client
        assert client is not None
        self.connections.pop(client.id, None)
        self.pubsub.drop_client(client)
        self.keyspace.unwatch_all(client)
        self.dirty.discard(conn)

    def pubsub_buffer_exceeded(self, conn: Connection) -> bool:
        hard = _output_limit(self.config.client_output_buffer_limit, "pubsub")
        if hard and conn.transport is not None and conn.transport.get_write_buffer_size() > hard:
            self.stats.client_output_buffer_limit_disconnections += 1
            return True
        return False

    # -- the batch loop -------------------------------------------------------------------
    def enqueue(self, conn: Connection, commands: list[Any]) -> None:
        self.pending.append((conn, commands))
        if not self.batch_scheduled:
            self.batch_scheduled = True
            assert self.loop is not None
            self.loop.call_soon(self.run_batch)

    def run_batch(self) -> None:
        self.batch_scheduled = False
        pending, self.pending = self.pending, []
        self.fast_runs.quiet_sink = None
        if len(pending) >= MIN_LONE:  # the lone commands of many connections: one C call
            pending = self.lone_batch.run(pending)
        execute = self.executor.execute
        fast = self.fast_runs
        fast_kinds = fast.kinds
        dirty = self.dirty
        throttled = []
        for conn, commands in pending:
            client = conn.client
            if client is None:
                continue
            dirty.add(conn)
            if client.paused_backlog is not None:
                client.paused_backlog.extend(commands)
                continue
            if conn.backlog is not None:  # keep arrival order behind the throttled commands
                conn.backlog.extend(commands)
                continue
            out = client.output
            counted = len(out)
            out_bytes = 0
            next_check = 64  # output flow control, checked cheaply every 64 commands
            position = 0
            total = len(commands)
            while position < total:
                if client.closing:
                    break
                if position >= next_check:
                    out_bytes += sum(map(len, out[counted:]))
                    counted = len(out)
                    next_check = position + 64
                    if out_bytes > OUTPUT_BATCH_LIMIT:  # the rest waits for the socket to drain
                        conn.backlog = commands[position:]
                        throttled.append(conn)
                        break
                argv = commands[position]
                if type(argv) is not list:
                    if type(argv) is Resolved:  # the answer of a Deferred, in order
                        encode(argv.value, client.resp == 3, out)
                        position += 1
                        continue
                    self._protocol_failure(client, argv)
                    break
                # a run of plain GET / SET key value / INCR: one tight loop (pipeline.py);
                # a lone command (no pipeline) gains nothing from it
                kind = fast_kinds.get(argv[0])
                if kind is None:
                    kind = fast.kind_of(argv[0])
                if kind and position + 1 < total:
                    ran = fast.run(client, commands, position)
                    if ran:
                        position += ran
                        continue
                if self.paused_until and self._must_pause(argv):
                    client.paused_backlog = list(commands[position:])
                    self.paused.append((conn, []))
                    break
                reply = execute(client, argv)
                client.last_command = argv[0]
                position += 1
                if type(reply) is Deferred:
                    # Later commands of this client wait until the reply is ready.
                    client.paused_backlog = list(commands[position:])
                    self._await_deferred(conn, reply)
                    break
                if client.reply_mode == "on":
                    # the commonest replies inline (GET's bulk, SET's +OK, INCR's integer,
                    # MGET's flat array); the rest through the encoder
                    if type(reply) is bytes:
                        out.append(b"$%d\r\n%s\r\n" % (len(reply), reply))
                    elif reply is OK:
                        out.append(OK_BYTES)
                    elif type(reply) is int:
                        out.append(b":%d\r\n" % reply)
                    elif type(reply) is list:
                        encode_bulk_array(reply, client.resp == 3, out)
                    elif type(reply) is not NoReply:
                        encode(reply, client.resp == 3, out)
                elif client.reply_mode == "skip":
                    client.reply_mode = "on"
                    client.update_plain()
                elif client.reply_mode == "skip_next":
                    client.reply_mode = "skip"
            client.last_interaction = time.time()
        self.dirty = set()
        for conn in dirty:
            conn.flush()
        if self.coalesce:  # after the replies are written: they need only the host copy
            batching.end_tick(self.keyspace, self.config.gpu_sync_interval / 1000)
        for conn in throttled:
            # run the rest next tick, or once the socket drains (resume_writing) if it is full
            if conn.backlog is not None and not conn.writing_paused and conn.client is not None \
                    and not conn.client.closing:
                backlog, conn.backlog = conn.backlog, None
                self.enqueue(conn, backlog)
        if self.shutdown_event is not None and self.shutdown_requested:
            self.shutdown_event.set()


    def _await_deferred(self, conn: Connection, deferred: Deferred) -> None:
        def resume(future: Any) -> None:
            client = conn.client
            if client is None or client.closing:
                return
            try:
                value = future.result()
            except CommandError as exc:
                self.stats.count_error(exc.message)
                value = exc
            except Exception as exc:  # a failed load must not leave the client waiting
                log.exception("deferred reply failed")
                value = CommandError(f"ERR {exc}")
            backlog, client.paused_backlog = client.paused_backlog or [], None
            self.enqueue(conn, [Resolved(value), *backlog])

        deferred.future.add_done_callback(resume)  # type: ignore[attr-defined]

    def _protocol_failure(self, client: Client, error: ProtocolError | None) -> None:
        if error is not None:
            message = f"ERR Protocol error: {error}"
            self.stats.count_error(message)
            client.output.append(encode_error(message))
        client.closing = True

    def _must_pause(self, argv: list[bytes]) -> bool:
        if time.time() >= self.paused_until:
            self.unpause()
            return False
        if not self.pause_writes_only:
            return True
        cmd = self.executor.table.get(argv[0].lower())
        return cmd is not None and (cmd.is_write or "may_replicate" in cmd.flags)

    def pause(self, seconds: float, writes_only: bool) -> None:
        self.paused_until = max(self.paused_until, time.time() + seconds)
        self.pause_writes_only = writes_only
        assert self.loop is not None
        self.loop.call_later(seconds + 0.001, self._pause_timer)

    def _pause_timer(self) -> None:
        if self.paused_until and time.time() >= self.paused_until:
            self.unpause()

    def unpause(self) -> None:
        self.paused_until = 0.0
        resumed, self.paused = self.paused, []
        for conn, _ in resumed:
            client = conn.client
            if client is None or client.paused_backlog is None:
                continue
            backlog, client.paused_backlog = client.paused_backlog, None
            if backlog:
                self.enqueue(conn, backlog)

    # -- background work ------------------------------------------------------------------
    async def cron(self) -> None:
        """Active expiry, idle-client timeouts and extension hooks, ``hz`` times a second."""
        while True:
            await asyncio.sleep(1.0 / max(1, self.config.hz))
            try:
                if self.active_expire and self.config.active_expire_enabled:
                    self.keyspace.active_expire_cycle()
                if self.keyspace.maxmemory:
                    self.keyspace.enforce_maxmemory()
                self._close_idle_clients()
                for hook in self.hooks.get("cron", ()):
                    hook()
            except Exception:  # a background failure must never stop the server
                log.exception("cron cycle failed")

    def _close_idle_clients(self) -> None:
        timeout = self.config.timeout
        if not timeout:
            return
        cutoff = time.time() - timeout
        for conn in list(self.connections.values()):
            client = conn.client
            if client is not None and client.last_interaction < cutoff and not client.in_pubsub:
                conn.close_now()

    # -- lifecycle ------------------------------------------------------------------------
    shutdown_requested = False

    def request_shutdown(self, exit_code: int = 0) -> None:
        self.shutdown_requested = True
        self.exit_code = exit_code
        if self.shutdown_event is not None and not self.batch_scheduled:
            self.shutdown_event.set()

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.shutdown_event = asyncio.Event()
        config = self.config
        if config.port:
            for host in config.bind.split():
                host = host.lstrip("-")  # "-::1": optional address, skip if unavailable
                try:
                    listener = await self.loop.create_server(
                        lambda: Connection(self, "tcp"), host, config.port,
                        backlog=config.tcp_backlog, reuse_address=True)
                except OSError as exc:
                    if config.bind.split()[0].lstrip("-") == host:
                        raise
                    log.warning("could not listen on %s:%s: %s", host, config.port, exc)
                    continue
                self.listeners.append(listener)
        if config.unixsocket:
            if os.path.exists(config.unixsocket):
                os.unlink(config.unixsocket)
            self.listeners.append(await self.loop.create_unix_server(
                lambda: Connection(self, "unix"), config.unixsocket))
        for hook in self.hooks.get("start", ()):
            await hook()

    async def serve(self) -> int:
        await self.start()
        freeze_start_up_objects()  # the keyspace's containers out of every later GC pass
        assert self.loop is not None and self.shutdown_event is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.loop.add_signal_handler(sig, self.request_shutdown)
            except (NotImplementedError, RuntimeError):
                pass
        cron = asyncio.ensure_future(self.cron())
        addresses = ", ".join(str(s.sockets[0].getsockname()) for s in self.listeners if s.sockets)
        log.warning("Predis ready to accept connections on %s (store backend: %s)",
                    addresses, self.backend.name)
        await self.shutdown_event.wait()
        await self.stop()
        cron.cancel()
        return self.exit_code

    async def stop(self) -> None:
        """Graceful shutdown: stop accepting, answer what was read, flush, close, exit."""
        for listener in self.listeners:
            listener.close()
        if self.pending:
            self.run_batch()
        for conn in list(self.connections.values()):
            conn.flush()
            if conn.transport is not None:
                conn.transport.close()
        for hook in self.hooks.get("shutdown", ()):
            await hook()
        await asyncio.sleep(0)
        for listener in self.listeners:
            await listener.wait_closed()
        if self.config.unixsocket and os.path.exists(self.config.unixsocket):
            os.unlink(self.config.unixsocket)
        log.warning("Predis is now ready to exit, bye bye...")


def _output_limit(spec: str, klass: str) -> int:
    words = spec.split()
    for i in range(0, len(words) - 3, 4):
        if words[i] == klass:
            from .config import parse_memory
            return parse_memory(words[i + 1])
    return 0
