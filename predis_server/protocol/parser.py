"""Request parsing: hiredis's C reader on the fast path, a Redis-exact Python parser beside it.

Redis accepts two request forms (see networking.c ``processInlineBuffer`` and
``processMultibulkBuffer``): RESP arrays of bulk strings and inline lines. hiredis parses
complete arrays far faster than Python can, but it cannot parse inline commands, does not
enforce Redis's length limits, and accepts reply types that are not valid in requests. So:

* a chunk that starts a new request with ``*`` goes to hiredis (unless it declares an array
  of a million elements or more, which hiredis would allocate at once);
* anything hiredis rejects (inline text, non-bulk elements, non-canonical lengths such as
  "$04") is parsed again by the Python parser, which gives Redis's exact protocol errors;
* a request left incomplete at the end of a chunk is handed to the Python parser, which
  validates its headers (absurd lengths are refused at once, not buffered) and finishes it;
  the bytes after it go back to hiredis.
"""
from __future__ import annotations

import re

from ..errors import ProtocolError
from ..fastpath import net

try:  # optional C speed-up with a pure-Python fallback
    import hiredis
except ImportError:  # pragma: no cover - exercised only where hiredis is missing
    hiredis = None

INLINE_MAX_SIZE = 64 * 1024  # PROTO_INLINE_MAX_SIZE
MAX_MULTIBULK_LEN = 2**31 - 1  # INT_MAX, as in Redis 7

# hiredis refuses a chunk (ProtocolError) or hands back a non-request (ValueError from the drain)
HIREDIS_ERRORS = (hiredis.ProtocolError, ValueError) if hiredis is not None else (ValueError,)
# hiredis allocates an array's list as soon as it reads the header ("*3000000000" would reserve
# 24 GB of address space and make every GC pass crawl over it), so chunks that declare arrays
# of a million elements or more anywhere go to the Python parser, which allocates nothing ahead.
# (_netpath.c's receive applies the same test.)
_BIG_ARRAY_HEADER = re.compile(rb"\*[0-9]{7}")
_ONLY_BYTES = frozenset((bytes,))

_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEX = b"0123456789abcdefABCDEF"


def split_inline_args(line: bytes) -> list[bytes]:
    """Redis's ``sdssplitargs``: whitespace-separated, with "double" and 'single' quotes."""
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in b" \n\r\t\x0b\x0c\x00":
            i += 1
        if i >= n:
            return args
        current = bytearray()
        in_dq = in_sq = False
        while True:
            if in_dq:
                if i >= n:
                    raise ProtocolError("unbalanced quotes in request")
                c = line[i]
                if (c == 0x5C and i + 3 < n and line[i + 1] == ord("x")
                        and line[i + 2] in _HEX and line[i + 3] in _HEX):
                    current.append(int(line[i + 2:i + 4], 16))
                    i += 3
                elif c == 0x5C and i + 1 < n:
                    i += 1
                    current.append(_ESCAPES.get(line[i], line[i]))
                elif c == 0x22:
                    # a closing quote must be followed by a space or nothing
                    if i + 1 < n and line[i + 1] not in b" \n\r\t\x0b\x0c\x00":
                        raise ProtocolError("unbalanced quotes in request")
                    i += 1
                    break
                else:
                    current.append(c)
            elif in_sq:
                if i >= n:
                    raise ProtocolError("unbalanced quotes in request")
                c = line[i]
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                    i += 1
                    current.append(0x27)
                elif c == 0x27:
                    if i + 1 < n and line[i + 1] not in b" \n\r\t\x0b\x0c\x00":
                        raise ProtocolError("unbalanced quotes in request")
                    i += 1
                    break
                else:
                    current.append(c)
            else:
                if i >= n:
                    break
                c = line[i]
                if c in b" \n\r\t\x00":
                    break
                if c == 0x22:
                    in_dq = True
                elif c == 0x27:
                    in_sq = True
                else:
                    current.append(c)
            i += 1
        args.append(bytes(current))


