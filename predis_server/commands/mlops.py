"""The MLOps loop's commands: PREDIS.DRIFT STATUS|CHECK and PREDIS.MLOPS STATUS|RETRAIN|PROMOTE|ROLLBACK.

RETRAIN, PROMOTE and ROLLBACK are meant to live under PREDIS.MODEL (``predict.py`` owns that
row): ``MODEL_SUBCOMMANDS`` is listed under it too; the same handlers also
answer as PREDIS.MLOPS subcommands. Handlers only parse and reply; the work is in
``models.loop.MLOpsLoop``.
"""
from __future__ import annotations

import json

from ..errors import CommandError
from .table import command


def _loop(client):
    loop = getattr(client.server, "mlops", None)
    if loop is None:
        raise CommandError("ERR the MLOps loop is not running")
    return loop


def drift_status(client, argv):
    """PREDIS.DRIFT STATUS: the last drift report as JSON (level, per-test PSI and p-values)."""
    loop = _loop(client)
    last = loop.drift.last
    body = last.to_dict() if last is not None else {"level": "none"}
    body.update(checks=loop.drift.checks, warnings=loop.drift.warnings, alarms=loop.drift.alarms,
                model_version=loop.drift.model_version)
    return json.dumps(body, default=str).encode()


def drift_check(client, argv):
    """PREDIS.DRIFT CHECK: run one check now (blocks this client while it runs); returns the level."""
    report = _loop(client).drift.check_now()
    return (report.level if report is not None else "none").encode()


def mlops_status(client, argv):
    return json.dumps(_loop(client).status(), default=str).encode()


def model_retrain(client, argv):
    """PREDIS.MODEL RETRAIN: start training a challenger from the collector's segments."""
    try:
        out = _loop(client).retrain("command")
    except ValueError as exc:
        raise CommandError(f"ERR {exc}") from None
    return out.encode()


def model_promote(client, argv):
    """PREDIS.MODEL PROMOTE version: make a registered version the champion (hot reload)."""
    try:
        return _loop(client).promote(argv[2].decode(), by="command").encode()
    except (ValueError, RuntimeError) as exc:
        raise CommandError(f"ERR {exc}") from None


def model_rollback(client, argv):
    """PREDIS.MODEL ROLLBACK: the previous champion serves again (hot reload, audited)."""
    try:
        bad, restored = _loop(client).rollback("by hand", by="command")
    except (ValueError, RuntimeError) as exc:
        raise CommandError(f"ERR {exc}") from None
    return f"rolled back v{bad} -> v{restored}".encode()


_FLAGS = "admin noscript"
MODEL_SUBCOMMANDS = [
    command("retrain", model_retrain, 2, _FLAGS, acl="@admin @slow"),
    command("promote", model_promote, 3, _FLAGS, acl="@admin @slow"),
    command("rollback", model_rollback, 2, _FLAGS, acl="@admin @slow"),
]
COMMANDS = [
    command("predis.drift", None, -2, "", acl="@slow", group="predis", subcommands=[
        command("status", drift_status, 2, "loading stale", acl="@slow"),
        command("check", drift_check, 2, _FLAGS, acl="@admin @slow"),
    ]),
    command("predis.mlops", None, -2, "", acl="@slow", group="predis", subcommands=[
        command("status", mlops_status, 2, "loading stale", acl="@slow"),
        command("retrain", model_retrain, 2, _FLAGS, acl="@admin @slow"),
        command("promote", model_promote, 3, _FLAGS, acl="@admin @slow"),
        command("rollback", model_rollback, 2, _FLAGS, acl="@admin @slow"),
    ]),
]
