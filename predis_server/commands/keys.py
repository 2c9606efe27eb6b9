"""Keyspace family: DEL EXISTS TYPE EXPIRE... TTL... KEYS SCAN RENAME COPY MOVE SWAPDB TOUCH.

https://redis.io/commands/?group=generic

The order of checks in each handler follows Redis 7.0's ``db.c`` and ``expire.c`` so that
the first error a bad request hits is the same one Redis reports.
"""
from __future__ import annotations

import re

from .. import errors
from ..errors import CommandError
from ..glob import glob_match
from ..replies import OK, Status
from .args import INT64_MAX, INT64_MIN, parse_int
from .table import command

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
UINT64_MAX = 2**64 - 1

_TYPE_NAMES: dict[type, bytes] = {bytes: b"string", dict: b"hash", list: b"list", set: b"set"}


def type_name(value: object) -> bytes:
    """The name TYPE and SCAN TYPE use; families with their own classes set ``redis_type``."""
    name = _TYPE_NAMES.get(type(value))
    if name is None:
        name = getattr(value, "redis_type", b"none")
    return name


def duplicate(value: object) -> object:
    """A copy that shares no mutable state with ``value`` (COPY must not alias containers)."""
    if type(value) is bytes:
        return value
    if type(value) is dict:
        return dict(value)
    if type(value) in (list, set):
        return type(value)(value)  # type: ignore[call-arg]
    copier = getattr(value, "copy", None)
    if copier is None:
        raise CommandError("ERR unknown type object")
    return copier()


def _read_no_touch(client, key: bytes) -> object | None:
    """lookupKeyReadWithFlags(LOOKUP_NOTOUCH): counts hits/misses, leaves LRU/LFU alone."""
    db = client.db
    value = db.peek(key)
    stats = db.keyspace.stats
    if value is None:
        stats.keyspace_misses += 1
    else:
        stats.keyspace_hits += 1
    return value


def parse_int32(raw: bytes, message: str | None = None) -> int:
    """getIntFromObjectOrReply: an integer within C int, with Redis's two messages."""
    value = parse_int(raw, message or errors.NOT_INTEGER)
    if not INT32_MIN <= value <= INT32_MAX:
        raise CommandError(message or f"ERR value is out of range, value must between "
                                      f"{INT32_MIN} and {INT32_MAX}")
    return value


def _db_index(client, raw: bytes):
    """getIntFromObjectOrReply + selectDb: the Database numbered ``raw``."""
    value = parse_int32(raw)
    dbs = client.server.keyspace.dbs
    if not 0 <= value < len(dbs):
        raise CommandError(errors.DB_INDEX_OUT_OF_RANGE)
    return dbs[value]


# -- deletion and existence ---------------------------------------------------------------
def del_(client, argv):
    """https://redis.io/commands/del (UNLINK frees synchronously too: values are Python objects)."""
    delete = client.db.delete
    return sum(1 for key in argv[1:] if delete(key))


def exists(client, argv):
    """https://redis.io/commands/exists (a key named twice counts twice)."""
    return sum(1 for key in argv[1:] if _read_no_touch(client, key) is not None)


def touch(client, argv):
    """https://redis.io/commands/touch"""
    lookup = client.db.lookup_read
    return sum(1 for key in argv[1:] if lookup(key) is not None)


def type_(client, argv):
    """https://redis.io/commands/type"""
    value = _read_no_touch(client, argv[1])
    return Status(b"none" if value is None else type_name(value))


# -- expiry -------------------------------------------------------------------------------
_EXPIRE_FLAGS = (b"nx", b"xx", b"gt", b"lt")


def _expire_flags(argv: list[bytes]) -> set[bytes]:
    flags: set[bytes] = set()
    for raw in argv[3:]:
        option = raw.lower()
        if option not in _EXPIRE_FLAGS:
            # %s in Redis stops at the first NUL byte
            shown = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
            raise CommandError(f"ERR Unsupported option {shown}")
        flags.add(option)
    if b"nx" in flags and flags & {b"xx", b"gt", b"lt"}:
        raise CommandError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if b"gt" in flags and b"lt" in flags:
        raise CommandError("ERR GT and LT options at the same time are not compatible")
    return flags


def _expire_generic(client, argv, unit_ms: int, relative: bool):
    """expireGenericCommand: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT."""
    name = argv[0].lower().decode("utf-8", "replace")
    flags = _expire_flags(argv)
    when = parse_int(argv[2])
    if unit_ms == 1000:
        # Redis divides with C semantics (truncation toward zero)
        if when > INT64_MAX // 1000 or when < -(-INT64_MIN // 1000):
            raise CommandError(errors.invalid_expire(name))
        when *= 1000
    db = client.db
    now = db.clock()
    base = now if relative else 0
    if when > INT64_MAX - base:
        raise CommandError(errors.invalid_expire(name))
    when += base
    key = argv[1]
    if db.lookup_write(key) is None:
        return 0
    if flags:
        current = db.expire_at(key) or -1
        if b"nx" in flags and current != -1:
            return 0
        if b"xx" in flags and current == -1:
            return 0
        if b"gt" in flags and (current == -1 or when <= current):
            return 0
        if b"lt" in flags and current != -1 and when >= current:
            return 0
    if when <= now:
        db.delete(key)  # a deadline already past deletes the key, as DEL would
    else:
        db.set_expire(key, when)
    return 1


