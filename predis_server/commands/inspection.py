"""MEMORY, OBJECT and DEBUG: what one value looks like, in Redis's terms.

https://redis.io/commands/memory-usage  https://redis.io/commands/object-encoding
https://redis.io/commands/debug

Predis stores values as Python objects, so encodings and sizes are those Redis would use for
the same value: ``int``/``embstr``/``raw`` strings and ``listpack``/``hashtable`` hashes, and
MEMORY USAGE computed as Redis computes it (robj + sds + dictEntry, rounded to jemalloc's size
classes). That keeps tools that read these numbers (memory analysers, tests) meaningful.
"""
from __future__ import annotations

import time

from .. import errors
from ..errors import CommandError
from ..info import used_memory
from ..replies import OK, Double, Map, Status, Verbatim
from .args import parse_float, parse_int, try_int
from .introspection import help_reply
from .table import command

OBJ_ENCODING_EMBSTR_SIZE_LIMIT = 44
HASH_MAX_LISTPACK_ENTRIES = 512  # Redis 7.0 default (redis.conf examples say 128)
HASH_MAX_LISTPACK_VALUE = 64
OBJ_SHARED_INTEGERS = 10000
ROBJ_SIZE, DICT_ENTRY_SIZE, DICT_SIZE = 16, 24, 56
SHARED_REFCOUNT = 2147483647


def jemalloc_size(n: int) -> int:
    """The jemalloc size class an allocation of n bytes lands in (x86-64, 16-byte quantum)."""
    if n <= 8:
        return 8
    if n <= 128:
        return (n + 15) // 16 * 16
    group = 1 << (n - 1).bit_length() - 1  # the power of two below n; 4 classes per doubling
    step = group // 4
    return (n + step - 1) // step * step


def sds_alloc(length: int, is_key: bool = False) -> int:
    """Bytes an sds string of this length allocates (header + data + NUL)."""
    if length < 32 and is_key:
        header = 1  # SDS_TYPE_5, used for keys only
    elif length < 256:
        header = 3
    elif length < 65536:
        header = 5
    elif length < 2**32:
        header = 9
    else:
        header = 17
    return jemalloc_size(header + length + 1)


def string_encoding(value: bytes) -> str:
    if len(value) <= 20 and try_int(value) is not None:
        return "int"
    return "embstr" if len(value) <= OBJ_ENCODING_EMBSTR_SIZE_LIMIT else "raw"


def encoding_of(value: object) -> str:
    if type(value) is bytes:
        return string_encoding(value)
    if type(value) is dict:
        if len(value) <= HASH_MAX_LISTPACK_ENTRIES and all(
                len(k) <= HASH_MAX_LISTPACK_VALUE and len(v) <= HASH_MAX_LISTPACK_VALUE
                for k, v in value.items()):
            return "listpack"
        return "hashtable"
    return "raw"


def _listpack_bytes(items: list[bytes]) -> int:
    total = 7  # header (6) + end byte
    for item in items:
        n = len(item)
        total += n + (1 if n < 64 else 2 if n < 4096 else 5) + (1 if n + 1 < 128 else 2)
    return total


def value_usage(value: object, samples: int) -> int:
    """objectComputeSize: the value's own bytes (robj included)."""
    if type(value) is bytes:
        encoding = string_encoding(value)
        if encoding == "int":
            return ROBJ_SIZE
        if encoding == "embstr":
            return jemalloc_size(ROBJ_SIZE + 3 + len(value) + 1)
        return ROBJ_SIZE + sds_alloc(len(value))
    if type(value) is dict:
        if encoding_of(value) == "listpack":
            items = [x for kv in value.items() for x in kv]
            return ROBJ_SIZE + jemalloc_size(_listpack_bytes(items))
        buckets = 1 << max(2, (len(value) - 1).bit_length())
        size = ROBJ_SIZE + DICT_SIZE + 8 * buckets
        sampled = list(value.items()) if samples == 0 else list(value.items())[:samples]
        per_entry = sum(sds_alloc(len(k)) + sds_alloc(len(v)) + DICT_ENTRY_SIZE
                        for k, v in sampled) / max(1, len(sampled))
        return int(size + per_entry * len(value))
    return ROBJ_SIZE


