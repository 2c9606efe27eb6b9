"""Runs commands one after the other with Redis's checks (processCommand + call).

The order of checks follows Redis 7: unknown command, arity, authentication, OOM,
pub/sub context, MULTI queueing; then the handler runs and commandstats, errorstats
and the slow log are updated. Handlers return reply values or raise CommandError.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from . import errors
from .commands import COMMANDS
from .commands.table import Command
from .errors import CommandError
from .replies import QUEUED

if TYPE_CHECKING:
    from .client import Client
    from .server import Server

_perf_ns = time.perf_counter_ns
log = logging.getLogger("predis")
_NOT_QUEUED = {"exec", "discard", "multi", "watch", "quit", "reset"}


def _argv_bytes(argv: list[bytes]) -> int:
    """The command's size, counted as used memory by the maxmemory check (Redis counts the
    query buffer holding it)."""
    return sum(map(len, argv))


class Executor:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.stats = server.stats
        self.config = server.config
        self.keyspace = server.keyspace
        self.acl = server.acl
        self.table: dict[bytes, Command] = {name.encode(): cmd for name, cmd in COMMANDS.items()}
        # argv[0] exactly as clients send it ("GET", "get") -> table row of a command without
        # subcommands; filled on first use, so renames applied at start-up are respected.
        self._exact: dict[bytes, Command] = {}

    def _lookup_exact(self, name: bytes) -> Command | None:
        cmd = self.table.get(name.lower())
        if cmd is not None and not cmd.subcommands and len(self._exact) < 4096:
            self._exact[name] = cmd
        return cmd

    def resolve(self, argv: list[bytes]) -> Command:
        """The table row for argv (subcommands resolved); raises CommandError as Redis words it."""
        cmd = self.table.get(argv[0].lower())
        if cmd is None:
            raise CommandError(errors.unknown_command(argv[0], argv[1:]))
        if cmd.subcommands and (len(argv) >= 2 or cmd.handler is None):  # bare COMMAND runs
            if len(argv) < 2:
                raise CommandError(errors.wrong_arity(cmd.name))
            sub = cmd.subcommands.get(argv[1].lower().decode("utf-8", "replace"))
            if sub is None:
                raise CommandError(errors.unknown_subcommand(argv[1], cmd.name))
            cmd = sub
        if not cmd.arity_ok(len(argv)):
            raise CommandError(errors.wrong_arity(cmd.full_name))
        return cmd

    def execute(self, client: Client, argv: list[bytes]) -> object:
        # Fast path: the common case (known command without subcommands, right arity, no
        # MULTI, authenticated, no ACL rules, not in RESP2 pub/sub, no maxmemory check due)
        # goes straight to call(); everything else takes the full processCommand order below.
        cmd = self._exact.get(argv[0])
        if cmd is not None and client.multi is None and client.authenticated \
                and not self.acl.enforcing:
            arity = cmd.arity
            argc = len(argv)
            if (argc == arity if arity > 0 else argc >= -arity) \
                    and not (cmd.denyoom and self.keyspace.maxmemory) \
                    and (client.resp == 3 or not (client.channels or client.patterns)
                         or cmd.allowed_in_pubsub):
                return self.call(client, cmd, argv)
        elif cmd is None:
            self._lookup_exact(argv[0])
        return self._execute(client, argv)

    def _execute(self, client: Client, argv: list[bytes]) -> object:
        try:
            cmd = self.resolve(argv)
        except CommandError as exc:
            if client.multi is not None:
                client.multi_error = True
            return self.reject(None, self._abort_if_exec(client, argv[0], exc))
        if not client.authenticated and not cmd.no_auth:
            return self.reject(cmd, self._abort_if_exec(client, argv[0], CommandError(errors.NOAUTH)))
        if self.acl.enforcing:  # False while every user may run anything: no cost on the hot path
            denied = self.acl.deny(client, cmd, argv)
            if denied is not None:
                if client.multi is not None:
                    client.multi_error = True
                return self.reject(cmd, denied)
        if client.multi is not None and cmd.name not in _NOT_QUEUED:
            if cmd.denyoom and self.keyspace.maxmemory and not self.keyspace.enforce_maxmemory(_argv_bytes(argv)):
                client.multi_error = True
                return self.reject(cmd, CommandError(errors.OOM))
            client.multi.append((cmd, argv))
            return QUEUED
        if client.resp == 2 and client.in_pubsub and not cmd.allowed_in_pubsub:
            return self.reject(cmd, self._abort_if_exec(
                client, argv[0], CommandError(errors.PUBSUB_CONTEXT.format(cmd.name))))
        if cmd.denyoom and self.keyspace.maxmemory and not self.keyspace.enforce_maxmemory(_argv_bytes(argv)):
            return self.reject(cmd, CommandError(errors.OOM))
        return self.call(client, cmd, argv)

    def call(self, client: Client, cmd: Command, argv: list[bytes]) -> object:
        keyspace = self.keyspace
        # CLIENT NO-TOUCH: this client's reads leave LRU/LFU alone, except TOUCH itself
        keyspace.no_touch = client.no_touch and cmd.name != "touch"
        outermost = not keyspace.now_ms  # EXEC's queued commands share the EXEC's time
        if outermost:
            keyspace.now_ms = keyspace.source_clock()
        start = _perf_ns()
        try:
            reply = cmd.handler(client, argv)  # type: ignore[misc]
        except CommandError as exc:
            reply = exc
            cmd.failed_calls += 1
            self.stats.count_error(exc.message)
        except Exception as exc:  # a bug in one handler must not cost the client its reply
            log.exception("command %s failed", cmd.full_name)
            reply = CommandError(f"ERR internal error in '{cmd.full_name}': {type(exc).__name__}")
            cmd.failed_calls += 1
            self.stats.count_error(reply.message)
            self.stats.unexpected_error_replies += 1
        finally:
            if outermost:
                keyspace.now_ms = 0
        elapsed_us = (_perf_ns() - start) // 1000
        cmd.calls += 1
        cmd.usec += elapsed_us
        self.stats.total_commands_processed += 1
        config = self.config
        threshold = config.slowlog_log_slower_than
        if 0 <= threshold <= elapsed_us and not cmd.skip_slowlog:
            self.server.slowlog.add(argv, elapsed_us, client.addr, client.name,
                                    config.slowlog_max_len)
        latency_ms = config.latency_monitor_threshold
        if latency_ms and elapsed_us >= latency_ms * 1000:  # LATENCY LATEST (latencyAddSample)
            self.server.latency.record("fast-command" if "fast" in cmd.flags else "command",
                                       elapsed_us // 1000)
        return reply

    @staticmethod
    def _abort_if_exec(client: Client, name: bytes, exc: CommandError) -> CommandError:
        """A rejected EXEC discards the transaction and answers EXECABORT (rejectCommand)."""
        if name.lower() != b"exec":
            return exc
        from .commands.transactions import exec_rejected
        return exec_rejected(client, exc)

    def reject(self, cmd: Command | None, exc: CommandError) -> CommandError:
        if cmd is not None:
            cmd.rejected_calls += 1
        self.stats.count_error(exc.message)
        return exc
