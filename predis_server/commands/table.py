"""Commands declared as data: name, arity, flags, key positions, ACL categories, handler.

``COMMAND``, arity errors, key extraction and ACL checks are all derived from these
records. Families (strings, keys, hashes, ...) each build a list of ``Command`` and the
package ``__init__`` merges them into ``COMMANDS``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[Any, list[bytes]], Any]

# Flags that decide dispatch behaviour (Redis's CMD_* names).
WRITE, READONLY, DENYOOM, ADMIN, PUBSUB, NOSCRIPT, LOADING, STALE, FAST = (
    "write", "readonly", "denyoom", "admin", "pubsub", "noscript", "loading", "stale", "fast")
NO_AUTH, NO_MULTI, ALLOW_BUSY, MAY_REPLICATE, SKIP_SLOWLOG = (
    "no_auth", "no_multi", "allow_busy", "may_replicate", "skip_slowlog")


@dataclass(eq=False)
class Command:
    name: str
    handler: Handler | None
    arity: int
    flags: frozenset[str]
    first_key: int = 0
    last_key: int = 0
    step: int = 0
    categories: tuple[str, ...] = ()
    group: str = ""
    subcommands: dict[str, Command] = field(default_factory=dict)
    parent: Command | None = None

    def __post_init__(self) -> None:
        self.is_write = WRITE in self.flags
        self.denyoom = DENYOOM in self.flags
        self.no_auth = NO_AUTH in self.flags
        self.skip_slowlog = SKIP_SLOWLOG in self.flags
        self.allowed_in_pubsub = self.name in _PUBSUB_CONTEXT_COMMANDS
        self.full_name = self.name if self.parent is None else f"{self.parent.name}|{self.name}"
        # commandstats counters: calls, usec, rejected_calls, failed_calls
        self.calls = 0
        self.usec = 0
        self.rejected_calls = 0
        self.failed_calls = 0

    def arity_ok(self, argc: int) -> bool:
        return argc == self.arity if self.arity > 0 else argc >= -self.arity

    def key_positions(self, argc: int) -> list[int]:
        if self.first_key <= 0:
            return []
        last = self.last_key if self.last_key >= 0 else argc + self.last_key
        return list(range(self.first_key, min(last, argc - 1) + 1, max(self.step, 1)))

    def keys_of(self, argv: list[bytes]) -> list[bytes]:
        return [argv[i] for i in self.key_positions(len(argv))]

    def reset_stats(self) -> None:
        self.calls = self.usec = self.rejected_calls = self.failed_calls = 0
        for sub in self.subcommands.values():
            sub.reset_stats()


_PUBSUB_CONTEXT_COMMANDS = {"subscribe", "unsubscribe", "psubscribe", "punsubscribe",
                            "ssubscribe", "sunsubscribe", "ping", "quit", "reset"}


def command(name: str, handler: Handler | None, arity: int, flags: str = "",
            keys: tuple[int, int, int] = (0, 0, 0), acl: str = "", group: str = "",
            subcommands: list[Command] | None = None) -> Command:
    """Build a table row: ``command("get", get, 2, "readonly fast", (1, 1, 1), "@read @string")``."""
    cmd = Command(name=name, handler=handler, arity=arity, flags=frozenset(flags.split()),
                  first_key=keys[0], last_key=keys[1], step=keys[2],
                  categories=tuple(acl.split()), group=group)
    for sub in subcommands or ():
        sub.parent = cmd
        sub.full_name = f"{name}|{sub.name}"
        if not sub.group:
            sub.group = group
        cmd.subcommands[sub.name] = sub
    return cmd
