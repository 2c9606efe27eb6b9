"""A raw RESP client for byte-for-byte comparisons: sends argv, returns the exact reply bytes."""
from __future__ import annotations

import socket


def encode_command(*args: bytes | str | int) -> bytes:
    parts = []
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"*%d\r\n" % len(args) + b"".join(parts)


def reply_length(buf: bytes, pos: int = 0) -> int | None:
    """Length of the complete RESP2/RESP3 reply at ``pos``, or None when incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind = buf[pos:pos + 1]
    head = buf[pos + 1:end]
    after = end + 2
    if kind in b"+-:_,#(":
        return after - pos
    if kind in b"$=!":
        n = int(head)
        if n < 0:
            return after - pos
        return after + n + 2 - pos if len(buf) >= after + n + 2 else None
    if kind in b"*~>%|":
        n = int(head)
        if n < 0:
            return after - pos
        if kind in b"%|":
            n *= 2
        cur = after
        for _ in range(n):
            size = reply_length(buf, cur)
            if size is None:
                return None
            cur += size
        return cur - pos
    raise ValueError(f"bad reply type {kind!r} in {buf[pos:pos + 40]!r}")


class RawConnection:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_reply(self) -> bytes:
        while True:
            if self.buf:
                size = reply_length(self.buf)
                if size is not None:
                    reply, self.buf = self.buf[:size], self.buf[size:]
                    return reply
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError(f"connection closed; unread: {self.buf!r}")
            self.buf += chunk

    def call(self, *args: bytes | str | int) -> bytes:
        self.send(encode_command(*args))
        return self.read_reply()

    def read_until_closed(self) -> bytes:
        data = self.buf
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        self.buf = b""
        return data

    def close(self) -> None:
        self.sock.close()
