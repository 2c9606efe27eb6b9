"""Connection family: PING ECHO QUIT SELECT HELLO AUTH RESET CLIENT.

https://redis.io/commands/?group=connection
"""
from __future__ import annotations

import time

from .. import errors
from ..errors import CommandError
from ..replies import NO_REPLY, OK, PONG, Map, Status, Verbatim
from .args import parse_int
from .table import command

SERVER_NAME = b"redis"
COMPAT_VERSION = b"7.2.4"


def ping(client, argv):
    """https://redis.io/commands/ping"""
    if len(argv) > 2:
        raise CommandError(errors.wrong_arity("ping"))
    if client.in_pubsub and client.resp == 2:
        return [b"pong", argv[1] if len(argv) == 2 else b""]
    return argv[1] if len(argv) == 2 else PONG


def echo(client, argv):
    return argv[1]


def quit_(client, argv):
    client.closing = True
    return OK


def select(client, argv):
    try:
        index = parse_int(argv[1])
    except CommandError:
        raise CommandError("ERR invalid DB index") from None
    dbs = client.server.keyspace.dbs
    if not 0 <= index < len(dbs):
        raise CommandError(errors.DB_INDEX_OUT_OF_RANGE)
    client.db = dbs[index]
    return OK


def _authenticate(client, username: bytes, password: bytes) -> None:
    server = client.server
    if not server.authenticate(username.decode("utf-8", "replace"), password, client):
        server.stats.acl_access_denied_auth += 1
        raise CommandError(errors.WRONGPASS)
    client.authenticated = True
    client.update_plain()
    client.user = username.decode("utf-8", "replace")


def auth(client, argv):
    """https://redis.io/commands/auth"""
    if len(argv) > 3:
        raise CommandError(errors.SYNTAX)
    if len(argv) == 2:
        if not client.server.auth_required() and not client.server.has_acl_users():
            raise CommandError(errors.AUTH_NOT_CONFIGURED)
        _authenticate(client, b"default", argv[1])
    else:
        _authenticate(client, argv[1], argv[2])
    return OK


def hello(client, argv):
    """https://redis.io/commands/hello"""
    version = client.resp
    i = 1
    if len(argv) > 1:
        try:
            version = parse_int(argv[1])
        except CommandError:
            raise CommandError("ERR Protocol version is not an integer or out of range") from None
        if version < 2 or version > 3:
            raise CommandError(errors.NOPROTO)
        i = 2
    name = None
    while i < len(argv):
        option = argv[i].lower()
        remaining = len(argv) - i - 1
        if option == b"auth" and remaining >= 2:
            _authenticate(client, argv[i + 1], argv[i + 2])
            i += 3
        elif option == b"setname" and remaining >= 1:
            name = argv[i + 1]
            _check_name(name)
            i += 2
        else:
            raise CommandError(f"ERR Syntax error in HELLO option '{argv[i].decode('utf-8', 'replace')}'")
    if not client.authenticated:
        raise CommandError("NOAUTH HELLO must be called with the client already authenticated, otherwise "
                           "the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the "
                           "client and select the RESP protocol version at the same time")
    if name is not None:
        client.name = name
    client.resp = version
    return Map([
        b"server", SERVER_NAME, b"version", COMPAT_VERSION, b"proto", version, b"id", client.id,
        b"mode", b"standalone", b"role", b"master", b"modules", [],
    ])


def reset(client, argv):
    """https://redis.io/commands/reset"""
    server = client.server
    client.multi = None
    client.multi_error = False
    server.keyspace.unwatch_all(client)
    server.pubsub.drop_client(client)
    client.db = server.keyspace.dbs[0]
    client.resp = 2
    client.reply_mode = "on"
    client.no_evict = False
    client.no_touch = False
    client.name = b""
    client.user = "default"
    client.authenticated = not server.auth_required()
    client.update_plain()
    return Status(b"RESET")


# -- CLIENT ---------------------------------------------------------------------------------
def _check_name(name: bytes) -> None:
    if any(c < 33 or c > 126 for c in name):
        raise CommandError(errors.CLIENT_NAME_SPACES)


def client_info_line(client, now: float | None = None) -> bytes:
    now = time.time() if now is None else now
    flags = "N"
    if client.in_pubsub:
        flags = "P"
    if client.multi is not None:
        flags = "x"
    cmd = client.last_command.lower().decode("utf-8", "replace")
    fields = [
        f"id={client.id}", f"addr={client.addr}", f"laddr={client.laddr}", "fd=8",
        f"name={client.name.decode('utf-8', 'replace')}", f"age={int(now - client.created)}",
        f"idle={int(now - client.last_interaction)}", f"flags={flags}", f"db={client.db.id}",
        f"sub={len(client.channels)}", f"psub={len(client.patterns)}", "ssub=0",
        f"multi={-1 if client.multi is None else len(client.multi)}", "qbuf=0", "qbuf-free=0",
        "argv-mem=0", "multi-mem=0", "rbs=1024", "rbp=0", "obl=0", "oll=0", "omem=0", "tot-mem=0",
        "events=r", f"cmd={cmd}", f"user={client.user}", "redir=-1", f"resp={client.resp}",
        f"lib-name={client.lib_name.decode('utf-8', 'replace')}",
        f"lib-ver={client.lib_ver.decode('utf-8', 'replace')}",
    ]
    return " ".join(fields).encode()


