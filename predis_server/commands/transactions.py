"""Transactions: MULTI EXEC DISCARD WATCH UNWATCH.

https://redis.io/commands/?group=transactions

The executor queues commands while ``client.multi`` is a list and sets
``client.multi_error`` when a queued command is rejected (unknown, wrong arity, OOM).
WATCH registers the key with the keyspace, which sets ``client.watch_dirty`` on every
change (writes by any client, expiry, eviction, FLUSHDB/FLUSHALL, SWAPDB).
"""
from __future__ import annotations

from .. import errors
from ..errors import CommandError
from ..replies import NULL_ARRAY, OK, NoReply
from .table import command


def multi(client, argv):
    """https://redis.io/commands/multi"""
    if client.multi is not None:
        raise CommandError(errors.MULTI_NESTED)
    client.multi = []
    client.multi_error = False
    client.update_plain()
    return OK


def _end_transaction(client) -> None:
    client.multi = None
    client.multi_error = False
    client.update_plain()
    client.server.keyspace.unwatch_all(client)


def discard(client, argv):
    """https://redis.io/commands/discard"""
    if client.multi is None:
        raise CommandError(errors.DISCARD_WITHOUT_MULTI)
    _end_transaction(client)
    return OK


def exec_rejected(client, exc: CommandError) -> CommandError:
    """execCommandAbort: EXEC refused before running (arity, NOAUTH, ...) ends the transaction.

    Redis names the reason without the generic ``ERR`` code and keeps any other code
    (``NOAUTH ...``); it does so even outside MULTI, where the discard only unwatches.
    """
    _end_transaction(client)
    reason = exc.message.removeprefix("ERR ")
    return CommandError(f"EXECABORT Transaction discarded because of: {reason}")


def _watched_key_expired(client) -> bool:
    """isWatchedKeyExpired: a watched key that expired since WATCH aborts EXEC.

    Checking membership deletes a key found expired, and the keyspace's expiry hook marks
    its watchers dirty. Keys already expired when WATCH ran were purged by WATCH itself,
    so they count as absent, matching Redis's ``wk->expired`` exemption.
    """
    dbs = client.server.keyspace.dbs
    for db_id, key in list(client.watched):
        dbs[db_id].exists(key)
    return client.watch_dirty


def exec_(client, argv):
    """https://redis.io/commands/exec"""
    queued = client.multi
    if queued is None:
        raise CommandError(errors.EXEC_WITHOUT_MULTI)
    if client.multi_error:
        _end_transaction(client)
        raise CommandError(errors.EXECABORT)
    if client.watched and _watched_key_expired(client):
        _end_transaction(client)
        return NULL_ARRAY
    # Unwatch first, as Redis does: the transaction's own writes must not matter.
    _end_transaction(client)
    call = client.server.executor.call
    replies = []
    for cmd, cmd_argv in queued:
        reply = call(client, cmd, cmd_argv)
        if type(reply) is NoReply:
            reply = OK  # a reply-suppressing command still takes its place in the array
        replies.append(reply)
    return replies


def watch(client, argv):
    """https://redis.io/commands/watch"""
    if client.multi is not None:
        raise CommandError(errors.WATCH_IN_MULTI)
    keyspace = client.server.keyspace
    db = client.db
    for key in argv[1:]:
        if (db.id, key) in client.watched:
            continue
        db.exists(key)  # purge it now if already expired: that expiry is not a change
        keyspace.watch(client, db.id, key)
    return OK


def unwatch(client, argv):
    """https://redis.io/commands/unwatch"""
    client.server.keyspace.unwatch_all(client)
    return OK


_FLAGS = "noscript loading stale fast allow_busy"

COMMANDS = [
    command("multi", multi, 1, _FLAGS, acl="@fast @transaction", group="transactions"),
    command("exec", exec_, 1, "noscript loading stale skip_slowlog", acl="@slow @transaction",
            group="transactions"),
    command("discard", discard, 1, _FLAGS, acl="@fast @transaction", group="transactions"),
    command("watch", watch, -2, _FLAGS, (1, -1, 1), "@fast @transaction",
            "transactions"),
    command("unwatch", unwatch, 1, _FLAGS, acl="@fast @transaction", group="transactions"),
]
