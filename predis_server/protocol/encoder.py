"""Reply values to RESP2/RESP3 bytes (the only place that knows the wire format of replies)."""
from __future__ import annotations

import math

from ..errors import CommandError
from ..replies import (
    Double,
    ErrorReply,
    Map,
    NoReply,
    NullArray,
    Push,
    Raw,
    SetReply,
    Status,
    Verbatim,
)

NULL_BULK = b"$-1\r\n"
NULL_ARRAY2 = b"*-1\r\n"
NULL3 = b"_\r\n"
OK_BYTES = b"+OK\r\n"


def format_double(value: float) -> bytes:
    """Redis's RESP3 double / %.17g formatting of a double."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    if math.isnan(value):
        return b"nan"
    return (b"%.17g" % value)


def encode_error(message: str) -> bytes:
    text = message.replace("\r", " ").replace("\n", " ")
    return b"-" + text.encode("utf-8", "surrogateescape") + b"\r\n"


def encode(value: object, resp3: bool, out: list[bytes]) -> None:
    """Append the encoding of ``value`` to ``out`` (a list joined once per write)."""
    t = type(value)
    if t is bytes:
        out.append(b"$%d\r\n%s\r\n" % (len(value), value))  # type: ignore[arg-type]
    elif t is Status:
        out.append(b"+%s\r\n" % value)
    elif t is int:
        out.append(b":%d\r\n" % value)  # type: ignore[str-format]
    elif value is None:
        out.append(NULL3 if resp3 else NULL_BULK)
    elif t is list or t is tuple:
        out.append(b"*%d\r\n" % len(value))  # type: ignore[arg-type]
        for item in value:  # type: ignore[attr-defined]
            encode(item, resp3, out)
    elif t is Map:
        if resp3:
            out.append(b"%%%d\r\n" % (len(value) // 2))  # type: ignore[arg-type]
        else:
            out.append(b"*%d\r\n" % len(value))  # type: ignore[arg-type]
        for item in value:  # type: ignore[attr-defined]
            encode(item, resp3, out)
    elif t is SetReply or t is Push:
        marker = (b"~" if t is SetReply else b">") if resp3 else b"*"
        out.append(b"%s%d\r\n" % (marker, len(value)))  # type: ignore[arg-type]
        for item in value:  # type: ignore[attr-defined]
            encode(item, resp3, out)
    elif t is Raw:
        out.append(value.data)  # type: ignore[attr-defined]
    elif t is ErrorReply:
        out.append(b"-%s\r\n" % value)
    elif isinstance(value, CommandError):
        out.append(encode_error(value.message))
    elif t is Double or t is float:
        text = format_double(value)  # type: ignore[arg-type]
        out.append(b",%s\r\n" % text if resp3 else b"$%d\r\n%s\r\n" % (len(text), text))
    elif t is Verbatim:
        if resp3:
            out.append(b"=%d\r\ntxt:%s\r\n" % (len(value) + 4, value))  # type: ignore[arg-type]
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(value), value))  # type: ignore[arg-type]
    elif t is NullArray:
        out.append(NULL3 if resp3 else NULL_ARRAY2)
    elif t is bool:
        out.append((b"#t\r\n" if value else b"#f\r\n") if resp3 else (b":1\r\n" if value else b":0\r\n"))
    elif t is NoReply:
        return
    elif t is bytearray or t is memoryview:
        data = bytes(value)  # type: ignore[arg-type]
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    elif t is dict:
        encode(Map(x for kv in value.items() for x in kv), resp3, out)  # type: ignore[attr-defined]
    elif t is str:
        data = value.encode()  # type: ignore[attr-defined]
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    else:
        raise TypeError(f"cannot encode reply of type {t.__name__}")


class _BulkHeaders(dict):
    """b"$<length>" by length, made on first use (lengths below 4096 are kept)."""

    def __missing__(self, size: int) -> bytes:
        header = b"$%d" % size
        if size < 4096:
            self[size] = header
        return header


_BULK_HEADERS = _BulkHeaders()
_bulk_header = _BULK_HEADERS.__getitem__
_ONLY_BYTES = {bytes}


def only_bytes(items: list) -> bool:
    return _ONLY_BYTES.issuperset(map(type, items))


def join_bulk_strings(items: list[bytes], head: bytes | None = None) -> bytes:
    """The bulk strings of ``items`` (all ``bytes``) back to back, after the ``head`` line if
    given: headers and values interleaved by slice assignment and joined by CRLF in one call,
    with no Python-level step per item."""
    n = len(items)
    k = 0 if head is None else 1
    parts: list = [None] * (2 * n + 1 + k)
    if k:
        parts[0] = head
    parts[k:-1:2] = map(_bulk_header, map(len, items))
    parts[k + 1::2] = items
    parts[-1] = b""
    return b"\r\n".join(parts)


def encode_bulk_array(items: list, resp3: bool, out: list[bytes]) -> None:
    """An array reply; a flat one of bulk strings and nils (MGET's) without a call per item."""
    n = len(items)
    if n > 4 and _ONLY_BYTES.issuperset(map(type, items)):
        out.append(join_bulk_strings(items, b"*%d" % n))
        return
    parts = [b"*%d\r\n" % n]
    null = NULL3 if resp3 else NULL_BULK
    append = parts.append
    for item in items:
        if type(item) is bytes:
            append(_bulk_header(len(item)))
            append(b"\r\n")
            append(item)
            append(b"\r\n")
        elif item is None:
            append(null)
        else:
            encode(items, resp3, out)
            return
    out.append(b"".join(parts))