def client_id(client, argv):
    return client.id


def client_setname(client, argv):
    _check_name(argv[2])
    client.name = argv[2]
    return OK


def client_getname(client, argv):
    return client.name or None


def client_setinfo(client, argv):
    attr = argv[2].lower()
    if attr not in (b"lib-name", b"lib-ver"):
        raise CommandError(f"ERR Unrecognized option '{argv[2].decode('utf-8', 'replace')}'")
    if any(c < 33 or c > 126 for c in argv[3]):
        raise CommandError(f"ERR {attr.decode()} cannot contain spaces, newlines or special characters.")
    if attr == b"lib-name":
        client.lib_name = argv[3]
    else:
        client.lib_ver = argv[3]
    return OK


def _client_type(client) -> bytes:
    return b"pubsub" if client.in_pubsub else b"normal"


def client_list(client, argv):
    conns = list(client.server.connections.values())
    clients = [c.client for c in conns if c.client is not None]
    i = 2
    while i < len(argv):
        option = argv[i].lower()
        if option == b"type" and i + 1 < len(argv):
            kind = argv[i + 1].lower()
            if kind not in (b"normal", b"pubsub", b"master", b"replica", b"slave"):
                raise CommandError(f"ERR Unknown client type '{argv[i + 1].decode('utf-8', 'replace')}'")
            clients = [c for c in clients if _client_type(c) == kind]
            i += 2
        elif option == b"id" and i + 1 < len(argv):
            ids = set()
            for raw in argv[i + 1:]:
                try:
                    ids.add(parse_int(raw))
                except CommandError:
                    raise CommandError("ERR Invalid client ID") from None
            clients = [c for c in clients if c.id in ids]
            i = len(argv)
        else:
            raise CommandError(errors.SYNTAX)
    now = time.time()
    return Verbatim(b"".join(client_info_line(c, now) + b"\n" for c in sorted(clients, key=lambda c: c.id)))


def client_info(client, argv):
    return Verbatim(client_info_line(client) + b"\n")


def client_kill(client, argv):
    """CLIENT KILL addr, or CLIENT KILL <filter> <value> ... (ID, ADDR, LADDR, USER, TYPE, SKIPME)."""
    server = client.server
    old_style = len(argv) == 3
    filters: list[tuple[bytes, bytes]] = []
    skipme = True
    if old_style:
        filters.append((b"addr", argv[2]))
        skipme = False
    else:
        if (len(argv) - 2) % 2:
            raise CommandError(errors.SYNTAX)
        for i in range(2, len(argv), 2):
            name, value = argv[i].lower(), argv[i + 1]
            if name == b"skipme":
                if value.lower() not in (b"yes", b"no"):
                    raise CommandError(errors.SYNTAX)
                skipme = value.lower() == b"yes"
            elif name == b"id":
                try:
                    parse_int(value)
                except CommandError:
                    raise CommandError("ERR client-id should be greater than 0") from None
                filters.append((name, value))
            elif name in (b"addr", b"laddr", b"user", b"type", b"maxage"):
                filters.append((name, value))
            else:
                raise CommandError(errors.SYNTAX)
    killed = 0
    for conn in list(server.connections.values()):
        target = conn.client
        if target is None or (skipme and target is client):
            continue
        if all(_kill_filter_matches(target, name, value) for name, value in filters):
            killed += 1
            server.audit("client-kill", client, target=target.addr)
            if target is client:
                conn.close()
            else:
                conn.close_now()
    if old_style:
        if not killed:
            raise CommandError(errors.CLIENT_NO_SUCH)
        return OK
    return killed


def _kill_filter_matches(target, name: bytes, value: bytes) -> bool:
    if name == b"id":
        return str(target.id).encode() == value
    if name == b"addr":
        return target.addr.encode() == value
    if name == b"laddr":
        return target.laddr.encode() == value
    if name == b"user":
        return target.user.encode() == value
    if name == b"type":
        return _client_type(target) == value.lower()
    if name == b"maxage":
        return time.time() - target.created >= int(value)
    return False


