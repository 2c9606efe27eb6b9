"""Users, hashed passwords, command categories, key and channel patterns (Redis 7 ACLs).

A user is a record of rules; ``apply`` runs ``ACL SETUSER`` modifiers on it exactly as
Redis parses them, and the rules are kept in the written order (Redis 7's
``command_rules``) so ``ACL LIST``/``GETUSER`` show what was set. Permission checks are
set lookups on the command's full name: the executor skips them entirely while every
user is all-permissive, so the hot path pays nothing until a restricted user exists.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import CommandError
from .glob import glob_match

if TYPE_CHECKING:
    from .commands.table import Command

# Redis's ACLCommandCategories, in its order (ACL CAT lists them like this).
CATEGORIES = ("keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap",
              "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking",
              "dangerous", "connection", "transaction", "scripting")

# Commands whose arguments are channels (the rest of the table only has keys).
_CHANNEL_ARGS = {"publish": (1, 2), "spublish": (1, 2), "subscribe": (1, None),
                 "ssubscribe": (1, None), "psubscribe": (1, None)}
# Redis 7.0.15's wording (7.2 changed it to "User <name> has no permissions ...").
NOPERM = {
    "command": "NOPERM this user has no permissions to run the '{}' command",
    "key": "NOPERM this user has no permissions to access one of the keys used as arguments",
    "channel": "NOPERM this user has no permissions to access one of the channels used as arguments",
}
ACL_LOG_MAX = 128
ACL_LOG_GROUP_MS = 60_000


class ACLError(ValueError):
    """A SETUSER modifier Redis refuses; the message is its reason text."""


def hash_password(password: bytes) -> str:
    return hashlib.sha256(password).hexdigest()


@dataclass
class User:
    name: str
    enabled: bool = False
    nopass: bool = False
    sanitize_payload: str = ""  # "", "sanitize-payload" or "skip-sanitize-payload"
    passwords: list[str] = field(default_factory=list)
    allcommands: bool = False  # set by +@all: commands added later are allowed too
    command_rules: list[str] = field(default_factory=list)
    first_args: dict[str, list[str]] = field(default_factory=dict)
    allowed: set[str] = field(default_factory=set)  # full names ("get", "config|get")
    allkeys: bool = False
    key_patterns: list[tuple[str, bytes]] = field(default_factory=list)  # ("RW"|"R"|"W", glob)
    allchannels: bool = False
    channel_patterns: list[bytes] = field(default_factory=list)

    @property
    def unrestricted(self) -> bool:
        """May run anything on any key and channel: the executor skips the check entirely."""
        return self.allcommands and self.allkeys and self.allchannels and not self._denied_any

    _denied_any: bool = False

    # -- describing ---------------------------------------------------------------------
    def flags(self) -> list[str]:
        out = ["on" if self.enabled else "off"]
        if self.nopass:
            out.append("nopass")
        if self.sanitize_payload:
            out.append(self.sanitize_payload)
        return out

    def describe_commands(self) -> str:
        rules = ["+@all" if self.allcommands else "-@all", *self.command_rules]
        for name, args in self.first_args.items():
            rules.extend(f"+{name}|{arg}" for arg in args)
        return " ".join(rules)

    def describe_keys(self) -> str:
        if self.allkeys:
            return "~*"
        return " ".join(("~" if flags == "RW" else f"%{flags}~") + pattern.decode("utf-8", "replace")
                        for flags, pattern in self.key_patterns)

    def describe_channels(self) -> str:
        if self.allchannels:
            return "&*"
        return " ".join("&" + p.decode("utf-8", "replace") for p in self.channel_patterns)

    def describe(self) -> str:
        """One ``ACL LIST`` / aclfile line."""
        parts = ["user", self.name, *self.flags()]
        parts.extend("#" + h for h in self.passwords)
        keys = self.describe_keys()
        if keys:
            parts.append(keys)
        if not self.allchannels:
            parts.append("resetchannels")
        channels = self.describe_channels()
        if channels:
            parts.append(channels)
        parts.append(self.describe_commands())
        return " ".join(parts)

    # -- checks -------------------------------------------------------------------------
    def check_password(self, password: bytes) -> bool:
        """Constant time in the password: every stored hash is compared, no early exit."""
        if not self.enabled:
            return False
        if self.nopass:
            return True
        digest = hash_password(password)
        matched = False
        for stored in self.passwords:
            matched |= hmac.compare_digest(digest, stored)
        return matched

    def can_run(self, cmd: Command, argv: list[bytes]) -> bool:
        if cmd.full_name in self.allowed:
            return True
        allowed_args = self.first_args.get(cmd.full_name)
        if allowed_args and len(argv) > 1 + (cmd.parent is not None):
            return argv[1 + (cmd.parent is not None)].decode("utf-8", "replace").lower() in allowed_args
        return False

    def can_access_key(self, key: bytes, write: bool) -> bool:
        if self.allkeys:
            return True
        need = "W" if write else "R"
        for flags, pattern in self.key_patterns:
            if need in flags and glob_match(pattern, key):
                return True
        return False

    def can_access_channel(self, channel: bytes, is_pattern: bool) -> bool:
        if self.allchannels:
            return True
        for pattern in self.channel_patterns:
            # A PSUBSCRIBE pattern must be granted literally, as in Redis.
            if (pattern == channel) if is_pattern else glob_match(pattern, channel):
                return True
        return False


class AccessControl:
    """The user table, the ACL log and the permission check the executor calls."""

    def __init__(self, commands: dict[str, Command], stats: Any = None) -> None:
        self.commands = commands
        self.stats = stats
        self.users: dict[str, User] = {}
        self.log: deque[dict[str, Any]] = deque()
        self.enforcing = False
        default = User("default")
        self.apply(default, ["on", "nopass", "~*", "&*", "+@all"])
        self.users["default"] = default
        self._refresh()

    # -- the user table -----------------------------------------------------------------
    def _refresh(self) -> None:
        self.enforcing = any(not u.unrestricted for u in self.users.values())

    def default_user(self) -> User:
        return self.users["default"]

    def auth_required(self) -> bool:
        """New connections start authenticated only as an enabled ``nopass`` default user."""
        default = self.users["default"]
        return not (default.enabled and default.nopass)

    def has_users(self) -> bool:
        return len(self.users) > 1

    def set_requirepass(self, password: str) -> None:
        default = self.users["default"]
        self.apply(default, ["resetpass", f">{password}"] if password else ["nopass"])
        self._refresh()

    def setuser(self, name: str, modifiers: list[str]) -> None:
        """ACL SETUSER: all modifiers apply to a copy, which replaces the user only if all parse."""
        current = self.users.get(name)
        user = copy.deepcopy(current) if current is not None else self._new_user(name)
        for modifier in modifiers:
            try:
                self.apply(user, [modifier])
            except ACLError as exc:
                raise ACLError(f"Error in ACL SETUSER modifier '{modifier}': {exc}") from None
        self.users[name] = user
        self._refresh()

    @staticmethod
    def _new_user(name: str) -> User:
        return User(name)  # off, no passwords, -@all, resetchannels (acl-pubsub-default)

    def deluser(self, name: str) -> bool:
        removed = self.users.pop(name, None) is not None
        self._refresh()
        return removed

    def authenticate(self, name: str, password: bytes) -> bool:
        user = self.users.get(name)
        if user is None:
            hash_password(password)  # same work either way: no user-existence timing signal
            return False
        return user.check_password(password)

    # -- applying rules -----------------------------------------------------------------
    def apply(self, user: User, modifiers: list[str]) -> None:
        for op in modifiers:
            self._apply_one(user, op)
        user._denied_any = bool(user.allcommands and self._denied_by_rules(user))

    def _apply_one(self, user: User, op: str) -> None:
        low = op.lower()
        if low == "on":
            user.enabled = True
        elif low == "off":
            user.enabled = False
        elif low == "nopass":
            user.nopass = True
            user.passwords.clear()
        elif low == "resetpass":
            user.nopass = False
            user.passwords.clear()
        elif low in ("sanitize-payload", "skip-sanitize-payload"):
            user.sanitize_payload = low
        elif low in ("allkeys",) or op == "~*":
            user.allkeys = True
            user.key_patterns.clear()
        elif low == "resetkeys":
            user.allkeys = False
            user.key_patterns.clear()
        elif low == "allchannels" or op == "&*":
            user.allchannels = True
            user.channel_patterns.clear()
        elif low == "resetchannels":
            user.allchannels = False
            user.channel_patterns.clear()
        elif low in ("allcommands", "+@all"):
            user.allcommands = True
            user.command_rules.clear()
            user.first_args.clear()
            user.allowed = self._all_names()
        elif low in ("nocommands", "-@all"):
            user.allcommands = False
            user.command_rules.clear()
            user.first_args.clear()
            user.allowed = set()
        elif low == "reset":
            for part in ("resetpass", "resetkeys", "resetchannels", "off", "-@all", "sanitize-payload"):
                self._apply_one(user, part)
        elif op.startswith(">"):
            digest = hash_password(op[1:].encode("utf-8", "surrogateescape"))
            if digest not in user.passwords:
                user.passwords.append(digest)
            user.nopass = False
        elif op.startswith("#"):
            digest = op[1:]
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ACLError("The password hash must be exactly 64 characters and contain only "
                               "lowercase hexadecimal characters")
            if digest not in user.passwords:
                user.passwords.append(digest)
            user.nopass = False
        elif op.startswith("<") or op.startswith("!"):
            digest = hash_password(op[1:].encode()) if op[0] == "<" else op[1:]
            if digest not in user.passwords:
                raise ACLError("no such user password")  # Redis: errno ENODEV
            user.passwords.remove(digest)
        elif op.startswith("~") or op.startswith("%"):
            self._add_key_pattern(user, op)
        elif op.startswith("&"):
            if user.allchannels:
                raise ACLError("Adding a pattern after the * pattern (or the 'allchannels' flag) is not "
                               "valid and does not have any effect. Try 'resetchannels' to start with an "
                               "empty list of channels")
            pattern = op[1:].encode()
            if pattern not in user.channel_patterns:
                user.channel_patterns.append(pattern)
        elif op[:1] in ("+", "-"):
            self._command_rule(user, op[0] == "+", low[1:])
        else:
            raise ACLError("Syntax error")

    def _add_key_pattern(self, user: User, op: str) -> None:
        if op.startswith("%"):
            flags, sep, pattern = op[1:].partition("~")
            flags = flags.upper()
            if not sep or not flags or any(c not in "RW" for c in flags):
                raise ACLError("Syntax error")
            flags = "RW" if ("R" in flags and "W" in flags) else flags
        else:
            flags, pattern = "RW", op[1:]
        if user.allkeys:
            raise ACLError("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid "
                           "and does not have any effect. Try 'resetkeys' to start with an empty list "
                           "of patterns")
        if pattern == "*" and flags == "RW":
            user.allkeys = True
            user.key_patterns.clear()
            return
        entry = (flags, pattern.encode())
        if entry not in user.key_patterns:
            user.key_patterns.append(entry)

    def _command_rule(self, user: User, allow: bool, name: str) -> None:
        if name.startswith("@"):
            category = name[1:]
            members = self.category_members(category)
            if category not in CATEGORIES:
                raise ACLError("Unknown command or category name in ACL")
            # A category subsumes earlier single-command rules for its commands (Redis 7.0).
            member_rules = {m for m in members}
            user.command_rules = [r for r in user.command_rules if r[1:] not in member_rules]
            self._record_rule(user, ("+" if allow else "-") + name)
            names = members
        else:
            cmd = self._lookup(name)
            if cmd is None:
                parent_name, _, first_arg = name.partition("|")
                parent = self.commands.get(parent_name)
                if allow and parent is not None and first_arg and not parent.subcommands:
                    args = user.first_args.setdefault(parent_name, [])
                    if first_arg not in args:
                        args.append(first_arg)
                    return
                raise ACLError("Unknown command or category name in ACL")
            names = {cmd.full_name, *(s.full_name for s in cmd.subcommands.values())}
            self._record_rule(user, ("+" if allow else "-") + name)
            for n in names:
                user.first_args.pop(n, None)
        if allow:
            user.allowed |= names
        else:
            user.allowed -= names

    @staticmethod
    def _record_rule(user: User, rule: str) -> None:
        user.command_rules = [r for r in user.command_rules if r[1:] != rule[1:]]
        user.command_rules.append(rule)

    def _denied_by_rules(self, user: User) -> bool:
        return bool(self._all_names() - user.allowed)

    def _lookup(self, name: str) -> Command | None:
        parent_name, _, sub = name.partition("|")
        cmd = self.commands.get(parent_name)
        if cmd is None or not sub:
            return cmd
        return cmd.subcommands.get(sub)

    def _all_names(self) -> set[str]:
        names: set[str] = set()
        for cmd in self.commands.values():
            names.add(cmd.full_name)
            names.update(s.full_name for s in cmd.subcommands.values())
        return names

    def category_members(self, category: str) -> set[str]:
        tag = "@" + category
        out: set[str] = set()
        for cmd in self.commands.values():
            if tag in cmd.categories:
                out.add(cmd.full_name)
            out.update(s.full_name for s in cmd.subcommands.values() if tag in s.categories)
        return out

    # -- the executor's check -----------------------------------------------------------
    def check(self, user_name: str, cmd: Command, argv: list[bytes]) -> tuple[str, bytes] | None:
        """None when allowed, else (reason, object) with reason command/key/channel."""
        user = self.users.get(user_name)
        if user is None:
            return ("command", cmd.full_name.encode())
        if user.unrestricted or cmd.no_auth:  # AUTH, HELLO, QUIT, RESET: always allowed
            return None
        if not user.can_run(cmd, argv):
            return ("command", cmd.full_name.encode())
        if not user.allkeys and cmd.first_key > 0:
            write = cmd.is_write
            for key in cmd.keys_of(argv):
                if not user.can_access_key(key, write):
                    return ("key", key)
        if not user.allchannels and cmd.name in _CHANNEL_ARGS:
            start, stop = _CHANNEL_ARGS[cmd.name]
            for channel in argv[start:stop]:
                if not user.can_access_channel(channel, cmd.name == "psubscribe"):
                    return ("channel", channel)
        return None

    def deny(self, client: Any, cmd: Command, argv: list[bytes]) -> CommandError | None:
        """The executor's one call: the NOPERM error (counted and logged) or None."""
        denied = self.check(client.user, cmd, argv)
        if denied is None:
            return None
        reason, obj = denied
        if self.stats is not None:
            counter = f"acl_access_denied_{'cmd' if reason == 'command' else reason}"
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        from .commands.connection import client_info_line

        self.add_log(reason, obj, client.user, client_info_line(client))
        return CommandError(NOPERM[reason].format(cmd.full_name))

    # -- ACL LOG ------------------------------------------------------------------------
    def add_log(self, reason: str, obj: bytes, username: str, client_info: bytes,
                context: str = "toplevel") -> None:
        now = int(time.time() * 1000)
        for entry in self.log:
            if (entry["reason"], entry["context"], entry["object"], entry["username"]) == (
                    reason, context, obj, username) and now - entry["ctime"] < ACL_LOG_GROUP_MS:
                self.log.remove(entry)
                entry.update(count=entry["count"] + 1, ctime=now, client_info=client_info)
                self.log.appendleft(entry)
                return
        self.log.appendleft({"count": 1, "reason": reason, "context": context, "object": obj,
                             "username": username, "ctime": now, "client_info": client_info})
        while len(self.log) > ACL_LOG_MAX:
            self.log.pop()

    # -- aclfile ------------------------------------------------------------------------
    def load_file(self, path: str) -> None:
        """ACL LOAD: every line must parse or nothing changes (Redis's all-or-nothing load)."""
        staged: dict[str, User] = {}
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                words = line.split()
                if not words or words[0].startswith("#"):
                    continue
                if words[0] != "user" or len(words) < 2:
                    raise ACLError(f"{path}:{number}: line should start with user keyword")
                name = words[1]
                if name in staged:
                    raise ACLError(f"{path}:{number}: Duplicate user '{name}' found")
                user = self._new_user(name)
                for op in words[2:]:
                    try:
                        self._apply_one(user, op)
                    except ACLError as exc:
                        raise ACLError(f"{path}:{number}: {exc}. ") from None
                user._denied_any = bool(user.allcommands and self._denied_by_rules(user))
                staged[name] = user
        if "default" not in staged:
            default = User("default")
            self.apply(default, ["on", "nopass", "~*", "&*", "+@all"])
            staged["default"] = default
        self.users = staged
        self._refresh()

    def save_file(self, path: str) -> None:
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as handle:
            for name in sorted(self.users):
                handle.write(self.users[name].describe() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