def _refcount(client, value: object) -> int:
    if type(value) is bytes and string_encoding(value) == "int":
        number = int(value)
        keyspace = client.server.keyspace
        lru_or_lfu = keyspace.policy.value.endswith(("-lru", "-lfu"))
        if 0 <= number < OBJ_SHARED_INTEGERS and (not keyspace.maxmemory or not lru_or_lfu):
            return SHARED_REFCOUNT
    return 1


# -- MEMORY ---------------------------------------------------------------------------------
def memory_usage(client, argv):
    """https://redis.io/commands/memory-usage"""
    samples = 5
    i = 3
    while i < len(argv):
        if argv[i].lower() == b"samples" and i + 1 < len(argv):
            samples = parse_int(argv[i + 1])
            if samples < 0:
                raise CommandError(errors.SYNTAX)
            i += 2
        else:
            raise CommandError(errors.SYNTAX)
    key = argv[2]
    value = client.db.peek(key)
    if value is None:
        return None
    return value_usage(value, samples) + sds_alloc(len(key), is_key=True) + DICT_ENTRY_SIZE


def memory_stats(client, argv):
    """https://redis.io/commands/memory-stats"""
    server = client.server
    used = used_memory(server)
    peak = max(getattr(server, "used_memory_peak", 0), used)
    reply = Map([b"peak.allocated", peak, b"total.allocated", used, b"startup.allocated", 0,
                 b"replication.backlog", 0, b"clients.slaves", 0, b"clients.normal", 0,
                 b"cluster.links", 0, b"aof.buffer", 0, b"lua.caches", 0, b"functions.caches", 0])
    keys = 0
    for db in server.keyspace.dbs:
        if len(db.store):
            keys += len(db.store)
            reply += [f"db.{db.id}".encode(),
                      Map([b"overhead.hashtable.main", 0, b"overhead.hashtable.expires", 0,
                           b"overhead.hashtable.slot-to-keys", 0])]
    reply += [b"overhead.total", 0, b"keys.count", keys,
              b"keys.bytes-per-key", used // keys if keys else 0, b"dataset.bytes", used,
              b"dataset.percentage", Double(100.0), b"peak.percentage",
              Double(100.0 * used / peak if peak else 100.0),
              b"allocator.allocated", used, b"allocator.active", used, b"allocator.resident", used,
              b"allocator-fragmentation.ratio", Double(1.0), b"allocator-fragmentation.bytes", 0,
              b"allocator-rss.ratio", Double(1.0), b"allocator-rss.bytes", 0,
              b"rss-overhead.ratio", Double(1.0), b"rss-overhead.bytes", 0,
              b"fragmentation", Double(1.0), b"fragmentation.bytes", 0]
    return reply


def memory_doctor(client, argv):
    """https://redis.io/commands/memory-doctor"""
    if used_memory(client.server) < 5 * 1024 * 1024:
        return Verbatim(
            b"Hi Sam, this instance is empty or is using very little memory, my issues detector "
            b"can't be used in these conditions. Please, leave for your mission on Earth and fill "
            b"it with some data. The new Sam and I will be back to our programming as soon as I "
            b"finished rebooting.\n")
    return Verbatim(b"Hi Sam, I can't find any memory issue in your instance. I can only account "
                    b"for what occurs on this base.\n")


def memory_malloc_stats(client, argv):
    return b"Stats not supported for the current allocator"


def memory_purge(client, argv):
    return OK


_MEMORY_HELP = [
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
    "HELP",
    "    Prints this help.",
]


def memory_help(client, argv):
    return help_reply(_MEMORY_HELP)


# -- OBJECT ---------------------------------------------------------------------------------
def object_encoding(client, argv):
    """https://redis.io/commands/object-encoding"""
    value = client.db.peek(argv[2])
    return None if value is None else encoding_of(value).encode()


def object_freq(client, argv):
    """https://redis.io/commands/object-freq"""
    db = client.db
    if db.peek(argv[2]) is None:
        return None
    if not client.server.keyspace.policy.uses_lfu:
        raise CommandError(errors.LFU_NOT_SELECTED)
    return db.store.lfu_frequency(argv[2], db.clock())


def object_idletime(client, argv):
    """https://redis.io/commands/object-idletime"""
    db = client.db
    if db.peek(argv[2]) is None:
        return None
    if client.server.keyspace.policy.uses_lfu:
        raise CommandError(errors.LFU_SELECTED)
    return db.store.idle_ms(argv[2], db.clock()) // 1000