class PythonRequestParser:
    """A streaming parser with Redis's exact rules and errors (the reference and the fallback)."""

    def __init__(self, max_bulk_len: int, max_buffer: int) -> None:
        self.max_bulk_len = max_bulk_len
        self.max_buffer = max_buffer
        # Redis 7 caps array and bulk sizes for clients that have not authenticated yet, so an
        # anonymous client cannot make the server buffer large requests.
        self.unauthenticated = False
        self.buf = bytearray()
        self.pos = 0
        # state of a multibulk request in progress
        self._remaining = 0  # bulk strings still expected; 0 = between requests
        self._args: list[bytes] = []
        self._bulk_len = -1

    def idle(self) -> bool:
        return self._remaining == 0 and self.pos >= len(self.buf)

    def pending_bytes(self) -> int:
        return len(self.buf) - self.pos

    def feed(self, data: bytes, out: list[list[bytes]], stop_after_one: bool = False) -> bytes:
        """Append parsed commands to ``out``; raise ProtocolError (after appending) on bad input.

        With ``stop_after_one`` the parser stops once the request in progress is complete and
        returns the bytes after it unparsed (so the caller can use a faster parser on them);
        otherwise, and while that request is still incomplete, it returns b"".
        """
        if self.pos:
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += data
        buf = self.buf
        completed = False
        while True:
            if self._remaining == 0:
                if self.pos >= len(buf):
                    break
                if buf[self.pos] == 0x2A:  # '*'
                    if not self._start_multibulk(buf):
                        break
                    if self._remaining == 0:  # empty request: *0 or *-1
                        completed = True
                        if stop_after_one:
                            break
                        continue
                else:
                    line = self._take_inline(buf)
                    if line is None:
                        break
                    args = split_inline_args(line)
                    if args:
                        self._emit(args, out)
                    completed = True
                    if stop_after_one:
                        break
                    continue
            if not self._read_bulks(buf, out):
                break
            completed = True
            if stop_after_one:
                break
        if stop_after_one and completed:
            rest = bytes(buf[self.pos:])
            buf.clear()
            self.pos = 0
            return rest
        if self.pos >= len(buf):
            buf.clear()
            self.pos = 0
        if len(buf) - self.pos > self.max_buffer:
            raise ProtocolError("query buffer limit reached")
        return b""

    def _emit(self, args: list[bytes], out: list[list[bytes]]) -> None:
        out.append(args)
        if self.unauthenticated and args[0].lower() in (b"auth", b"hello"):
            self.unauthenticated = False  # the connection re-arms the check if AUTH failed

    def _take_inline(self, buf: bytearray) -> bytes | None:
        nl = buf.find(b"\n", self.pos)
        if nl < 0:
            if len(buf) - self.pos > INLINE_MAX_SIZE:
                raise ProtocolError("too big inline request")
            return None
        line = bytes(buf[self.pos:nl])
        self.pos = nl + 1
        if line.endswith(b"\r"):
            line = line[:-1]
        return line

    def _start_multibulk(self, buf: bytearray) -> bool:
        cr = buf.find(b"\r", self.pos)
        if cr < 0 or cr + 1 >= len(buf):
            if len(buf) - self.pos > INLINE_MAX_SIZE:
                raise ProtocolError("too big mbulk count string")
            return False
        count = _parse_int(buf[self.pos + 1:cr])
        if count is None or count > MAX_MULTIBULK_LEN:
            raise ProtocolError("invalid multibulk length")
        if count > 10 and self.unauthenticated:
            raise ProtocolError("unauthenticated multibulk length")
        self.pos = cr + 2
        self._remaining = max(count, 0)
        self._args = []
        self._bulk_len = -1
        return True

    def _read_bulks(self, buf: bytearray, out: list[list[bytes]]) -> bool:
        while self._remaining:
            if self._bulk_len < 0:
                if self.pos >= len(buf):
                    return False
                cr = buf.find(b"\r", self.pos)
                if cr < 0 or cr + 1 >= len(buf):
                    if len(buf) - self.pos > INLINE_MAX_SIZE:
                        raise ProtocolError("too big bulk count string")
                    return False
                if buf[self.pos] != 0x24:  # '$'
                    raise ProtocolError(f"expected '$', got '{chr(buf[self.pos])}'")
                length = _parse_int(buf[self.pos + 1:cr])
                if length is None or length < 0 or length > self.max_bulk_len:
                    raise ProtocolError("invalid bulk length")
                if length > 16384 and self.unauthenticated:
                    raise ProtocolError("unauthenticated bulk length")
                self.pos = cr + 2
                self._bulk_len = length
            end = self.pos + self._bulk_len
            if end + 2 > len(buf):
                return False
            self._args.append(bytes(buf[self.pos:end]))
            self.pos = end + 2
            self._bulk_len = -1
            self._remaining -= 1
        args, self._args = self._args, []
        self._emit(args, out)
        return True


def _parse_int(raw: bytes | bytearray) -> int | None:
    # string2ll: optional '-', digits only, no '+', no spaces, no leading zeros, "0" but not "-0"
    if not raw or len(raw) > 20:
        return None
    body = raw[1:] if raw[:1] == b"-" else raw
    if not body.isdigit() or (body[:1] == b"0" and (len(body) > 1 or len(raw) > 1)):
        return None
    value = int(raw)
    return value if -(2**63) <= value < 2**63 else None


