"""Hash family: HSET HGET HMGET HGETALL HDEL HINCRBY HSCAN HRANDFIELD ...

https://redis.io/commands/?group=hash

A hash is a plain ``dict[bytes, bytes]`` held by the store. Python dicts keep insertion
order, as Redis's listpack encoding does for small hashes, so HGETALL, HKEYS and
HRANDFIELD's full-hash replies come in the same order as Redis's for those hashes.
In-place changes report their byte delta to the store (``add_size``) and signal WATCH
(``modified``); the key is deleted when its last field goes, as Redis does.
"""
from __future__ import annotations

import random
import sys

import numpy as np

from .. import errors
from ..errors import CommandError
from ..glob import glob_match
from ..replies import OK, Map
from .args import (
    INT64_MAX,
    INT64_MIN,
    format_long_double,
    parse_int,
    parse_long_double,
)
from .table import command

# Hashes up to this many fields answer HSCAN in one call with cursor 0, like Redis's
# listpack encoding (hash-max-listpack-entries' default).
SMALL_HASH_FIELDS = 128
LONG_MAX = INT64_MAX
_size = sys.getsizeof


def _pair_size(field: bytes, value: bytes) -> int:
    return _size(field) + _size(value)


def _write_hash(client, key: bytes) -> dict[bytes, bytes] | None:
    return client.db.get_hash(key, write=True)


def _store_fields(client, key: bytes, pairs: list[tuple[bytes, bytes]]) -> int:
    """Set fields (creating the hash when missing); returns how many fields were new."""
    db = client.db
    h = _write_hash(client, key)
    if h is None:
        db.set(key, dict(pairs))
        return len({field for field, _ in pairs})
    added = 0
    delta = 0
    for field, value in pairs:
        old = h.get(field)
        if old is None:
            added += 1
            delta += _pair_size(field, value)
        else:
            delta += _size(value) - _size(old)
        h[field] = value
    db.store.add_size(key, delta)
    db.modified(key)
    return added


def _field_pairs(argv: list[bytes]) -> list[tuple[bytes, bytes]]:
    if len(argv) % 2 == 1:
        raise CommandError(errors.wrong_arity(argv[0].lower().decode("utf-8", "replace")))
    return [(argv[i], argv[i + 1]) for i in range(2, len(argv), 2)]


def hset(client, argv):
    """https://redis.io/commands/hset"""
    return _store_fields(client, argv[1], _field_pairs(argv))


def hmset(client, argv):
    """https://redis.io/commands/hmset"""
    _store_fields(client, argv[1], _field_pairs(argv))
    return OK


def hsetnx(client, argv):
    """https://redis.io/commands/hsetnx"""
    h = _write_hash(client, argv[1])
    if h is not None and argv[2] in h:
        return 0
    _store_fields(client, argv[1], [(argv[2], argv[3])])
    return 1


def hget(client, argv):
    """https://redis.io/commands/hget"""
    h = client.db.get_hash(argv[1])
    return None if h is None else h.get(argv[2])


def hmget(client, argv):
    """https://redis.io/commands/hmget"""
    h = client.db.get_hash(argv[1])
    if h is None:
        return [None] * (len(argv) - 2)
    return [h.get(field) for field in argv[2:]]


def hgetall(client, argv):
    """https://redis.io/commands/hgetall"""
    h = client.db.get_hash(argv[1])
    if h is None:
        return Map()
    return Map(item for pair in h.items() for item in pair)


def hkeys(client, argv):
    """https://redis.io/commands/hkeys"""
    h = client.db.get_hash(argv[1])
    return [] if h is None else list(h)


def hvals(client, argv):
    """https://redis.io/commands/hvals"""
    h = client.db.get_hash(argv[1])
    return [] if h is None else list(h.values())


def hlen(client, argv):
    """https://redis.io/commands/hlen"""
    h = client.db.get_hash(argv[1])
    return 0 if h is None else len(h)


def hexists(client, argv):
    """https://redis.io/commands/hexists"""
    h = client.db.get_hash(argv[1])
    return int(h is not None and argv[2] in h)


def hstrlen(client, argv):
    """https://redis.io/commands/hstrlen"""
    h = client.db.get_hash(argv[1])
    value = None if h is None else h.get(argv[2])
    return 0 if value is None else len(value)


