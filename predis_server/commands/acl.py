"""ACL family: ACL SETUSER GETUSER DELUSER LIST USERS WHOAMI CAT LOG DRYRUN GENPASS LOAD SAVE HELP.

https://redis.io/commands/?group=server (ACL *). Replies follow Redis 7.0.15 byte for byte
where the binary was compared (see tests/test_acl.py).
"""
from __future__ import annotations

import os
import time

from ..acl import CATEGORIES, ACLError
from ..errors import CommandError
from ..replies import OK, Double, Map, Status
from .args import parse_int
from .table import command

NO_ACLFILE = ("ERR This Redis instance is not configured to use an ACL file. You may want to specify "
              "users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a "
              "Redis configuration file set) in order to store users in the Redis configuration.")

HELP = [
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "HELP",
    "    Prints this help.",
]


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def acl_setuser(client, argv):
    server = client.server
    name = _name(argv[2])
    try:
        server.acl.setuser(name, [_name(a) for a in argv[3:]])
    except ACLError as exc:
        raise CommandError(f"ERR {exc}") from None
    server.audit("acl-setuser", client, target=name, rules=_redact_rules(argv[3:]))
    return OK


def _redact_rules(rules: list[bytes]) -> list[str]:
    """Passwords never reach the audit log: '>secret' becomes '>***'."""
    return [r[:1].decode() + "***" if r[:1] in (b">", b"<", b"#", b"!") else _name(r) for r in rules]


def acl_getuser(client, argv):
    user = client.server.acl.users.get(_name(argv[2]))
    if user is None:
        return None
    return Map([
        b"flags", [f.encode() for f in user.flags()],
        b"passwords", [h.encode() for h in user.passwords],
        b"commands", user.describe_commands().encode(),
        b"keys", user.describe_keys().encode(),
        b"channels", user.describe_channels().encode(),
        b"selectors", [],
    ])


def acl_deluser(client, argv):
    server = client.server
    names = [_name(a) for a in argv[2:]]
    if "default" in names:
        raise CommandError("ERR The 'default' user cannot be removed")
    deleted = 0
    for name in names:
        if server.acl.deluser(name):
            deleted += 1
            _disconnect_user(server, name)
    if deleted:
        server.audit("acl-deluser", client, target=names)
    return deleted


def _disconnect_user(server, name: str) -> None:
    """Redis closes the connections authenticated as a deleted user."""
    for conn in list(server.connections.values()):
        other = conn.client
        if other is not None and other.user == name:
            other.close()


def acl_list(client, argv):
    acl = client.server.acl
    return [acl.users[name].describe().encode() for name in sorted(acl.users)]


def acl_users(client, argv):
    return [name.encode() for name in sorted(client.server.acl.users)]


def acl_whoami(client, argv):
    return client.user.encode()


def acl_cat(client, argv):
    if len(argv) == 2:
        return [c.encode() for c in CATEGORIES]
    category = _name(argv[2]).lower()
    if category not in CATEGORIES:
        raise CommandError(f"ERR Unknown category '{_name(argv[2])}'")
    return [n.encode() for n in sorted(client.server.acl.category_members(category))]


def acl_log(client, argv):
    acl = client.server.acl
    count = len(acl.log)
    if len(argv) == 3:
        if argv[2].lower() == b"reset":
            acl.log.clear()
            return OK
        try:
            count = parse_int(argv[2])
        except CommandError:
            raise CommandError("ERR value is out of range, must be positive") from None
        if count < 0:
            raise CommandError("ERR value is out of range, must be positive")
    now_ms = int(time.time() * 1000)
    out = []
    for entry in list(acl.log)[:count]:
        out.append(Map([
            b"count", entry["count"],
            b"reason", entry["reason"].encode(),
            b"context", entry["context"].encode(),
            b"object", entry["object"],
            b"username", entry["username"].encode(),
            b"age-seconds", Double((now_ms - entry["ctime"]) / 1000.0),
            b"client-info", entry["client_info"],
        ]))
    return out


def acl_dryrun(client, argv):
    server = client.server
    name = _name(argv[2])
    if name not in server.acl.users:
        raise CommandError(f"ERR User '{name}' not found")
    target = argv[3:]
    cmd = server.executor.table.get(target[0].lower())
    if cmd is None:
        raise CommandError(f"ERR Command '{_name(target[0])}' not found")
    if cmd.subcommands and len(target) > 1:
        cmd = cmd.subcommands.get(_name(target[1]).lower(), cmd)
    if not cmd.arity_ok(len(target)):
        raise CommandError(f"ERR wrong number of arguments for '{cmd.full_name}' command")
    denied = server.acl.check(name, cmd, target)
    if denied is None:
        return OK
    reason, obj = denied
    if reason == "command":
        return f"This user has no permissions to run the '{cmd.full_name}' command".encode()
    return f"This user has no permissions to access the '{_name(obj)}' {reason}".encode()


def acl_genpass(client, argv):
    bits = 256
    if len(argv) == 3:
        bits = parse_int(argv[2])
        if bits <= 0 or bits > 4096:
            raise CommandError("ERR ACL GENPASS argument must be the number of bits for the output "
                               "password, a positive number up to 4096")
    return os.urandom((bits + 7) // 8).hex()[: (bits + 3) // 4].encode()


def acl_load(client, argv):
    server = client.server
    if not server.config.aclfile:
        raise CommandError(NO_ACLFILE)
    try:
        server.acl.load_file(server.config.aclfile)
    except (ACLError, OSError) as exc:
        raise CommandError(f"ERR {exc}") from None
    server.audit("acl-load", client, path=server.config.aclfile)
    return OK


def acl_save(client, argv):
    server = client.server
    if not server.config.aclfile:
        raise CommandError(NO_ACLFILE)
    try:
        server.acl.save_file(server.config.aclfile)
    except OSError as exc:
        raise CommandError(f"ERR There was an error trying to save the ACLs. Please check the server "
                           f"logs for more information ({exc})") from None
    server.audit("acl-save", client, path=server.config.aclfile)
    return OK


def acl_help(client, argv):
    return [Status(line.encode()) for line in HELP]


_ADMIN = "admin noscript loading stale"
_SUBS = [
    command("setuser", acl_setuser, -3, _ADMIN, acl="@admin @slow @dangerous"),
    command("getuser", acl_getuser, 3, _ADMIN, acl="@admin @slow @dangerous"),
    command("deluser", acl_deluser, -3, _ADMIN, acl="@admin @slow @dangerous"),
    command("list", acl_list, 2, _ADMIN, acl="@admin @slow @dangerous"),
    command("users", acl_users, 2, _ADMIN, acl="@admin @slow @dangerous"),
    command("whoami", acl_whoami, 2, "noscript loading stale", acl="@slow"),
    command("cat", acl_cat, -2, "noscript loading stale", acl="@slow"),
    command("log", acl_log, -2, _ADMIN, acl="@admin @slow @dangerous"),
    command("dryrun", acl_dryrun, -4, _ADMIN, acl="@admin @slow @dangerous"),
    command("genpass", acl_genpass, -2, "noscript loading stale", acl="@slow"),
    command("load", acl_load, 2, _ADMIN, acl="@admin @slow @dangerous"),
    command("save", acl_save, 2, _ADMIN, acl="@admin @slow @dangerous"),
    command("help", acl_help, 2, "loading stale", acl="@slow"),
]

COMMANDS = [command("acl", None, -2, "", acl="@slow", group="server", subcommands=_SUBS)]