def object_refcount(client, argv):
    """https://redis.io/commands/object-refcount"""
    value = client.db.peek(argv[2])
    return None if value is None else _refcount(client, value)


_OBJECT_HELP = [
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
]


def object_help(client, argv):
    return help_reply(_OBJECT_HELP)


# -- DEBUG ----------------------------------------------------------------------------------
def _debug_allowed(client) -> bool:
    mode = client.server.config.enable_debug_command
    if mode == "yes":
        return True
    if mode == "local":
        return client.kind == "unix" or client.addr.startswith(("127.0.0.1:", "[::1]:", "/"))
    return False


def _serialized_length(value: object) -> int:
    """Roughly what RDB would write for the value (no LZF compression)."""
    if type(value) is bytes:
        if string_encoding(value) == "int":
            number = int(value)
            return 2 if -128 <= number < 128 else 3 if -32768 <= number < 32768 else 5
        return len(value) + (1 if len(value) < 64 else 2 if len(value) < 16384 else 5)
    if type(value) is dict:
        return _listpack_bytes([x for kv in value.items() for x in kv]) + 1
    return 0


def debug(client, argv):
    """https://redis.io/commands/debug: OBJECT SLEEP SET-ACTIVE-EXPIRE HELP."""
    if not _debug_allowed(client):
        raise CommandError(errors.DEBUG_NOT_ALLOWED)
    sub = argv[1].lower()
    if sub == b"help" and len(argv) == 2:
        return help_reply(_DEBUG_HELP)
    if sub == b"sleep" and len(argv) == 3:
        # Blocks the whole server on purpose, as Redis's does (tests use it to simulate a stall).
        try:
            seconds = parse_float(argv[2])
        except CommandError:
            seconds = 0.0
        time.sleep(max(0.0, seconds))
        return OK
    if sub == b"set-active-expire" and len(argv) == 3:
        client.server.active_expire = bool(try_int(argv[2]) or 0)
        return OK
    if sub == b"object" and len(argv) == 3:
        db = client.db
        value = db.peek(argv[2])
        if value is None:
            raise CommandError(errors.NO_SUCH_KEY)
        idle = db.store.idle_ms(argv[2], db.clock()) // 1000
        lru = int(time.time() - idle) & ((1 << 24) - 1)
        return Status((f"Value at:0x{id(value):x} refcount:{_refcount(client, value)} "
                       f"encoding:{encoding_of(value)} serializedlength:{_serialized_length(value)} "
                       f"lru:{lru} lru_seconds_idle:{idle}").encode())
    name = argv[1].decode("utf-8", "replace")
    raise CommandError(f"ERR unknown subcommand or wrong number of arguments for '{name}'. "
                       "Try DEBUG HELP.")


_DEBUG_HELP = [
    "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "OBJECT <key>",
    "    Show low level info about the `key` and associated value.",
    "SET-ACTIVE-EXPIRE <0|1>",
    "    Setting it to 0 disables expiring keys in background when they are not",
    "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
    "    default.",
    "SLEEP <seconds>",
    "    Stop the server for <seconds>. Decimals allowed.",
    "HELP",
    "    Prints this help.",
]

_KEY_READ = "@keyspace @read @slow"
COMMANDS = [
    command("memory", None, -2, "", acl="@slow", group="server", subcommands=[
        command("usage", memory_usage, -3, "readonly", (2, 2, 1), "@read @slow"),
        command("stats", memory_stats, 2, "", acl="@slow"),
        command("doctor", memory_doctor, 2, "", acl="@slow"),
        command("malloc-stats", memory_malloc_stats, 2, "", acl="@slow"),
        command("purge", memory_purge, 2, "", acl="@slow"),
        command("help", memory_help, 2, "loading stale", acl="@slow"),
    ]),
    command("object", None, -2, "", acl="@slow", group="generic", subcommands=[
        command("encoding", object_encoding, 3, "readonly", (2, 2, 1), _KEY_READ),
        command("freq", object_freq, 3, "readonly", (2, 2, 1), _KEY_READ),
        command("idletime", object_idletime, 3, "readonly", (2, 2, 1), _KEY_READ),
        command("refcount", object_refcount, 3, "readonly", (2, 2, 1), _KEY_READ),
        command("help", object_help, 2, "loading stale", acl="@keyspace @slow"),
    ]),
    command("debug", debug, -2, "admin noscript loading stale", acl="@admin @slow @dangerous",
            group="server"),
]