def hdel(client, argv):
    """https://redis.io/commands/hdel"""
    db = client.db
    key = argv[1]
    h = _write_hash(client, key)
    if h is None:
        return 0
    deleted = 0
    delta = 0
    for field in argv[2:]:
        value = h.pop(field, None)
        if value is not None:
            deleted += 1
            delta -= _pair_size(field, value)
            if not h:
                break  # Redis stops at the last field: the key is gone
    if deleted:
        if h:
            db.store.add_size(key, delta)
            db.modified(key)
        else:
            db.delete(key)
    return deleted


def hincrby(client, argv):
    """https://redis.io/commands/hincrby"""
    increment = parse_int(argv[3])
    h = _write_hash(client, argv[1])
    current = None if h is None else h.get(argv[2])
    value = 0 if current is None else parse_int(current, errors.HASH_NOT_INTEGER)
    if (increment < 0 and value < 0 and increment < INT64_MIN - value) or (
            increment > 0 and value > 0 and increment > INT64_MAX - value):
        raise CommandError(errors.OVERFLOW)
    result = value + increment
    _store_fields(client, argv[1], [(argv[2], b"%d" % result)])
    return result


def hincrbyfloat(client, argv):
    """https://redis.io/commands/hincrbyfloat"""
    increment = parse_long_double(argv[3])
    if not _finite(increment):
        raise CommandError("ERR value is NaN or Infinity")
    h = _write_hash(client, argv[1])
    current = None if h is None else h.get(argv[2])
    value = parse_long_double(current, errors.HASH_NOT_FLOAT) if current is not None else 0
    value = value + increment
    if not _finite(value):
        raise CommandError(errors.NAN_OR_INF)
    text = format_long_double(value)
    _store_fields(client, argv[1], [(argv[2], text)])
    return text


def _finite(value) -> bool:
    return bool(np.isfinite(value))


# -- HSCAN ------------------------------------------------------------------------------------
def parse_scan_cursor(raw: bytes) -> int:
    """parseScanCursorOrReply: strtoul rules (sign allowed, '' is 0, negatives wrap)."""
    body = raw[1:] if raw[:1] in (b"+", b"-") else raw
    if raw[:1].isspace() or (body and not body.isdigit()) or (not body and raw):
        raise CommandError(errors.INVALID_CURSOR)
    value = int(body) if body else 0
    if value > 2**64 - 1:
        raise CommandError(errors.INVALID_CURSOR)
    return (-value) % 2**64 if raw[:1] == b"-" else value


class _ScanOrder:
    """A large hash's fields sorted by a fixed per-field position (the field's hash).

    The cursor is the position to resume from, so a field present for the whole walk is
    returned whatever is added or removed meanwhile: its position never changes. The
    sorted order is a snapshot rebuilt at the start of every walk (cursor 0) and whenever
    it is missing; any snapshot taken after a walk began holds every field present
    throughout it. Fields deleted since the snapshot are skipped when emitted; fields added
    since may or may not be returned (as SCAN documents). Building the order costs about a
    second per million fields, once per walk; each call after that is a binary search.
    """

    __slots__ = ("fields", "positions")

    def __init__(self, h: dict[bytes, bytes]) -> None:
        fields = list(h)
        positions = np.fromiter((_position(f) for f in fields), dtype=np.int64, count=len(fields))
        order = np.argsort(positions, kind="stable")
        self.positions = positions[order]
        self.fields = [fields[i] for i in order.tolist()]


def _position(field: bytes) -> int:
    # 1..2**63-1: 0 is the cursor that means "start" / "done".
    return hash(field) % (2**63 - 1) + 1


_scan_orders: dict[int, tuple[dict, _ScanOrder]] = {}
_SCAN_ORDERS_KEPT = 8


def _scan_order(h: dict[bytes, bytes], restart: bool) -> _ScanOrder:
    cached = _scan_orders.get(id(h))
    if cached is not None and cached[0] is h and not restart:
        return cached[1]
    order = _ScanOrder(h)
    _scan_orders.pop(id(h), None)
    if len(_scan_orders) >= _SCAN_ORDERS_KEPT:
        del _scan_orders[next(iter(_scan_orders))]
    _scan_orders[id(h)] = (h, order)
    return order