def expire(client, argv):
    """https://redis.io/commands/expire"""
    return _expire_generic(client, argv, 1000, True)


def pexpire(client, argv):
    """https://redis.io/commands/pexpire"""
    return _expire_generic(client, argv, 1, True)


def expireat(client, argv):
    """https://redis.io/commands/expireat"""
    return _expire_generic(client, argv, 1000, False)


def pexpireat(client, argv):
    """https://redis.io/commands/pexpireat"""
    return _expire_generic(client, argv, 1, False)


def _ttl_generic(client, key: bytes, in_ms: bool, absolute: bool) -> int:
    """ttlGenericCommand: -2 missing, -1 no expiry; seconds are rounded to the nearest."""
    if _read_no_touch(client, key) is None:
        return -2
    db = client.db
    expire_at = db.expire_at(key)
    if not expire_at:
        return -1
    ttl = expire_at if absolute else max(expire_at - db.clock(), 0)
    return ttl if in_ms else (ttl + 500) // 1000


def ttl(client, argv):
    """https://redis.io/commands/ttl"""
    return _ttl_generic(client, argv[1], False, False)


def pttl(client, argv):
    """https://redis.io/commands/pttl"""
    return _ttl_generic(client, argv[1], True, False)


def expiretime(client, argv):
    """https://redis.io/commands/expiretime"""
    return _ttl_generic(client, argv[1], False, True)


def pexpiretime(client, argv):
    """https://redis.io/commands/pexpiretime"""
    return _ttl_generic(client, argv[1], True, True)


def persist(client, argv):
    """https://redis.io/commands/persist"""
    db = client.db
    key = argv[1]
    if db.lookup_write(key) is None or not db.expire_at(key):
        return 0
    db.set_expire(key, 0)
    return 1


# -- iteration ----------------------------------------------------------------------------
def _live(db, key: bytes, now: int) -> bool:
    """keyIsExpired's negation, without deleting (KEYS reports but does not reclaim)."""
    expire_at = db.expire_at(key)
    return not (0 < expire_at <= now)


def keys(client, argv):
    """https://redis.io/commands/keys"""
    pattern = argv[1]
    db = client.db
    now = db.clock()
    every = pattern == b"*"
    candidates = db.store.keys()
    return [key for key in candidates if (every or glob_match(pattern, key)) and _live(db, key, now)]


# strtoul(base 10) as parseScanCursorOrReply uses it: optional sign, digits, nothing after.
_CURSOR = re.compile(rb"([+-]?)(\d*)\Z")


def parse_scan_cursor(raw: bytes) -> int:
    text = raw.split(b"\0", 1)[0]  # strtoul stops at NUL; eptr[0] == '\0' then
    match = _CURSOR.match(text)
    if match is None or (text[:1] in b"+-" and text and not match.group(2)):
        raise CommandError(errors.INVALID_CURSOR)
    magnitude = int(match.group(2) or b"0")
    if magnitude > UINT64_MAX:
        raise CommandError(errors.INVALID_CURSOR)
    return (-magnitude) % (UINT64_MAX + 1) if match.group(1) == b"-" else magnitude


def scan(client, argv):
    """https://redis.io/commands/scan (cursors are store slots: stable while keys come and go)."""
    cursor = parse_scan_cursor(argv[1])
    count = 10
    pattern: bytes | None = None
    wanted_type: bytes | None = None
    i = 2
    while i < len(argv):
        option = argv[i].lower()
        has_value = i + 1 < len(argv)
        if option == b"count" and has_value:
            count = parse_int(argv[i + 1])
            if count < 1:
                raise CommandError(errors.SYNTAX)
        elif option == b"match" and has_value:
            pattern = None if argv[i + 1] == b"*" else argv[i + 1]
        elif option == b"type" and has_value:
            wanted_type = argv[i + 1].lower()
        else:
            raise CommandError(errors.SYNTAX)
        i += 2
    db = client.db
    next_cursor, found = db.store.scan(cursor, count)
    out = []
    for key in found:
        if pattern is not None and not glob_match(pattern, key):
            continue
        value = db.peek(key)  # expired keys are reclaimed here, as expireIfNeeded does
        if value is None:
            continue
        if wanted_type is not None and type_name(value) != wanted_type:
            continue
        out.append(key)
    return [b"%d" % next_cursor, out]


def randomkey(client, argv):
    """https://redis.io/commands/randomkey"""
    db = client.db
    while True:
        key = db.store.random_key()
        if key is None:
            return None
        if db.peek(key) is not None:  # an expired pick is reclaimed and another one drawn
            return key


