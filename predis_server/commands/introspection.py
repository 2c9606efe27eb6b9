"""COMMAND and its subcommands: the command table as Redis 7 describes itself.

https://redis.io/commands/command

Arity, flags, legacy key positions and ACL categories come from Predis's table (the single
source of truth); documentation, tips and key specs come from ``redis_docs.json``, Redis's own
data (see ``dump_redis_docs``). Commands that Redis does not have get key specs derived from
their table row and a short doc entry.
"""
from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

from .. import errors
from ..errors import CommandError
from ..glob import glob_match
from ..replies import Map, SetReply, Status
from .args import parse_int
from .table import Command, command

_DOCS_PATH = pathlib.Path(__file__).with_name("redis_docs.json")

# The order Redis 7 lists flags and ACL categories in (addReplyCommandFlags, ACLCommandCategories).
FLAG_ORDER = ("write", "readonly", "denyoom", "module", "admin", "pubsub", "noscript", "blocking",
              "loading", "stale", "skip_monitor", "skip_slowlog", "asking", "fast", "no_auth",
              "no_async_loading", "no_mandatory_keys", "no_multi", "movablekeys", "allow_busy")
CATEGORY_ORDER = ("keyspace", "read", "write", "set", "sortedset", "list", "hash", "string",
                  "bitmap", "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow",
                  "blocking", "dangerous", "connection", "transaction", "scripting")


@functools.lru_cache(maxsize=1)
def _redis_data() -> dict[str, Any]:
    try:
        return json.loads(_DOCS_PATH.read_text())
    except FileNotFoundError:  # a checkout that has not generated it yet: no docs, derived specs
        return {"docs": {}, "info": {}}


