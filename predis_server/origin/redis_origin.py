"""``redis://host:port[/db]``: any Redis-protocol server as the origin.

A small asyncio RESP client (hiredis parses replies): one pipelined connection, requests
answered in order, reconnecting on the next read after a failure. It runs on the event
loop, so it never takes a worker thread.
"""
from __future__ import annotations

import asyncio
from collections import deque
from urllib.parse import SplitResult

import hiredis

from .base import Origin, OriginError


def _command(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class _RespProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: deque[asyncio.Future] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            if self.waiting:
                future = self.waiting.popleft()
                if not future.done():
                    future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(OriginError("redis: connection lost"))


class RedisOrigin(Origin):
    blocking = False

    def __init__(self, parts: SplitResult) -> None:
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        path = parts.path.strip("/")
        self.db = int(path) if path else 0
        self.password = parts.password
        self._protocol: _RespProtocol | None = None
        self._connecting: asyncio.Future | None = None

    async def _connection(self) -> _RespProtocol:
        if self._protocol is not None and not self._protocol.lost:
            return self._protocol
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        try:
            return await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _connect(self) -> _RespProtocol:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_connection(_RespProtocol, self.host, self.port)
        except OSError as exc:
            raise OriginError(f"redis: cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from exc
        if self.password:
            await self._call(protocol, b"AUTH", self.password.encode())
        if self.db:
            await self._call(protocol, b"SELECT", b"%d" % self.db)
        self._protocol = protocol
        return protocol

    @staticmethod
    async def _call(protocol: _RespProtocol, *args: bytes) -> object:
        future = asyncio.get_running_loop().create_future()
        protocol.waiting.append(future)
        assert protocol.transport is not None
        protocol.transport.write(_command(*args))
        reply = await future
        if isinstance(reply, hiredis.ReplyError):
            raise OriginError(f"redis: {reply}")
        return reply

    async def _aget(self, key: bytes) -> bytes | None:
        protocol = await self._connection()
        reply = await self._call(protocol, b"GET", key)
        if reply is not None and type(reply) is not bytes:
            raise OriginError("redis: unexpected reply type")
        return reply  # type: ignore[return-value]

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
