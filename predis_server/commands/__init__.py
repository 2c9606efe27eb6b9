"""The command table: every family's rows merged into ``COMMANDS`` (name -> Command)."""
from __future__ import annotations

from . import acl, connection, hashes, keys, mlops, predict, pubsub, server, strings, transactions
from .table import Command

FAMILIES = (connection, strings, keys, hashes, transactions, pubsub, server, acl, predict, mlops)

COMMANDS: dict[str, Command] = {}
for _family in FAMILIES:
    for _cmd in _family.COMMANDS:
        if _cmd.name in COMMANDS:
            raise RuntimeError(f"command {_cmd.name} declared twice")
        COMMANDS[_cmd.name] = _cmd


def register(commands: list[Command]) -> None:
    """Add the commands of an extension package (models' PREDIS.* commands, ACL, ...)."""
    for cmd in commands:
        COMMANDS[cmd.name] = cmd