# -- moving keys --------------------------------------------------------------------------
def _rename_generic(client, argv, nx: bool):
    src, dst = argv[1], argv[2]
    db = client.db
    value = db.lookup_write(src)
    if value is None:
        raise CommandError(errors.NO_SUCH_KEY)
    if src == dst:
        return 0 if nx else OK
    expire_at = db.expire_at(src)
    if db.lookup_write(dst) is not None:
        if nx:
            return 0
        db.delete(dst)
    db.delete(src)
    db.set(dst, value, expire_at)
    return 1 if nx else OK


def rename(client, argv):
    """https://redis.io/commands/rename"""
    return _rename_generic(client, argv, False)


def renamenx(client, argv):
    """https://redis.io/commands/renamenx"""
    return _rename_generic(client, argv, True)


def copy(client, argv):
    """https://redis.io/commands/copy"""
    src_db = dst_db = client.db
    replace = False
    i = 3
    while i < len(argv):
        option = argv[i].lower()
        if option == b"replace":
            replace = True
        elif option == b"db" and i + 1 < len(argv):
            dst_db = _db_index(client, argv[i + 1])
            i += 1
        else:
            raise CommandError(errors.SYNTAX)
        i += 1
    src, dst = argv[1], argv[2]
    if src_db is dst_db and src == dst:
        raise CommandError(errors.SAME_OBJECT)
    value = src_db.lookup_read(src)
    if value is None:
        return 0
    expire_at = src_db.expire_at(src)
    if dst_db.lookup_write(dst) is not None:
        if not replace:
            return 0
        dst_db.delete(dst)
    dst_db.set(dst, duplicate(value), expire_at)
    return 1


def move(client, argv):
    """https://redis.io/commands/move"""
    src_db = client.db
    dst_db = _db_index(client, argv[2])
    if src_db is dst_db:
        raise CommandError(errors.SAME_OBJECT)
    key = argv[1]
    value = src_db.lookup_write(key)
    if value is None:
        return 0
    expire_at = src_db.expire_at(key)
    if dst_db.lookup_write(key) is not None:
        return 0
    dst_db.set(key, value, expire_at)
    src_db.delete(key)
    return 1


def swapdb(client, argv):
    """https://redis.io/commands/swapdb"""
    first = parse_int32(argv[1], "ERR invalid first DB index")
    second = parse_int32(argv[2], "ERR invalid second DB index")
    keyspace = client.server.keyspace
    count = len(keyspace.dbs)
    if not (0 <= first < count and 0 <= second < count):
        raise CommandError(errors.DB_INDEX_OUT_OF_RANGE)
    if first != second:
        keyspace.swap(first, second)
    return OK


_W = "@keyspace @write @fast"
_R = "@keyspace @read @fast"

COMMANDS = [
    command("del", del_, -2, "write", (1, -1, 1), "@keyspace @write @slow", "generic"),
    command("unlink", del_, -2, "write fast", (1, -1, 1), _W, "generic"),
    command("exists", exists, -2, "readonly fast", (1, -1, 1), _R, "generic"),
    command("type", type_, 2, "readonly fast", (1, 1, 1), _R, "generic"),
    command("touch", touch, -2, "readonly fast", (1, -1, 1), _R, "generic"),
    command("expire", expire, -3, "write fast", (1, 1, 1), _W, "generic"),
    command("pexpire", pexpire, -3, "write fast", (1, 1, 1), _W, "generic"),
    command("expireat", expireat, -3, "write fast", (1, 1, 1), _W, "generic"),
    command("pexpireat", pexpireat, -3, "write fast", (1, 1, 1), _W, "generic"),
    command("ttl", ttl, 2, "readonly fast", (1, 1, 1), _R, "generic"),
    command("pttl", pttl, 2, "readonly fast", (1, 1, 1), _R, "generic"),
    command("expiretime", expiretime, 2, "readonly fast", (1, 1, 1), _R, "generic"),
    command("pexpiretime", pexpiretime, 2, "readonly fast", (1, 1, 1), _R, "generic"),
    command("persist", persist, 2, "write fast", (1, 1, 1), _W, "generic"),
    command("keys", keys, 2, "readonly", (0, 0, 0), "@keyspace @read @slow @dangerous", "generic"),
    command("scan", scan, -2, "readonly", (0, 0, 0), "@keyspace @read @slow", "generic"),
    command("randomkey", randomkey, 1, "readonly", (0, 0, 0), "@keyspace @read @slow", "generic"),
    command("rename", rename, 3, "write", (1, 2, 1), "@keyspace @write @slow", "generic"),
    command("renamenx", renamenx, 3, "write fast", (1, 2, 1), _W, "generic"),
    command("copy", copy, -3, "write denyoom", (1, 2, 1), "@keyspace @write @slow", "generic"),
    command("move", move, 3, "write fast", (1, 1, 1), _W, "generic"),
    command("swapdb", swapdb, 3, "write fast", (0, 0, 0), "@keyspace @write @fast @dangerous",
            "generic"),
]