def hscan(client, argv):
    """https://redis.io/commands/hscan"""
    cursor = parse_scan_cursor(argv[2])
    h = client.db.get_hash(argv[1])
    if h is None:
        return [b"0", []]
    count = 10
    pattern = None
    i = 3
    while i < len(argv):
        option = argv[i].lower()
        if option == b"count" and i + 1 < len(argv):
            count = parse_int(argv[i + 1])
            if count < 1:
                raise CommandError(errors.SYNTAX)
        elif option == b"match" and i + 1 < len(argv):
            pattern = None if argv[i + 1] == b"*" else argv[i + 1]
        else:
            raise CommandError(errors.SYNTAX)
        i += 2
    if len(h) <= SMALL_HASH_FIELDS:
        items = list(h.items())
        next_cursor = 0
    else:
        order = _scan_order(h, cursor == 0)
        start = int(np.searchsorted(order.positions, min(cursor, 2**63 - 1)))
        end = min(start + count, len(order.fields))
        # Never split fields that share a position, or one of them would be lost.
        while 0 < end < len(order.fields) and order.positions[end] == order.positions[end - 1]:
            end += 1
        next_cursor = int(order.positions[end]) if end < len(order.fields) else 0
        items = [(f, h[f]) for f in order.fields[start:end] if f in h]
    out: list[bytes] = []
    for field, value in items:
        if pattern is None or glob_match(pattern, field):
            out += (field, value)
    return [b"%d" % next_cursor, out]


# -- HRANDFIELD -------------------------------------------------------------------------------
_rng = random.Random()
_MAX_REPEATED_PICKS = 1 << 28


def hrandfield(client, argv):
    """https://redis.io/commands/hrandfield"""
    if len(argv) == 2:
        h = client.db.get_hash(argv[1])
        return None if h is None else _rng.choice(list(h))
    count = parse_int(argv[2])
    if count < -LONG_MAX:
        raise CommandError(  # sic: Redis 7.0's wording
            f"ERR value is out of range, value must between {-LONG_MAX} and {LONG_MAX}")
    withvalues = False
    if len(argv) > 4 or (len(argv) == 4 and argv[3].lower() != b"withvalues"):
        raise CommandError(errors.SYNTAX)
    if len(argv) == 4:
        withvalues = True
        if count < -(LONG_MAX // 2) or count > LONG_MAX // 2:
            raise CommandError("ERR value is out of range")
    h = client.db.get_hash(argv[1])
    if h is None or count == 0:
        return []
    fields = list(h)
    if count < -_MAX_REPEATED_PICKS:
        # Redis would stream this many replies until memory runs out; refuse instead.
        raise CommandError("ERR value is out of range")
    if count < 0 or count == 1:
        # With repetitions (or a single pick), in random order.
        chosen = [_rng.choice(fields) for _ in range(abs(count))]
    elif count >= len(fields):
        chosen = fields  # the whole hash, in its own order (as Redis replies)
    else:
        chosen = _rng.sample(fields, count)
    if not withvalues:
        return chosen
    if client.resp == 3:
        return [[field, h[field]] for field in chosen]
    return [item for field in chosen for item in (field, h[field])]


_W = "write denyoom fast"
_ACL_W = "@write @hash @fast"
_ACL_R = "@read @hash @fast"
_ACL_R_SLOW = "@read @hash @slow"
_KEY = (1, 1, 1)

COMMANDS = [
    command("hset", hset, -4, _W, _KEY, _ACL_W, "hash"),
    command("hmset", hmset, -4, _W, _KEY, _ACL_W, "hash"),
    command("hsetnx", hsetnx, 4, _W, _KEY, _ACL_W, "hash"),
    command("hget", hget, 3, "readonly fast", _KEY, _ACL_R, "hash"),
    command("hmget", hmget, -3, "readonly fast", _KEY, _ACL_R, "hash"),
    command("hgetall", hgetall, 2, "readonly", _KEY, _ACL_R_SLOW, "hash"),
    command("hkeys", hkeys, 2, "readonly", _KEY, _ACL_R_SLOW, "hash"),
    command("hvals", hvals, 2, "readonly", _KEY, _ACL_R_SLOW, "hash"),
    command("hlen", hlen, 2, "readonly fast", _KEY, _ACL_R, "hash"),
    command("hexists", hexists, 3, "readonly fast", _KEY, _ACL_R, "hash"),
    command("hstrlen", hstrlen, 3, "readonly fast", _KEY, _ACL_R, "hash"),
    command("hdel", hdel, -3, "write fast", _KEY, _ACL_W, "hash"),
    command("hincrby", hincrby, 4, _W, _KEY, _ACL_W, "hash"),
    command("hincrbyfloat", hincrbyfloat, 4, _W, _KEY, _ACL_W, "hash"),
    command("hscan", hscan, -3, "readonly", _KEY, _ACL_R_SLOW, "hash"),
    command("hrandfield", hrandfield, -2, "readonly", _KEY, _ACL_R_SLOW, "hash"),
]
