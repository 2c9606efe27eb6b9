"""One client connection: bytes in through the request parser, replies out in one write a batch."""
from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

from ..client import Client
from ..errors import ProtocolError
from .encoder import encode_error
from .parser import RequestParser

if TYPE_CHECKING:
    from ..server import Server

# Stop reading from a client while this much of its output is still unsent: a client that
# pipelines without reading its replies is throttled instead of growing our buffers.
WRITE_HIGH_WATER = 4 * 1024 * 1024
WRITE_LOW_WATER = 1024 * 1024
# Replies one connection may produce in one batch before the rest of its pipeline waits for
# the socket to drain: a 256 KB read can hold ~12k GETs, and 12k large replies at once
# would grow the process by gigabytes before the high-water mark could act.
OUTPUT_BATCH_LIMIT = 4 * 1024 * 1024


class Connection(asyncio.Protocol):
    def __init__(self, server: Server, kind: str = "tcp") -> None:
        self.server = server
        self.kind = kind
        self.transport: asyncio.Transport | None = None
        self.client: Client | None = None
        self.parser = RequestParser(server.config.proto_max_bulk_len,
                                    server.config.client_query_buffer_limit)
        self.reading_paused = False
        self.writing_paused = False
        # commands parsed but not yet run because this client's replies are not drained yet
        self.backlog: list | None = None

    # -- asyncio callbacks ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        server.stats.total_connections_received += 1
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        addr, laddr = _format_addr(peer), _format_addr(local)
        if len(server.clients) >= server.config.maxclients:
            server.stats.rejected_connections += 1
            transport.write(encode_error("ERR max number of clients reached"))
            transport.close()
            return
        if not server.protected_mode_allows(peer, self.kind):
            transport.write(encode_error(server.protected_mode_message()))
            transport.close()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and self.kind == "tcp" and server.config.tcp_keepalive:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            except OSError:
                pass
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        self.client = Client(server, addr, laddr, self.send, self.close, self.kind)
        server.register(self)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None or client.closing:
            return
        server = self.server
        stats = server.stats
        stats.total_net_input_bytes += len(data)
        stats.total_reads_processed += 1
        commands: list = []
        parser = self.parser
        try:
            if parser.ready and client.authenticated:  # hiredis, in one C call
                parser.receive(data, commands)
            else:  # the stricter limits before AUTH; a request split across reads
                parser.feed(data, commands, not client.authenticated)
        except ProtocolError as exc:
            if str(exc) == "query buffer limit reached":
                server.stats.client_query_buffer_limit_disconnections += 1
                commands.append(None)  # close without a reply, as Redis does
            else:
                commands.append(exc)
        if commands:
            server.enqueue(self, commands)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client is not None:
            self.client.closing = True
            self.server.unregister(self)

    def pause_writing(self) -> None:
        self.writing_paused = True
        client = self.client
        if client is not None and client.in_pubsub and self.server.pubsub_buffer_exceeded(self):
            self.close_now()
            return
        if self.transport is not None and not self.reading_paused:
            self.transport.pause_reading()
            self.reading_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.backlog is not None:
            backlog, self.backlog = self.backlog, None
            self.server.enqueue(self, backlog)
        if self.transport is not None and self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    # -- output ---------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Queue out-of-band bytes (pub/sub messages); written at the end of the batch."""
        client = self.client
        if client is None or client.closing:
            return
        client.output.append(data)
        self.server.dirty.add(self)

    def flush(self) -> None:
        client = self.client
        transport = self.transport
        if client is None or transport is None:
            return
        if client.output:
            data = b"".join(client.output) if len(client.output) > 1 else client.output[0]
            client.output.clear()
            if not transport.is_closing():
                transport.write(data)
                self.server.stats.total_net_output_bytes += len(data)
                self.server.stats.total_writes_processed += 1
        if client.closing:
            transport.close()

    def close(self) -> None:
        """Close after what has been queued is written."""
        if self.client is not None:
            self.client.closing = True
            self.server.dirty.add(self)

    def close_now(self) -> None:
        if self.client is not None:
            self.client.closing = True
            self.client.output.clear()
        if self.transport is not None:
            self.transport.abort()


def _format_addr(addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = addr[0]
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    if isinstance(addr, str) and addr:
        return f"{addr}:0"
    return "/unixsocket:0"