def to_reply(value: Any) -> Any:
    """The tagged JSON of ``redis_docs.json`` as reply values (maps, sets, statuses, bulks)."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list):
        return [to_reply(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and "~" in value:
            return SetReply(to_reply(v) for v in value["~"])
        if len(value) == 1 and "+" in value:
            return Status(value["+"].encode())
        return Map(x for k, v in value.items() for x in (k.encode(), to_reply(v)))
    return value


# -- the table, as COMMAND describes it ---------------------------------------------------
def categories_of(cmd: Command) -> list[str]:
    """ACL categories with Redis's implicit ones (setImplicitACLCategories), in Redis's order."""
    cats = {c.lstrip("@").lower() for c in cmd.categories}
    implied = {"write": "write", "readonly": "read", "pubsub": "pubsub", "fast": "fast",
               "blocking": "blocking"}
    for flag, cat in implied.items():
        if flag in cmd.flags and not (cat == "read" and "scripting" in cats):
            cats.add(cat)
    if "admin" in cmd.flags:
        cats.update(("admin", "dangerous"))
    if "fast" not in cats:
        cats.add("slow")
    return [c for c in CATEGORY_ORDER if c in cats] + sorted(cats - set(CATEGORY_ORDER))


def key_specs_of(cmd: Command) -> list[dict[str, Any]]:
    """Redis's key specs for the command, or specs derived from the table's first/last/step."""
    info = _redis_data()["info"].get(cmd.full_name)
    if info is not None:
        return info["key_specs"]["~"]
    if cmd.first_key <= 0:
        return []
    flags = ["RW", "update"] if cmd.is_write else ["RO", "access"]
    last = cmd.last_key - cmd.first_key if cmd.last_key >= 0 else cmd.last_key
    return [{"flags": {"~": [{"+": f} for f in flags]},
             "begin_search": {"type": "index", "spec": {"index": cmd.first_key}},
             "find_keys": {"type": "range",
                           "spec": {"lastkey": last, "keystep": max(cmd.step, 1), "limit": 0}}}]


def flags_of(cmd: Command) -> list[str]:
    flags = set(cmd.flags)
    if any(spec["begin_search"]["type"] != "index" or spec["find_keys"]["type"] != "range"
           for spec in key_specs_of(cmd)):
        flags.add("movablekeys")  # populateCommandMovableKeys
    return [f for f in FLAG_ORDER if f in flags]


def command_info(cmd: Command) -> list[Any]:
    info = _redis_data()["info"].get(cmd.full_name)
    tips = to_reply(info["tips"]) if info is not None else SetReply()
    subs: Any = [command_info(s) for s in cmd.subcommands.values()] if cmd.subcommands else SetReply()
    return [cmd.full_name.encode(), cmd.arity, SetReply(Status(f.encode()) for f in flags_of(cmd)),
            cmd.first_key, cmd.last_key, cmd.step,
            SetReply(Status(b"@" + c.encode()) for c in categories_of(cmd)),
            tips, SetReply(to_reply(spec) for spec in key_specs_of(cmd)), subs]


def command_docs(cmd: Command) -> Map:
    doc = _redis_data()["docs"].get(cmd.name if cmd.parent is None else cmd.parent.name)
    if doc is not None and cmd.parent is not None:
        doc = doc.get("subcommands", {}).get(cmd.full_name)
    if doc is None:
        doc = {"summary": getattr(cmd.handler, "__doc__", None) or "", "since": "0.1.0",
               "group": cmd.group or "server", "complexity": ""}
    reply = to_reply({k: v for k, v in doc.items() if k != "subcommands"})
    if cmd.subcommands:
        reply += [b"subcommands",
                  Map(x for s in cmd.subcommands.values() for x in (s.full_name.encode(), command_docs(s)))]
    return reply


def _table(client) -> dict[bytes, Command]:
    return client.server.executor.table


def lookup(client, name: bytes) -> Command | None:
    """``get`` or ``config|get`` (lookupCommandBySds)."""
    parts = name.lower().split(b"|")
    cmd = _table(client).get(parts[0])
    if cmd is None or len(parts) == 1:
        return cmd if len(parts) == 1 else None
    if len(parts) != 2:
        return None
    return cmd.subcommands.get(parts[1].decode("utf-8", "replace"))


def _all_commands(client):
    for cmd in _table(client).values():
        yield cmd
        yield from cmd.subcommands.values()


# -- key extraction from key specs (getKeysUsingKeySpecs) -----------------------------------
def keys_with_flags(cmd: Command, argv: list[bytes]) -> list[tuple[int, list[str]]] | None:
    """(position, spec flags) of each key in argv (argv[0] is the command), None if invalid."""
    argc = len(argv)
    found: list[tuple[int, list[str]]] = []
    for spec in key_specs_of(cmd):
        flags = [f["+"] for f in spec["flags"]["~"]]
        if "not_key" in flags:
            continue
        begin, find = spec["begin_search"], spec["find_keys"]
        if begin["type"] == "index":
            first = begin["spec"]["index"]
        elif begin["type"] == "keyword":
            first = _find_keyword(argv, begin["spec"]["keyword"], begin["spec"]["startfrom"])
            if not first:
                continue
        else:
            return None
        fk = find["spec"]
        if find["type"] == "range":
            step = fk["keystep"]
            if fk["lastkey"] >= 0:
                last = first + fk["lastkey"]
            elif not fk["limit"]:
                last = argc + fk["lastkey"]
            else:
                last = first + ((argc - first) // fk["limit"] + fk["lastkey"])
        elif find["type"] == "keynum":
            step = fk["keystep"]
            if fk["keynumidx"] >= argc - first:
                return None
            try:
                numkeys = parse_int(argv[first + fk["keynumidx"]])
            except CommandError:
                return None
            if numkeys < 0:
                return None
            first += fk["firstkey"]
            last = first + numkeys - 1
        else:
            return None
        if last >= argc or last < first or first >= argc:
            return None
        found.extend((i, flags) for i in range(first, last + 1, step))
        if "incomplete" in flags:
            return None
    return found


def _find_keyword(argv: list[bytes], keyword: str, startfrom: int) -> int:
    argc = len(argv)
    start = startfrom if startfrom > 0 else argc + startfrom
    end = argc - 1 if startfrom > 0 else 1
    i = start
    while 1 <= i < argc:
        if argv[i].lower() == keyword.lower().encode():
            return i + 1
        if i == end:
            break
        i = i + 1 if start <= end else i - 1
    return 0


# -- handlers -------------------------------------------------------------------------------
def command_(client, argv):
    """https://redis.io/commands/command"""
    return [command_info(cmd) for cmd in _table(client).values()]


