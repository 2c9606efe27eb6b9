"""SSL contexts from the tls-* options, and the acceptor that runs handshakes off the hot path.

The listener accepts plain TCP and runs the server side of the handshake on each socket (what
``loop.start_tls`` does, plus the bytes that arrived before it: uvloop may read a prompt
ClientHello before the handshake takes the socket over, and start_tls would lose it and stall
until the timeout), so a failed handshake (no client certificate, TLS 1.1, garbage) is seen
here: it is counted, audited and closed without ever creating a client. ``TLSContextHolder.reload`` rebuilds the context when
a tls-* option changes; connections already open keep the context they were made with.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
from asyncio import sslproto
from typing import Any

log = logging.getLogger("predis.tls")

_VERSIONS = {"tlsv1": ssl.TLSVersion.TLSv1, "tlsv1.1": ssl.TLSVersion.TLSv1_1,
             "tlsv1.2": ssl.TLSVersion.TLSv1_2, "tlsv1.3": ssl.TLSVersion.TLSv1_3}
HANDSHAKE_TIMEOUT_S = 10.0


class TLSConfigError(ValueError):
    pass


def build_server_context(config: Any) -> ssl.SSLContext:
    """An SSLContext for the server side, from Config attributes (tls_cert_file, ...)."""
    if not config.tls_cert_file or not config.tls_key_file:
        raise TLSConfigError("tls-cert-file and tls-key-file are required for TLS")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    versions = sorted(_parse_protocols(config.tls_protocols))
    ctx.minimum_version, ctx.maximum_version = versions[0], versions[-1]
    if ctx.minimum_version < ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # old protocols need the legacy ciphers
    try:
        ctx.load_cert_chain(config.tls_cert_file, config.tls_key_file,
                            password=config.tls_key_file_pass or None)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"Failed to load certificate {config.tls_cert_file} / key "
                             f"{config.tls_key_file}: {exc}") from None
    if config.tls_ca_cert_file or config.tls_ca_cert_dir:
        try:
            ctx.load_verify_locations(cafile=config.tls_ca_cert_file or None,
                                      capath=config.tls_ca_cert_dir or None)
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(f"Failed to load CA certificates: {exc}") from None
    mode = config.tls_auth_clients
    if mode == "yes":
        if not (config.tls_ca_cert_file or config.tls_ca_cert_dir):
            raise TLSConfigError("tls-auth-clients yes needs tls-ca-cert-file or tls-ca-cert-dir")
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif mode == "optional":
        ctx.verify_mode = ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if config.tls_ciphers:
        try:
            ctx.set_ciphers(config.tls_ciphers)
        except ssl.SSLError as exc:
            raise TLSConfigError(f"Failed to configure ciphers: {exc}") from None
    if config.tls_prefer_server_ciphers:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_NO_COMPRESSION
    return ctx


def _parse_protocols(text: str) -> set[ssl.TLSVersion]:
    versions = set()
    for word in text.split():
        version = _VERSIONS.get(word.lower())
        if version is None:
            raise TLSConfigError(f"Invalid tls-protocols specified: {word}")
        versions.add(version)
    if not versions:
        raise TLSConfigError("tls-protocols must name at least one protocol")
    return versions


class TLSContextHolder:
    """The current server context; reload() swaps it atomically or keeps the old one."""

    OPTIONS = ("tls-cert-file", "tls-key-file", "tls-key-file-pass", "tls-ca-cert-file",
               "tls-ca-cert-dir", "tls-auth-clients", "tls-protocols", "tls-ciphers",
               "tls-ciphersuites", "tls-prefer-server-ciphers")

    def __init__(self, config: Any) -> None:
        self.config = config
        self.context = build_server_context(config)
        self.reloads = 0

    def reload(self) -> None:
        self.context = build_server_context(self.config)  # raises: the old context stays
        self.reloads += 1
        log.warning("TLS configuration reloaded")


class _HandshakeBuffer(asyncio.Protocol):
    """Holds what arrives between the end of the handshake and the Connection taking over."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


_HANDSHAKES: set[asyncio.Future[None]] = set()


class TLSAcceptor(asyncio.Protocol):
    """Accepts TCP, runs the TLS handshake, then hands the TLS transport to a Connection."""

    def __init__(self, server: Any, holder: TLSContextHolder, make_connection: Any) -> None:
        self.server = server
        self.holder = holder
        self.make_connection = make_connection
        self.early: list[bytes] = []  # read before the handshake took the socket over

    def data_received(self, data: bytes) -> None:
        self.early.append(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Keep a reference: the event loop holds tasks weakly, and a handshake task collected
        # mid-flight would leave the client hanging.
        task = asyncio.ensure_future(self._handshake(transport))  # type: ignore[arg-type]
        _HANDSHAKES.add(task)
        task.add_done_callback(_HANDSHAKES.discard)

    async def _handshake(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        buffer = _HandshakeBuffer()
        peer = transport.get_extra_info("peername")
        waiter = loop.create_future()
        ssl_protocol = sslproto.SSLProtocol(loop, buffer, self.holder.context, waiter, server_side=True,
                                            call_connection_made=False,
                                            ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S)
        try:
            transport.pause_reading()
            transport.set_protocol(ssl_protocol)
            ssl_protocol.connection_made(transport)
            early, self.early = self.early, []
            for chunk in early:  # what start_tls would have dropped
                pos = 0
                while pos < len(chunk):
                    view = ssl_protocol.get_buffer(len(chunk) - pos)
                    n = min(len(view), len(chunk) - pos)
                    view[:n] = chunk[pos:pos + n]
                    ssl_protocol.buffer_updated(n)
                    pos += n
            if not transport.is_closing():
                transport.resume_reading()
            await waiter
        except Exception as exc:  # any failed handshake: count it, audit it, drop the socket
            self._handshake_failed(peer, exc)
            transport.abort()
            return
        tls_transport = ssl_protocol._app_transport  # what loop.start_tls returns
        if tls_transport is None or buffer.lost:
            transport.abort()
            return
        conn = self.make_connection()
        tls_transport.set_protocol(conn)
        conn.connection_made(tls_transport)
        for chunk in buffer.chunks:
            conn.data_received(chunk)

    def _handshake_failed(self, peer: Any, exc: BaseException) -> None:
        stats = self.server.stats
        stats.tls_handshake_failures = getattr(stats, "tls_handshake_failures", 0) + 1
        addr = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.server.audit("tls-handshake-failure", None, addr=addr,
                          error=type(exc).__name__ + ": " + str(exc)[:200])
