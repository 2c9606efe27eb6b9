"""Background services wired to the server at construction: ACL set-up, rename-command, TLS
listener, the Prometheus endpoint and the audit log.

``install_services(server)`` runs at the end of ``Server.__init__``; what needs the event loop
is attached to ``server.hooks["start"]`` / ``["shutdown"]`` so ``server.py`` stays free of it.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..server import Server

log = logging.getLogger("predis")


def install_services(server: Server) -> None:
    _install_acl(server)
    _apply_renames(server)
    from models.loop import install as install_mlops  # drift, registry, retrain, A/B, rollback

    install_mlops(server)
    hooks = server.hooks
    config = server.config
    if config.audit_log_file:
        from .audit import AuditLog

        audit = AuditLog(config.audit_log_file, config.audit_log_max_bytes, config.audit_log_fsync)
        server.audit_log = audit  # type: ignore[attr-defined]
        audit.start()
        hooks.setdefault("audit", []).append(audit.record)
        config.watch("audit-log-max-bytes", lambda value: setattr(audit, "max_bytes", value))
        config.watch("audit-log-fsync", lambda value: setattr(audit, "fsync", value))

        async def close_audit() -> None:
            audit.close()

        hooks.setdefault("shutdown", []).append(close_audit)
    if config.tls_port:
        _install_tls(server)
    if config.metrics_port:
        from .metrics import MetricsEndpoint

        endpoint = MetricsEndpoint(server)
        server.metrics = endpoint  # type: ignore[attr-defined]

        async def start_metrics() -> None:
            endpoint.start()

        async def stop_metrics() -> None:
            endpoint.stop()

        hooks.setdefault("start", []).append(start_metrics)
        hooks.setdefault("shutdown", []).append(stop_metrics)


def _install_acl(server: Server) -> None:
    config = server.config
    if config.aclfile:
        server.acl.load_file(config.aclfile)  # a broken aclfile stops start-up, as in Redis
    if config.requirepass:
        server.acl.set_requirepass(config.requirepass)
    config.watch("requirepass", server.acl.set_requirepass)


def _apply_renames(server: Server) -> None:
    """``rename-command CONFIG ""`` disables CONFIG; ``rename-command CONFIG cfg`` renames it."""
    table = server.executor.table
    for spec in server.config.rename_command:
        old, _, new = spec.partition(" ")
        new = new.strip().strip('"').strip("'")
        cmd = table.pop(old.strip().lower().encode(), None)
        if cmd is None:
            raise ValueError(f"rename-command: no such command {old!r}")
        if new:
            table[new.lower().encode()] = cmd


def _install_tls(server: Server) -> None:
    from tls import TLSAcceptor, TLSContextHolder

    from ..protocol.connection import Connection

    config = server.config
    holder = TLSContextHolder(config)  # bad certificates stop start-up with the reason
    server.tls = holder  # type: ignore[attr-defined]

    def reload(_value: object) -> None:
        from ..config import InvalidValue
        from tls.context import TLSConfigError

        try:
            holder.reload()
        except TLSConfigError as exc:
            raise InvalidValue(str(exc)) from None

    for name in TLSContextHolder.OPTIONS:
        config.watch(name, reload)

    async def start_tls_listeners() -> None:
        assert server.loop is not None
        for host in config.bind.split():
            optional = host.startswith("-")
            host = host.lstrip("-")
            try:
                listener = await server.loop.create_server(
                    lambda: TLSAcceptor(server, holder, lambda: Connection(server, "tcp")),
                    host, config.tls_port, backlog=config.tcp_backlog, reuse_address=True)
            except OSError as exc:
                if not optional:
                    raise
                log.warning("could not listen for TLS on %s:%s: %s", host, config.tls_port, exc)
                continue
            server.listeners.append(listener)

    server.hooks.setdefault("start", []).append(start_tls_listeners)


# A connection that fails AUTH is not read again for this long: a brute-force or a flood of
# bad passwords then costs the event loop ~10 requests a second per connection instead of
# as many as it can send, so other clients keep their throughput (bench/auth_flood.py).
FAILED_AUTH_PAUSE_S = 0.1


def throttle_failed_auth(server: Server, client: object) -> None:
    conn = server.connections.get(getattr(client, "id", -1))
    transport = getattr(conn, "transport", None)
    if conn is None or transport is None or server.loop is None or conn.reading_paused:
        return
    transport.pause_reading()
    conn.reading_paused = True

    def resume() -> None:
        if conn.reading_paused and not conn.writing_paused and not transport.is_closing():
            conn.reading_paused = False
            transport.resume_reading()

    server.loop.call_later(FAILED_AUTH_PAUSE_S, resume)
