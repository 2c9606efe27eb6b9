"""Per-connection state that commands read and change (db, RESP version, MULTI, subscriptions)."""
from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .keyspace import Database
    from .server import Server

_ids = itertools.count(1)


class Client:
    __slots__ = (
        "id", "server", "addr", "laddr", "name", "lib_name", "lib_ver", "db", "resp", "user",
        "authenticated", "multi", "multi_error", "watched", "watch_dirty", "channels", "patterns",
        "reply_mode", "created", "last_interaction", "last_command", "no_evict", "send", "close",
        "closing", "kind", "output", "paused_backlog", "no_touch", "plain",
    )

    def __init__(self, server: Server, addr: str, laddr: str, send: Any, close: Any,
                 kind: str = "tcp") -> None:
        self.id = next(_ids)
        self.server = server
        self.addr = addr
        self.laddr = laddr
        self.kind = kind
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.db: Database = server.keyspace.dbs[0]
        self.resp = 2
        self.user = "default"
        self.authenticated = not server.auth_required()
        self.multi: list[tuple[Any, list[bytes]]] | None = None
        self.multi_error = False
        self.watched: dict[tuple[int, bytes], bool] = {}
        self.watch_dirty = False
        self.channels: set[bytes] = set()
        self.patterns: set[bytes] = set()
        self.reply_mode = "on"  # on, off, skip
        self.created = time.time()
        self.last_interaction = self.created
        self.last_command = b"NULL"
        self.no_evict = False
        self.no_touch = False
        self.send = send  # callable(bytes): write out-of-band data (pub/sub messages)
        self.close = close  # callable(): close after pending replies are written
        self.closing = False
        self.output: list[bytes] = []
        self.paused_backlog: list[list[bytes]] | None = None
        self.plain = False
        self.update_plain()

    def update_plain(self) -> None:
        """``plain``: no mode of this connection asks its commands to take their own path
        (authenticated, no MULTI, replies on, no subscriptions, touching keys). The lone batch
        (lone_batch.py) reads this one flag per request instead of the six fields; whatever
        changes one of them (the connection's own commands: AUTH, HELLO, RESET, MULTI, EXEC,
        DISCARD, CLIENT REPLY / NO-TOUCH, (P)SUBSCRIBE and their UN-) calls this after."""
        self.plain = self.authenticated and self.multi is None and self.reply_mode == "on" \
            and not self.channels and not self.patterns and not self.no_touch

    @property
    def subscriptions(self) -> int:
        return len(self.channels) + len(self.patterns)

    @property
    def in_pubsub(self) -> bool:
        return bool(self.channels or self.patterns)
