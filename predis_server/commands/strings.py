"""String family: GET SET MGET MSET INCR ... LCS.

https://redis.io/commands/?group=string
"""
from __future__ import annotations

from .. import errors
from ..errors import CommandError
from ..fastpath import mget_reply
from ..replies import OK, Map
from .args import (
    INT64_MAX,
    INT64_MIN,
    format_long_double,
    parse_int,
    parse_long_double,
)
from .table import command

_WRITE = "write denyoom"
_ACL_W = "@write @string"
_ACL_R = "@read @string"
_STRING_OR_NIL = {bytes, type(None)}


def _max_len(client) -> int:
    return client.server.config.proto_max_bulk_len


def expire_deadline(client, raw: bytes, unit_ms: int, absolute: bool, name: str) -> int:
    """Absolute expiry in ms for EX/PX/EXAT/PXAT arguments, with Redis's checks and errors."""
    value = parse_int(raw)
    if value <= 0 or (unit_ms == 1000 and value > INT64_MAX // 1000):
        raise CommandError(errors.invalid_expire(name))
    ms = value * unit_ms
    if not absolute:
        now = client.db.clock()
        if ms > INT64_MAX - now:
            raise CommandError(errors.invalid_expire(name))
        ms += now
    return ms


_EXPIRE_UNITS = {b"ex": (1000, False), b"px": (1, False), b"exat": (1000, True), b"pxat": (1, True)}


def set_generic(client, key: bytes, value: bytes, *, nx: bool = False, xx: bool = False,
                get: bool = False, expire_at: int = 0, keep_ttl: bool = False):
    """setGenericCommand: the one implementation behind SET, SETNX, SETEX, PSETEX, GETSET."""
    db = client.db
    old = None
    if get:
        old = db.get_string(key)
    if nx or xx:
        exists = old is not None if get else db.exists(key)
        if exists == nx:
            return old if get else None
    # An EXAT/PXAT already past is stored as is and expires on the next access (Redis 7.0).
    db.set(key, value, expire_at, keep_ttl)
    return old if get else OK


def parse_string_options(argv: list[bytes], first: int, for_set: bool):
    """parseExtendedStringArgumentsOrReply: SET's and GETEX's options, with Redis's quirks.

    Repeating an option is allowed (the last expiry wins); mixing exclusive ones is a
    syntax error. Returns (flags, expire) where expire is (unit option, raw value) or None.
    """
    flags: set[bytes] = set()
    expire = None
    i = first
    while i < len(argv):
        option = argv[i].lower()
        has_next = i + 1 < len(argv)
        units = flags & _EXPIRE_UNITS.keys()
        if for_set and ((option == b"nx" and b"xx" not in flags)
                        or (option == b"xx" and b"nx" not in flags)
                        or option == b"get" or (option == b"keepttl" and not units)) or not for_set and option == b"persist" and not units:
            flags.add(option)
        elif (option in _EXPIRE_UNITS and has_next and not units - {option}
              and not flags & {b"keepttl", b"persist"}):
            flags.add(option)
            expire = (option, argv[i + 1])
            i += 1
        else:
            raise CommandError(errors.SYNTAX)
        i += 1
    return flags, expire


def set_(client, argv):
    """https://redis.io/commands/set"""
    if len(argv) == 3:  # plain SET key value: no options to parse, nothing to look up first
        client.db.set(argv[1], argv[2])
        return OK
    flags, expire = parse_string_options(argv, 3, True)
    expire_at = 0
    if expire is not None:
        unit_ms, absolute = _EXPIRE_UNITS[expire[0]]
        expire_at = expire_deadline(client, expire[1], unit_ms, absolute, "set")
    return set_generic(client, argv[1], argv[2], nx=b"nx" in flags, xx=b"xx" in flags,
                       get=b"get" in flags, expire_at=expire_at, keep_ttl=b"keepttl" in flags)


def get(client, argv):
    """https://redis.io/commands/get"""
    value = client.db.get_string(argv[1])
    # read-through / access collector / prefetch (None: plain Redis, or not installed yet)
    hook = getattr(client.server, "access_hook", None)
    if hook is None:
        return value
    return hook.on_get(client, argv[1], value)


def setnx(client, argv):
    return 1 if set_generic(client, argv[1], argv[2], nx=True) is OK else 0


def setex(client, argv):
    return set_generic(client, argv[1], argv[3],
                       expire_at=expire_deadline(client, argv[2], 1000, False, "setex"))


def psetex(client, argv):
    return set_generic(client, argv[1], argv[3],
                       expire_at=expire_deadline(client, argv[2], 1, False, "psetex"))


def getset(client, argv):
    return set_generic(client, argv[1], argv[2], get=True)


def mget(client, argv):
    hook = getattr(client.server, "access_hook", None)
    if hook is None:
        encoded = mget_reply(client, argv)  # the C path: the whole reply in one go
        if encoded is not None:
            return encoded
    # One store call for all keys (hits/misses counted per key); a non-string is nil.
    out = client.db.lookup_read_many(argv[1:])
    if not set(map(type, out)) <= _STRING_OR_NIL:
        out = [value if type(value) is bytes else None for value in out]
    if hook is None:
        return out
    return hook.on_mget(client, argv, out)


def mset(client, argv):
    if len(argv) % 2 == 0:
        raise CommandError(errors.wrong_arity(argv[0].lower().decode("utf-8", "replace")))
    store_value = client.db.set
    for i in range(1, len(argv), 2):
        store_value(argv[i], argv[i + 1])
    return OK


def msetnx(client, argv):
    if len(argv) % 2 == 0:
        raise CommandError(errors.wrong_arity("msetnx"))
    db = client.db
    if any(db.lookup_write(argv[i]) is not None for i in range(1, len(argv), 2)):
        return 0
    for i in range(1, len(argv), 2):
        db.set(argv[i], argv[i + 1])
    return 1


def getdel(client, argv):
    db = client.db
    value = db.get_string(argv[1])
    if value is not None:
        db.delete(argv[1])
    return value


def getex(client, argv):
    """https://redis.io/commands/getex (the expiry value is checked only once the key is found)."""
    flags, expire = parse_string_options(argv, 2, False)
    db = client.db
    value = db.get_string(argv[1])
    if value is None:
        return None
    if expire is not None:
        unit_ms, absolute = _EXPIRE_UNITS[expire[0]]
        expire_at = expire_deadline(client, expire[1], unit_ms, absolute, "getex")
        if expire_at <= db.clock():
            db.delete(argv[1])  # EXAT/PXAT already past: deleted, the old value still returned
        else:
            db.set_expire(argv[1], expire_at)
    elif b"persist" in flags and db.expire_at(argv[1]):
        db.set_expire(argv[1], 0)
    return value


def append(client, argv):
    db = client.db
    current = db.get_string_for_write(argv[1])
    if current is None:
        db.set(argv[1], argv[2], keep_ttl=True)
        return len(argv[2])
    if len(current) + len(argv[2]) > _max_len(client):
        raise CommandError(errors.STRING_TOO_LONG)
    value = current + argv[2]
    db.set(argv[1], value, keep_ttl=True)
    return len(value)


def strlen(client, argv):
    value = client.db.get_string(argv[1])
    return 0 if value is None else len(value)


def getrange(client, argv):
    start = parse_int(argv[2])
    end = parse_int(argv[3])
    value = client.db.get_string(argv[1])
    if value is None:
        return b""
    length = len(value)
    if start < 0 and end < 0 and start > end:
        return b""
    if start < 0:
        start = max(length + start, 0)
    if end < 0:
        end = max(length + end, 0)
    if end >= length:
        end = length - 1
    if start > end or length == 0:
        return b""
    return value[start:end + 1]


def setrange(client, argv):
    offset = parse_int(argv[2])
    if offset < 0:
        raise CommandError(errors.OFFSET_OUT_OF_RANGE)
    patch = argv[3]
    db = client.db
    current = db.get_string_for_write(argv[1])
    if current is None:
        if not patch:
            return 0
        current = b""
    elif not patch:
        return len(current)
    if offset + len(patch) > _max_len(client):
        raise CommandError(errors.STRING_TOO_LONG)
    if len(current) < offset:
        current = current + b"\x00" * (offset - len(current))
    value = current[:offset] + patch + current[offset + len(patch):]
    db.set(argv[1], value, keep_ttl=True)
    return len(value)


def incr_by(client, key: bytes, delta: int) -> int:
    """INCR/DECR/INCRBY/DECRBY (and pipelined INCR runs): the new value, or CommandError."""
    db = client.db
    current = db.get_string_for_write(key)
    result = delta if current is None else parse_int(current) + delta
    if result < INT64_MIN or result > INT64_MAX:
        raise CommandError(errors.OVERFLOW)
    db.set(key, b"%d" % result, keep_ttl=True)
    return result


def incr(client, argv):
    return incr_by(client, argv[1], 1)


def decr(client, argv):
    return incr_by(client, argv[1], -1)


def incrby(client, argv):
    return incr_by(client, argv[1], parse_int(argv[2]))


def decrby(client, argv):
    delta = parse_int(argv[2])
    if delta == INT64_MIN:
        raise CommandError("ERR decrement would overflow")
    return incr_by(client, argv[1], -delta)


def incrbyfloat(client, argv):
    db = client.db
    current = db.get_string_for_write(argv[1])
    base = parse_long_double(current) if current is not None else parse_long_double(b"0")
    delta = parse_long_double(argv[2])
    result = base + delta
    if not (abs(result) < float("inf")):
        raise CommandError(errors.NAN_OR_INF)
    text = format_long_double(result)
    db.set(argv[1], text, keep_ttl=True)
    return text


def lcs(client, argv):
    """https://redis.io/commands/lcs (the same backtracking as Redis, so IDX ranges match)."""
    # Redis looks the keys up (and rejects non-strings) before it parses the options.
    db = client.db
    a = db.lookup_read(argv[1])
    b = db.lookup_read(argv[2])
    if (a is not None and type(a) is not bytes) or (b is not None and type(b) is not bytes):
        raise CommandError("ERR The specified keys must contain string values")
    want_len = want_idx = with_match_len = False
    min_match_len = 0
    i = 3
    while i < len(argv):
        option = argv[i].lower()
        if option == b"idx":
            want_idx = True
        elif option == b"len":
            want_len = True
        elif option == b"withmatchlen":
            with_match_len = True
        elif option == b"minmatchlen" and i + 1 < len(argv):
            min_match_len = max(parse_int(argv[i + 1]), 0)
            i += 1
        else:
            raise CommandError(errors.SYNTAX)
        i += 1
    if want_len and want_idx:
        raise CommandError("ERR If you want both the length and indexes, please just use IDX.")
    a = a or b""
    b = b or b""
    alen, blen = len(a), len(b)
    table = [[0] * (blen + 1) for _ in range(alen + 1)]
    for x in range(1, alen + 1):
        row, prev, ax = table[x], table[x - 1], a[x - 1]
        for y in range(1, blen + 1):
            if ax == b[y - 1]:
                row[y] = prev[y - 1] + 1
            else:
                row[y] = prev[y] if prev[y] > row[y - 1] else row[y - 1]  # noqa: FURB136 (hot loop)
    length = table[alen][blen]
    if want_len:
        return length
    result = bytearray(length)
    idx = length
    matches = []
    x, y = alen, blen
    a_start, a_end, b_start, b_end = alen, 0, 0, 0
    while x > 0 and y > 0:
        emit = False
        if a[x - 1] == b[y - 1]:
            result[idx - 1] = a[x - 1]
            if a_start == alen:
                a_start = a_end = x - 1
                b_start = b_end = y - 1
            elif a_start == x and b_start == y:
                a_start -= 1
                b_start -= 1
            else:
                emit = True
            if a_start == 0 or b_start == 0:
                emit = True
            idx -= 1
            x -= 1
            y -= 1
        else:
            if table[x - 1][y] > table[x][y - 1]:
                x -= 1
            else:
                y -= 1
            if a_start != alen:
                emit = True
        if emit:
            match_len = a_end - a_start + 1
            if min_match_len == 0 or match_len >= min_match_len:
                entry = [[a_start, a_end], [b_start, b_end]]
                if with_match_len:
                    entry.append(match_len)
                matches.append(entry)
            a_start = alen
    if want_idx:
        return Map([b"matches", matches, b"len", length])
    return bytes(result)


COMMANDS = [
    command("get", get, 2, "readonly fast", (1, 1, 1), "@read @string @fast", "string"),
    command("set", set_, -3, _WRITE, (1, 1, 1), "@write @string @slow", "string"),
    command("setnx", setnx, 3, "write denyoom fast", (1, 1, 1), "@write @string @fast", "string"),
    command("setex", setex, 4, _WRITE, (1, 1, 1), "@write @string @slow", "string"),
    command("psetex", psetex, 4, _WRITE, (1, 1, 1), "@write @string @slow", "string"),
    command("getset", getset, 3, "write denyoom fast", (1, 1, 1), "@write @string @fast", "string"),
    command("mget", mget, -2, "readonly fast", (1, -1, 1), "@read @string @fast", "string"),
    command("mset", mset, -3, _WRITE, (1, -1, 2), "@write @string @slow", "string"),
    command("msetnx", msetnx, -3, _WRITE, (1, -1, 2), "@write @string @slow", "string"),
    command("getdel", getdel, 2, "write fast", (1, 1, 1), "@write @string @fast", "string"),
    command("getex", getex, -2, "write fast", (1, 1, 1), "@write @string @fast", "string"),
    command("append", append, 3, "write denyoom fast", (1, 1, 1), "@write @string @fast", "string"),
    command("strlen", strlen, 2, "readonly fast", (1, 1, 1), "@read @string @fast", "string"),
    command("getrange", getrange, 4, "readonly", (1, 1, 1), "@read @string @slow", "string"),
    command("substr", getrange, 4, "readonly", (1, 1, 1), "@read @string @slow", "string"),
    command("setrange", setrange, 4, _WRITE, (1, 1, 1), "@write @string @slow", "string"),
    command("incr", incr, 2, "write denyoom fast", (1, 1, 1), "@write @string @fast", "string"),
    command("decr", decr, 2, "write denyoom fast", (1, 1, 1), "@write @string @fast", "string"),
    command("incrby", incrby, 3, "write denyoom fast", (1, 1, 1), "@write @string @fast", "string"),
    command("decrby", decrby, 3, "write denyoom fast", (1, 1, 1), "@write @string @fast", "string"),
    command("incrbyfloat", incrbyfloat, 3, "write denyoom fast", (1, 1, 1), "@write @string @fast",
            "string"),
    command("lcs", lcs, -3, "readonly", (1, 2, 1), "@read @string @slow", "string"),
]