class RequestParser:
    """hiredis for complete arrays; the Python parser for inline text, errors and partial requests."""

    def __init__(self, max_bulk_len: int = 512 * 1024 * 1024, max_buffer: int = 1024**3) -> None:
        self.slow = PythonRequestParser(max_bulk_len, max_buffer)
        self.reader = hiredis.Reader() if hiredis is not None else None
        # hiredis is between requests and the Python parser holds nothing: a chunk may go
        # straight to ``receive`` (Connection.data_received's fast path)
        self.ready = self.reader is not None and net is not None

    def receive(self, data: bytes, out: list[list[bytes]]) -> None:
        """``feed`` for an authenticated client while ``ready`` (Connection.data_received's
        common case: one C call), minus the checks that state implies."""
        start = len(out)
        try:
            size = net.receive(self.reader, data, out)
        except HIREDIS_ERRORS:
            size = None
        if size == len(data):
            return  # every byte in complete requests: hiredis is between requests
        slow = self.slow
        slow.unauthenticated = False  # it may have parsed for this client before AUTH
        self.ready = False  # until the Python parser is idle again (not if it raises)
        if size is None:
            self._reparse(data, out, start)
        elif size < 0:
            slow.feed(data, out)
        else:
            self._after_partial(data, out, start, size)
        self.ready = slow.idle()

    def set_limits(self, max_bulk_len: int, max_buffer: int) -> None:
        self.slow.max_bulk_len = max_bulk_len
        self.slow.max_buffer = max_buffer

    def feed(self, data: bytes, out: list[list[bytes]], unauthenticated: bool = False) -> None:
        """Append the complete requests of ``data`` to ``out`` (``unauthenticated``: with the
        stricter limits Redis applies before AUTH); ProtocolError on bad input."""
        slow = self.slow
        slow.unauthenticated = unauthenticated
        self.ready = False
        try:
            self._feed(data, out)
        finally:
            self.ready = self.reader is not None and net is not None and slow.idle()

    def _feed(self, data: bytes, out: list[list[bytes]]) -> None:
        slow = self.slow
        reader = self.reader
        if reader is None or slow.unauthenticated:
            slow.feed(data, out)
            return
        if not slow.idle():
            # Finish the request split across reads exactly, then go back to hiredis.
            data = slow.feed(data, out, stop_after_one=True)
            if not data:
                return
        if net is not None:  # the checks, the feed and the loop below in one C call (_netpath.c)
            self.receive(data, out)
            return
        # A big array header is the chunk's first line or follows a CRLF; the two C-level
        # checks spare the regex on every single-command read.
        if data[:1] != b"*" or ((data[1:8].isdigit() or data.find(b"*", 1) != -1)
                                and _BIG_ARRAY_HEADER.search(data) is not None):
            slow.feed(data, out)
            return
        start = len(out)
        append = out.append
        empty = 0
        try:
            reader.feed(data)
            gets = reader.gets
            while True:
                cmd = gets()
                if cmd is False:
                    break
                if type(cmd) is not list:
                    raise ValueError("not a request")
                if len(cmd) > 8:  # MGET, MSET...: one C-level pass over the element types
                    if not _ONLY_BYTES.issuperset(map(type, cmd)):
                        raise ValueError("not a request")
                else:
                    for arg in cmd:
                        if type(arg) is not bytes:
                            raise ValueError("not a request")
                if cmd:
                    append(cmd)
                else:
                    empty += 1  # "*0" requests are skipped, as Redis does
        except HIREDIS_ERRORS:
            self._reparse(data, out, start)
            return
        self._after_partial(data, out, start, 4 * empty + _canonical_size(out, start))

    def _after_partial(self, data: bytes, out: list[list[bytes]], start: int, consumed: int) -> None:
        """hiredis took the chunk's first ``consumed`` bytes as complete requests: whatever it
        holds of the rest (a request cut by the read) goes to the Python parser."""
        reader = self.reader
        slow = self.slow
        if not reader.has_data():
            # hiredis took every byte, but it may be inside an array whose elements have not
            # arrived. An empty array fed now comes back as itself only if hiredis was between
            # requests (inside one it would become an element, a payload or an error).
            reader.feed(b"*0\r\n")
            try:
                if reader.gets() == []:
                    return
            except hiredis.ProtocolError:
                pass
        # A request is incomplete at the end of the chunk: the Python parser takes it from its
        # first byte and checks its headers now, so an absurd length is refused at once
        # instead of being waited for. hiredis does not say where it stopped, but it refuses
        # non-canonical lengths ("$04", "$+4", "$ 4": its string2ll is Redis's), so every
        # request it returned had the canonical size computed here.
        self.reader = hiredis.Reader()
        if data[consumed:consumed + 1] != b"*" or (consumed and data[consumed - 2:consumed] != b"\r\n"):
            self._reparse(data, out, start)  # cannot happen with canonical frames; be exact
            return
        slow.feed(data[consumed:] if consumed else data, out)

    def _reparse(self, data: bytes, out: list[list[bytes]], start: int) -> None:
        """Not plain canonical RESP arrays (inline text, wrong element types...): parse exactly."""
        del out[start:]
        self.reader = hiredis.Reader()
        self.slow.feed(data, out)


def _canonical_size(commands: list[list[bytes]], start: int) -> int:
    """Bytes of ``commands[start:]`` written as canonical RESP arrays of bulk strings."""
    size = 0
    for index in range(start, len(commands)):
        cmd = commands[index]
        n = len(cmd)
        size += 4 if n < 10 else 3 + len(str(n))  # "*" count "\r\n"
        for arg in cmd:
            length = len(arg)  # "$" digits "\r\n" payload "\r\n"
            size += length + 5 + (1 if length < 10 else 2 if length < 100 else len(str(length)))
    return size
