"""Server family: INFO CONFIG TIME SHUTDOWN SLOWLOG LATENCY ROLE LASTSAVE FLUSHDB FLUSHALL DBSIZE ...

https://redis.io/commands/?group=server

COMMAND lives in ``introspection``; MEMORY, OBJECT and DEBUG (which look at single values)
in ``inspection``. Counters shown here are the objects the executor and keyspace update
(``server.stats``, each ``Command``'s counters, ``server.slowlog``, ``server.latency``).
"""
from __future__ import annotations

import time

from .. import errors
from ..config import OPTIONS, InvalidValue, find_option
from ..errors import CommandError
from ..glob import glob_match
from ..info import render
from ..replies import NO_REPLY, OK, Map, Verbatim
from . import inspection, introspection
from .args import parse_int
from .introspection import help_reply
from .table import command


def _flush_mode(argv: list[bytes]) -> None:
    if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() not in (b"sync", b"async")):
        raise CommandError(errors.SYNTAX)


def flushdb(client, argv):
    """https://redis.io/commands/flushdb"""
    _flush_mode(argv)
    client.db.flush()
    client.server.audit("flushdb", client)
    return OK


def flushall(client, argv):
    """https://redis.io/commands/flushall"""
    _flush_mode(argv)
    for db in client.server.keyspace.dbs:
        db.flush()
    client.server.audit("flushall", client)
    return OK


def dbsize(client, argv):
    """https://redis.io/commands/dbsize"""
    return len(client.db)


def info(client, argv):
    """https://redis.io/commands/info"""
    sections = [a.decode("utf-8", "replace") for a in argv[1:]]
    return Verbatim(render(client.server, sections).encode())


