"""Server family: FLUSHDB FLUSHALL DBSIZE ... (INFO, CONFIG, COMMAND and the rest are being added).

https://redis.io/commands/?group=server
"""
from __future__ import annotations

from .. import errors
from ..errors import CommandError
from ..replies import OK
from .table import command


def _flush_mode(argv: list[bytes]) -> None:
    if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() not in (b"sync", b"async")):
        raise CommandError(errors.SYNTAX)


def flushdb(client, argv):
    _flush_mode(argv)
    client.db.flush()
    client.server.audit("flushdb", client)
    return OK


def flushall(client, argv):
    _flush_mode(argv)
    for db in client.server.keyspace.dbs:
        db.flush()
    client.server.audit("flushall", client)
    return OK


def dbsize(client, argv):
    return len(client.db)


COMMANDS = [
    command("flushdb", flushdb, -1, "write", acl="@keyspace @write @slow @dangerous", group="server"),
    command("flushall", flushall, -1, "write", acl="@keyspace @write @slow @dangerous", group="server"),
    command("dbsize", dbsize, 1, "readonly fast", acl="@keyspace @read @fast", group="server"),
]
