"""Reply values that command handlers return; the protocol layer turns them into RESP2/RESP3 bytes.

Plain Python values cover most replies: ``bytes`` is a bulk string, ``int`` an integer,
``None`` a null, ``list``/``tuple`` an array. The classes below mark the replies whose
encoding differs between RESP2 and RESP3 or that are not bulk strings.
"""
from __future__ import annotations


class Status(bytes):
    """A simple string (``+OK``)."""

    __slots__ = ()


OK = Status(b"OK")
QUEUED = Status(b"QUEUED")
PONG = Status(b"PONG")


class ErrorReply(bytes):
    """An error returned as a value (inside EXEC results), e.g. ``ERR ...``."""

    __slots__ = ()


class NullArray:
    """``*-1`` in RESP2 (aborted EXEC, ...), ``_`` in RESP3."""

    __slots__ = ()


NULL_ARRAY = NullArray()


class Map(list):
    """Key/value pairs flattened as [k1, v1, k2, v2, ...]: a RESP3 map, a RESP2 array."""

    __slots__ = ()


class SetReply(list):
    """A RESP3 set (``~``), a RESP2 array."""

    __slots__ = ()


class Double(float):
    """A RESP3 double (``,``), a RESP2 bulk string."""

    __slots__ = ()


class Verbatim(bytes):
    """A RESP3 verbatim string (``=``, format txt), a RESP2 bulk string."""

    __slots__ = ()


class Push(list):
    """An out-of-band message: RESP3 push (``>``), a RESP2 array."""

    __slots__ = ()


class NoReply:
    """Nothing is written (CLIENT REPLY OFF/SKIP, QUIT handled by the connection)."""

    __slots__ = ()


NO_REPLY = NoReply()


class Raw:
    """Bytes already encoded in RESP, written as they are (pub/sub frames, MGET from the C
    path): held, not copied as a bytes subclass would be."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class Deferred:
    """A reply that is not ready yet (e.g. a read-through load from the origin).

    The connection's later commands wait behind it, so per-connection order is kept, while
    other connections go on. ``future`` is an asyncio future resolving to a reply value.
    """

    __slots__ = ("future",)

    def __init__(self, future: object) -> None:
        self.future = future


class Resolved:
    """The value of a Deferred once ready, queued in front of the commands that waited."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value