def time_(client, argv):
    """https://redis.io/commands/time"""
    now_us = time.time_ns() // 1000
    return [str(now_us // 1_000_000).encode(), str(now_us % 1_000_000).encode()]


def lastsave(client, argv):
    """https://redis.io/commands/lastsave: Predis never saves, so the start-up time (as Redis
    reports before its first save)."""
    return int(client.server.started)


def save(client, argv):
    """https://redis.io/commands/save: Predis is a cache and keeps no snapshot on disk."""
    raise CommandError(errors.NO_PERSISTENCE.format("SAVE"))


def bgsave(client, argv):
    """https://redis.io/commands/bgsave"""
    if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() != b"schedule"):
        raise CommandError(errors.SYNTAX)
    raise CommandError(errors.NO_PERSISTENCE.format("BGSAVE"))


def role(client, argv):
    """https://redis.io/commands/role"""
    return [b"master", 0, []]


def shutdown(client, argv):
    """https://redis.io/commands/shutdown: answer nothing, finish the batch, close, exit 0."""
    seen: set[bytes] = set()
    for arg in argv[1:]:
        word = arg.lower()
        if word not in (b"nosave", b"save", b"now", b"force", b"abort"):
            raise CommandError(errors.SYNTAX)
        seen.add(word)
    if {b"nosave", b"save"} <= seen or (b"abort" in seen and len(argv) > 2):
        raise CommandError(errors.SYNTAX)
    if b"abort" in seen:
        raise CommandError("ERR No shutdown in progress.")
    client.server.audit("shutdown", client)
    client.server.request_shutdown(0)
    client.closing = True
    return NO_REPLY


# -- CONFIG ---------------------------------------------------------------------------------
def config_get(client, argv):
    """https://redis.io/commands/config-get"""
    config = client.server.config
    reply = Map()
    for option in OPTIONS:
        names = (option.name, *option.aliases)
        for pattern in argv[2:]:
            pattern = pattern.lower()
            matched = next((n for n in names if glob_match(pattern, n.encode())), None)
            if matched is not None and (matched == option.name or pattern == matched.encode()):
                reply += [matched.encode(), option.format(getattr(config, option.attr)).encode()]
                break
    return reply


def config_set(client, argv):
    """https://redis.io/commands/config-set: all pairs or none (values restored on failure)."""
    if len(argv) % 2:
        raise CommandError(errors.SYNTAX)
    config = client.server.config
    pairs = [(argv[i].decode("utf-8", "replace"), argv[i + 1].decode("utf-8", "replace"))
             for i in range(2, len(argv), 2)]
    unknown = next((name for name, _ in pairs if find_option(name) is None), None)
    if unknown is not None:
        raise CommandError(errors.CONFIG_UNKNOWN.format(unknown))
    chosen = []
    for name, raw in pairs:
        option = find_option(name)
        assert option is not None
        if not option.mutable:
            raise CommandError(errors.CONFIG_SET_FAILED.format(name, "can't set immutable config"))
        if any(option is other for other, _, _ in chosen):
            raise CommandError(errors.CONFIG_SET_FAILED.format(name, "duplicate parameter"))
        try:
            option.parse(raw)
        except InvalidValue as exc:
            raise CommandError(errors.CONFIG_SET_FAILED.format(name, exc)) from None
        chosen.append((option, name, raw))
    previous = [(option, option.format(getattr(config, option.attr))) for option, _, _ in chosen]
    try:
        for option, _, raw in chosen:
            config.set(option.name, raw)
    except (InvalidValue, CommandError, ValueError) as exc:
        for option, old in previous:
            config.set(option.name, old, startup=True)
        text = exc.message if isinstance(exc, CommandError) else str(exc)
        raise CommandError(errors.CONFIG_SET_FAILED.format(option.name, text)) from None
    client.server.audit("config-set", client,
                        options=[o.name for o, _, _ in chosen if not o.sensitive])
    return OK


def config_resetstat(client, argv):
    """https://redis.io/commands/config-resetstat: stats, commandstats and errorstats."""
    server = client.server
    server.stats.reset()
    for cmd in server.executor.table.values():
        cmd.reset_stats()
    return OK


def config_rewrite(client, argv):
    """https://redis.io/commands/config-rewrite"""
    try:
        client.server.config.rewrite()
    except OSError as exc:
        raise CommandError(f"ERR Rewriting config file: {exc.strerror}") from None
    client.server.audit("config-rewrite", client, path=client.server.config.path)
    return OK


_CONFIG_HELP = [
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
    "HELP",
    "    Prints this help.",
]


def config_help(client, argv):
    return help_reply(_CONFIG_HELP)


# -- SLOWLOG --------------------------------------------------------------------------------
def slowlog_get(client, argv):
    """https://redis.io/commands/slowlog-get"""
    count = 10
    if len(argv) == 3:
        try:
            count = parse_int(argv[2])
        except CommandError:
            count = -2
        if count < -1:
            raise CommandError("ERR count should be greater than or equal to -1")
        if count == -1:
            count = len(client.server.slowlog.entries)
    elif len(argv) > 3:
        raise CommandError(errors.wrong_arity("slowlog|get"))
    entries = list(client.server.slowlog.entries)[:count]
    return [[e.id, e.timestamp, e.duration_us, list(e.argv), e.addr.encode(), e.name]
            for e in entries]


def slowlog_len(client, argv):
    return len(client.server.slowlog.entries)


def slowlog_reset(client, argv):
    client.server.slowlog.entries.clear()
    return OK


_SLOWLOG_HELP = [
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Prints this help.",
]


def slowlog_help(client, argv):
    return help_reply(_SLOWLOG_HELP)


# -- LATENCY --------------------------------------------------------------------------------
def latency_latest(client, argv):
    """https://redis.io/commands/latency-latest"""
    return [[name.encode(), e.latest_time, e.latest_ms, e.max_ms]
            for name, e in client.server.latency.events.items()]


def latency_history(client, argv):
    """Predis keeps the latest sample of each event, so the history has at most one entry."""
    event = client.server.latency.events.get(argv[2].decode("utf-8", "replace"))
    return [] if event is None else [[event.latest_time, event.latest_ms]]


def latency_reset(client, argv):
    events = client.server.latency.events
    if len(argv) == 2:
        count = len(events)
        events.clear()
        return count
    return sum(events.pop(name.decode("utf-8", "replace"), None) is not None for name in argv[2:])


def latency_graph(client, argv):
    name = argv[2].decode("utf-8", "replace")
    event = client.server.latency.events.get(name)
    if event is None:
        raise CommandError(f"ERR No samples available for event '{name}'")
    return Verbatim(f"{name} - high {event.max_ms} ms, low {event.latest_ms} ms "
                    f"(all time high {event.max_ms} ms)\n".encode())


def latency_doctor(client, argv):
    events = client.server.latency.events
    if not events:
        return Verbatim(b"Dave, no latency spike was observed during the lifetime of this Redis "
                        b"instance, not in the slightest bit. I honestly think you ought to sit "
                        b"down calmly, take a stress pill, and think things over.\n")
    lines = [f"{i}. {name}: latest {e.latest_ms} ms, worst {e.max_ms} ms."
             for i, (name, e) in enumerate(events.items(), 1)]
    return Verbatim(("Dave, I have observed latency spikes in this Redis instance.\n\n"
                     + "\n".join(lines) + "\n").encode())


def latency_histogram(client, argv):
    """Per-command histograms are not kept; each known command reports its call count only."""
    reply = Map()
    names = [a.decode("utf-8", "replace") for a in argv[2:]]
    for cmd in introspection._all_commands(client):
        if cmd.calls and (not names or cmd.full_name in names):
            reply += [cmd.full_name.encode(), Map([b"calls", cmd.calls, b"histogram_usec", Map()])]
    return reply


_LATENCY_HELP = [
    "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    ("    Return a cumulative distribution of latencies in the format of a histogram for the "
     "specified command names."),
    "    If no commands are specified then all histograms are replied.",
    "HELP",
    "    Prints this help.",
]