def command_count(client, argv):
    return len(_table(client))


def command_info_(client, argv):
    if len(argv) == 2:
        return command_(client, argv)
    return [command_info(cmd) if (cmd := lookup(client, name)) is not None else None
            for name in argv[2:]]


def command_docs_(client, argv):
    if len(argv) == 2:
        return Map(x for cmd in _table(client).values() for x in (cmd.name.encode(), command_docs(cmd)))
    reply = Map()
    for name in argv[2:]:
        cmd = lookup(client, name)
        if cmd is not None:
            reply += [cmd.full_name.encode(), command_docs(cmd)]
    return reply


def command_list(client, argv):
    names = [cmd.full_name for cmd in _all_commands(client)]
    if len(argv) == 2:
        return [n.encode() for n in names]
    if len(argv) != 5 or argv[2].lower() != b"filterby":
        raise CommandError(errors.SYNTAX)
    kind, arg = argv[3].lower(), argv[4]
    if kind == b"module":
        return []  # Predis has no modules
    if kind == b"aclcat":
        cat = arg.decode("utf-8", "replace").lower()
        return [c.full_name.encode() for c in _all_commands(client) if cat in categories_of(c)]
    if kind == b"pattern":
        return [n.encode() for n in names if glob_match(arg, n.encode(), nocase=True)]
    raise CommandError(errors.SYNTAX)


def _getkeys_target(client, argv) -> tuple[Command, list[tuple[int, list[str]]]]:
    target = argv[2:]
    cmd = _table(client).get(target[0].lower())
    if cmd is not None and cmd.subcommands and len(target) >= 2:
        cmd = cmd.subcommands.get(target[1].lower().decode("utf-8", "replace"))
    if cmd is None:
        raise CommandError("ERR Invalid command specified")
    if not [s for s in key_specs_of(cmd) if {"+": "not_key"} not in s["flags"]["~"]]:
        raise CommandError("ERR The command has no key arguments")
    if not cmd.arity_ok(len(target)):
        raise CommandError("ERR Invalid number of arguments specified for command")
    found = keys_with_flags(cmd, target)
    if found is None:
        if "no_mandatory_keys" in cmd.flags:
            return cmd, []
        raise CommandError("ERR Invalid arguments specified for command")
    return cmd, found


def command_getkeys(client, argv):
    _, found = _getkeys_target(client, argv)
    return [argv[2 + pos] for pos, _ in found]


def command_getkeysandflags(client, argv):
    _, found = _getkeys_target(client, argv)
    return [[argv[2 + pos], SetReply(Status(f.encode()) for f in flags)] for pos, flags in found]


_HELP = [
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
    "HELP",
    "    Prints this help.",
]


def help_reply(lines: list[str]) -> list[Status]:
    return [Status(line.encode()) for line in lines]


def command_help(client, argv):
    return help_reply(_HELP)


_SUB = "loading stale"
COMMANDS = [
    command("command", command_, -1, "loading stale", acl="@slow @connection", group="server",
            subcommands=[
                command("count", command_count, 2, _SUB, acl="@slow @connection"),
                command("list", command_list, -2, _SUB, acl="@slow @connection"),
                command("info", command_info_, -2, _SUB, acl="@slow @connection"),
                command("docs", command_docs_, -2, _SUB, acl="@slow @connection"),
                command("getkeys", command_getkeys, -4, _SUB, acl="@slow @connection"),
                command("getkeysandflags", command_getkeysandflags, -4, _SUB, acl="@slow @connection"),
                command("help", command_help, 2, _SUB, acl="@slow @connection"),
            ]),
]