def client_pause(client, argv):
    try:
        timeout = parse_int(argv[2], "ERR timeout is not an integer or out of range")
    except CommandError:
        raise
    if timeout < 0:
        raise CommandError(errors.TIMEOUT_NEGATIVE)
    writes_only = False
    if len(argv) == 4:
        mode = argv[3].lower()
        if mode == b"write":
            writes_only = True
        elif mode != b"all":
            raise CommandError(errors.SYNTAX)
    elif len(argv) > 4:
        raise CommandError(errors.SYNTAX)
    client.server.pause(timeout / 1000.0, writes_only)
    return OK


def client_unpause(client, argv):
    client.server.unpause()
    return OK


def _on_off(arg: bytes) -> bool:
    lowered = arg.lower()
    if lowered == b"on":
        return True
    if lowered == b"off":
        return False
    raise CommandError(errors.SYNTAX)


def client_no_evict(client, argv):
    client.no_evict = _on_off(argv[2])
    return OK


def client_no_touch(client, argv):
    client.no_touch = _on_off(argv[2])
    client.update_plain()
    return OK


def client_reply(client, argv):
    try:
        return _client_reply(client, argv)
    finally:
        client.update_plain()


def _client_reply(client, argv):
    mode = argv[2].lower()
    if mode == b"on":
        client.reply_mode = "on"
        return OK
    if mode == b"off":
        client.reply_mode = "off"
        return NO_REPLY
    if mode == b"skip":
        if client.reply_mode != "off":
            client.reply_mode = "skip_next"
        return NO_REPLY
    raise CommandError(errors.SYNTAX)


def client_help(client, argv):
    return [line.encode() for line in (
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ID", "    Return the ID of the current connection.",
        "INFO", "    Return information about the current client connection.",
        "KILL <ip:port>", "    Kill connection made from <ip:port>.",
        "KILL <option> <value> [<option> <value> [...]]", "    Kill connections. Options: ID, ADDR, LADDR, USER, TYPE, SKIPME, MAXAGE.",
        "LIST [options ...]", "    Return information about client connections. Options: TYPE, ID.",
        "UNPAUSE", "    Stop the current client pause, resuming traffic.",
        "PAUSE <timeout> [WRITE|ALL]", "    Suspend all, or just write, clients for <timeout> milliseconds.",
        "REPLY (ON|OFF|SKIP)", "    Control the replies sent to the current connection.",
        "SETNAME <name>", "    Assign the name <name> to the current connection.",
        "GETNAME", "    Return the name of the current connection.",
        "SETINFO <option> <value>", "    Set client meta attr. Options: LIB-NAME, LIB-VER.",
        "NO-EVICT (ON|OFF)", "    Protect current client connection from eviction.",
        "NO-TOUCH (ON|OFF)", "    Will not touch LRU/LFU stats when this mode is on.",
        "HELP", "    Print this help.",
    )]


_CONN = "@connection"
_SLOW_ADMIN = "@admin @slow @dangerous @connection"
COMMANDS = [
    command("ping", ping, -1, "fast", acl="@fast @connection", group="connection"),
    command("echo", echo, 2, "loading stale fast", acl="@fast @connection", group="connection"),
    command("quit", quit_, -1, "allow_busy no_auth fast noscript loading stale", acl="@fast @connection",
            group="connection"),
    command("select", select, 2, "loading stale fast", acl="@fast @connection", group="connection"),
    command("auth", auth, -2, "noscript loading stale fast no_auth allow_busy", acl="@fast @connection",
            group="connection"),
    command("hello", hello, -1, "noscript loading stale fast no_auth allow_busy", acl="@fast @connection",
            group="connection"),
    command("reset", reset, 1, "noscript loading stale fast no_auth allow_busy", acl="@fast @connection",
            group="connection"),
    command("client", None, -2, "", acl="@slow", group="connection", subcommands=[
        command("id", client_id, 2, "noscript loading stale", acl="@slow @connection"),
        command("setname", client_setname, 3, "noscript loading stale", acl="@slow @connection"),
        command("getname", client_getname, 2, "noscript loading stale", acl="@slow @connection"),
        command("setinfo", client_setinfo, 4, "noscript loading stale", acl="@slow @connection"),
        command("list", client_list, -2, "admin noscript loading stale", acl=_SLOW_ADMIN),
        command("info", client_info, 2, "noscript loading stale", acl="@slow @connection"),
        command("kill", client_kill, -3, "admin noscript loading stale", acl=_SLOW_ADMIN),
        command("pause", client_pause, -3, "admin noscript loading stale", acl=_SLOW_ADMIN),
        command("unpause", client_unpause, 2, "admin noscript loading stale", acl=_SLOW_ADMIN),
        command("no-evict", client_no_evict, 3, "admin noscript loading stale", acl=_SLOW_ADMIN),
        command("no-touch", client_no_touch, 3, "noscript loading stale", acl="@slow @connection"),
        command("reply", client_reply, 3, "noscript loading stale", acl="@slow @connection"),
        command("help", client_help, 2, "loading stale", acl="@slow @connection"),
    ]),
]