def latency_help(client, argv):
    return help_reply(_LATENCY_HELP)


_ADMIN = "admin noscript loading stale"
_ADMIN_ACL = "@admin @slow @dangerous"
COMMANDS = [
    command("flushdb", flushdb, -1, "write", acl="@keyspace @write @slow @dangerous", group="server"),
    command("flushall", flushall, -1, "write", acl="@keyspace @write @slow @dangerous", group="server"),
    command("dbsize", dbsize, 1, "readonly fast", acl="@keyspace @read @fast", group="server"),
    command("info", info, -1, "loading stale", acl="@slow @dangerous", group="server"),
    command("time", time_, 1, "loading stale fast", acl="@fast", group="server"),
    command("lastsave", lastsave, 1, "loading stale fast", acl="@admin @fast @dangerous", group="server"),
    command("save", save, 1, "admin noscript no_async_loading no_multi", acl=_ADMIN_ACL, group="server"),
    command("bgsave", bgsave, -1, "admin noscript no_async_loading", acl=_ADMIN_ACL, group="server"),
    command("role", role, 1, "noscript loading stale fast", acl="@admin @fast @dangerous", group="server"),
    command("shutdown", shutdown, -1, "admin noscript loading stale no_multi allow_busy",
            acl=_ADMIN_ACL, group="server"),
    command("config", None, -2, "", acl="@slow", group="server", subcommands=[
        command("get", config_get, -3, _ADMIN, acl=_ADMIN_ACL),
        command("set", config_set, -4, _ADMIN, acl=_ADMIN_ACL),
        command("resetstat", config_resetstat, 2, _ADMIN, acl=_ADMIN_ACL),
        command("rewrite", config_rewrite, 2, _ADMIN, acl=_ADMIN_ACL),
        command("help", config_help, 2, "loading stale", acl="@slow"),
    ]),
    command("slowlog", None, -2, "", acl="@slow", group="server", subcommands=[
        command("get", slowlog_get, -2, "admin loading stale", acl=_ADMIN_ACL),
        command("len", slowlog_len, 2, "admin loading stale", acl=_ADMIN_ACL),
        command("reset", slowlog_reset, 2, "admin loading stale", acl=_ADMIN_ACL),
        command("help", slowlog_help, 2, "loading stale", acl="@slow"),
    ]),
    command("latency", None, -2, "", acl="@slow", group="server", subcommands=[
        command("latest", latency_latest, 2, _ADMIN, acl=_ADMIN_ACL),
        command("history", latency_history, 3, _ADMIN, acl=_ADMIN_ACL),
        command("reset", latency_reset, -2, _ADMIN, acl=_ADMIN_ACL),
        command("graph", latency_graph, 3, _ADMIN, acl=_ADMIN_ACL),
        command("doctor", latency_doctor, 2, _ADMIN, acl=_ADMIN_ACL),
        command("histogram", latency_histogram, -2, _ADMIN, acl=_ADMIN_ACL),
        command("help", latency_help, 2, "loading stale", acl="@slow"),
    ]),
    *introspection.COMMANDS,
    *inspection.COMMANDS,
]
