"""The one option table: predis.conf, command-line flags, CONFIG GET/SET/REWRITE and docs.

Each option is declared once (name, type, default, mutable at runtime, help). Values are
held as attributes (``config.maxmemory``), with dashes as underscores, so the hot path
reads them as cheaply as any attribute.
"""
from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import CommandError

_MEMORY_UNITS = {
    "": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3,
}


class InvalidValue(ValueError):
    """A value that does not fit its option; the message is Redis's reason text."""


def parse_memory(text: str) -> int:
    match = re.fullmatch(r"(-?\d+)([a-zA-Z]*)", text.strip())
    if not match or match.group(2).lower() not in _MEMORY_UNITS:
        raise InvalidValue("argument must be a memory value")
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()]


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered == "yes":
        return True
    if lowered == "no":
        return False
    raise InvalidValue("argument must be 'yes' or 'no'")


@dataclass
class Option:
    name: str
    kind: str  # int, memory, bool, string, enum, float, list
    default: Any
    mutable: bool = True
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    aliases: tuple[str, ...] = ()
    sensitive: bool = False  # redacted in audit logs

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")

    def parse(self, raw: str) -> Any:
        if self.kind == "int":
            try:
                value: Any = int(raw)
            except ValueError:
                raise InvalidValue("argument couldn't be parsed into an integer") from None
        elif self.kind == "memory":
            value = parse_memory(raw)
        elif self.kind == "float":
            try:
                value = float(raw)
            except ValueError:
                raise InvalidValue("argument couldn't be parsed into a float") from None
        elif self.kind == "bool":
            return parse_bool(raw)
        elif self.kind == "enum":
            if raw.lower() not in self.choices:
                raise InvalidValue("argument(s) must be one of the following: " + ", ".join(self.choices))
            return raw.lower()
        else:
            return raw
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            raise InvalidValue(f"argument must be between {self.minimum:g} and {self.maximum:g} inclusive")
        return value

    def format(self, value: Any) -> str:
        if self.kind == "bool":
            return "yes" if value else "no"
        if self.kind == "float":
            return f"{value:g}"
        return str(value)


OPTIONS: list[Option] = [
    # network
    Option("bind", "string", "127.0.0.1 -::1", False, "Interfaces to listen on (space-separated)."),
    Option("port", "int", 6379, False, "TCP port; 0 disables plain TCP.", minimum=0, maximum=65535),
    Option("unixsocket", "string", "", False, "Path of a Unix socket to listen on as well."),
    Option("protected-mode", "bool", True, True,
           "Refuse non-loopback clients while the default user has no password."),
    Option("tcp-backlog", "int", 511, False, "listen() backlog.", minimum=0),
    Option("tcp-keepalive", "int", 300, True, "SO_KEEPALIVE interval in seconds (0 = off).", minimum=0),
    Option("timeout", "int", 0, True, "Close idle clients after this many seconds (0 = never).", minimum=0),
    Option("maxclients", "int", 10000, True, "Most clients connected at once.", minimum=1),
    # general
    Option("databases", "int", 16, False, "Number of databases.", minimum=1, maximum=2**31 - 1),
    Option("loglevel", "enum", "notice", True, "Log verbosity.",
           choices=("debug", "verbose", "notice", "warning", "nothing")),
    Option("logfile", "string", "", False, "Log file path; empty logs to standard output."),
    Option("dir", "string", ".", True, "Working directory for files the server writes."),
    Option("pidfile", "string", "", False, "Write the process id here."),
    Option("daemonize", "bool", False, False, "Accepted for redis.conf compatibility; always runs in the foreground."),
    Option("hz", "int", 10, True, "Background task frequency (active expiry cycles per second).",
           minimum=1, maximum=500),
    Option("requirepass", "string", "", True, "Password of the default user.", sensitive=True),
    # limits
    Option("proto-max-bulk-len", "memory", 512 * 1024 * 1024, True, "Largest bulk string in a request.",
           minimum=1024 * 1024),
    Option("client-query-buffer-limit", "memory", 1024**3, True, "Largest unparsed query buffer per client.",
           minimum=1024 * 1024),
    Option("client-output-buffer-limit", "string", "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
           True, "Output buffer limits per class: hard soft soft-seconds."),
    # memory
    Option("maxmemory", "memory", 0, True, "Memory limit for data (0 = none).", minimum=0),
    Option("maxmemory-policy", "enum", "noeviction", True, "What to evict at maxmemory.",
           choices=("noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru",
                    "volatile-lfu", "volatile-random", "volatile-ttl", "allkeys-predictive")),
    Option("maxmemory-samples", "int", 5, True, "Keys sampled per eviction.", minimum=1, maximum=64),
    Option("lfu-log-factor", "int", 10, True, "LFU counter logarithm factor.", minimum=0),
    Option("lfu-decay-time", "int", 1, True, "Minutes for the LFU counter to decay by one.", minimum=0),
    Option("active-expire-enabled", "bool", True, True, "Run the active expiry cycle."),
    Option("store-backend", "enum", "cpu", False, "Store backend: cpu (NumPy), gpu (CuPy) or auto.",
           choices=("auto", "cpu", "gpu")),
    Option("gpu-sync-interval", "int", 1000, True, "GPU store: ms its device copy may trail host writes "
           "(the periodic sync; every device read syncs first).", minimum=0),
    # diagnostics
    Option("slowlog-log-slower-than", "int", 10000, True, "Log commands slower than this (µs; <0 off).",
           minimum=-1),
    Option("slowlog-max-len", "int", 128, True, "Slow log length.", minimum=0),
    Option("latency-monitor-threshold", "int", 0, True, "Record events slower than this (ms; 0 off).",
           minimum=0),
    Option("notify-keyspace-events", "string", "", True, "Accepted for compatibility; events are not sent."),
    Option("enable-debug-command", "enum", "local", False,
           "Allow DEBUG: yes, no, or local (loopback and Unix-socket clients only; Redis's default is no).",
           choices=("no", "yes", "local")),
    # persistence (accepted so redis.conf files and exporters work; Predis is a cache)
    Option("save", "string", "", True, "Accepted for compatibility; Predis does not snapshot."),
    Option("appendonly", "bool", False, True, "Accepted for compatibility; always no."),
    Option("dbfilename", "string", "dump.rdb", True, "Accepted for compatibility."),
    # TLS (tls/context.py); certificates and protocol settings reload on CONFIG SET
    Option("tls-port", "int", 0, False, "TLS port; 0 disables TLS.", minimum=0, maximum=65535),
    Option("tls-cert-file", "string", "", True, "Server certificate (PEM)."),
    Option("tls-key-file", "string", "", True, "Server private key (PEM)."),
    Option("tls-key-file-pass", "string", "", True, "Passphrase of tls-key-file.", sensitive=True),
    Option("tls-ca-cert-file", "string", "", True, "CA bundle that client certificates must chain to."),
    Option("tls-ca-cert-dir", "string", "", True, "Directory of CA certificates (c_rehash layout)."),
    Option("tls-auth-clients", "enum", "yes", True, "Require client certificates: yes, no or optional.",
           choices=("yes", "no", "optional")),
    Option("tls-protocols", "string", "TLSv1.2 TLSv1.3", True, "Allowed TLS versions (space-separated)."),
    Option("tls-ciphers", "string", "", True, "OpenSSL cipher list for TLSv1.2 and below."),
    Option("tls-ciphersuites", "string", "", True, "TLSv1.3 cipher suites (ignored: Python sets its own)."),
    Option("tls-prefer-server-ciphers", "bool", False, True, "Prefer the server's cipher order."),
    # operations (predis_server/services/)
    Option("metrics-port", "int", 0, False, "Prometheus /metrics HTTP port; 0 disables it.",
           minimum=0, maximum=65535),
    Option("metrics-bind", "string", "127.0.0.1", False, "Address the /metrics listener binds to."),
    Option("audit-log-file", "string", "", False, "Audit log path (JSON lines); empty disables it."),
    Option("audit-log-max-bytes", "memory", 100 * 1024 * 1024, True,
           "Rotate the audit log when it reaches this size (0 = never).", minimum=0),
    Option("audit-log-fsync", "enum", "everysec", True, "fsync the audit log: always, everysec or no.",
           choices=("always", "everysec", "no")),
    Option("aclfile", "string", "", False, "File of ACL users (ACL LOAD/SAVE)."),
    Option("rename-command", "list", (), False,
           'Rename or disable a command: rename-command CONFIG "" (repeatable).'),
    # read-through origin, access collector, prefetching (predis_server/readthrough.py, models/)
    Option("origin", "string", "", True,
           "Read-through origin: sqlite:///path.db, file:///dir or redis://host:port[/db] "
           "(+ ?delay_ms=N to inject latency); empty = none (plain Redis behaviour)."),
    Option("origin-ttl", "int", 0, True, "TTL in seconds of values loaded from the origin (0 = none).",
           minimum=0),
    Option("origin-timeout", "int", 1000, True, "Origin read timeout in ms.", minimum=1),
    Option("origin-error-reply", "enum", "error", True,
           "On an origin failure answer -ERR origin ... (error) or a nil (nil).", choices=("error", "nil")),
    Option("prefetch-enabled", "bool", False, True, "Prefetch keys the model predicts (needs an origin)."),
    Option("prefetch-threshold", "float", 0.5, True, "Least predicted probability worth a prefetch.",
           minimum=0, maximum=1),
    Option("prefetch-max-inflight", "int", 64, True, "Most prefetch loads in flight at once.", minimum=0),
    Option("prefetch-memory-share", "float", 0.2, True,
           "Most of maxmemory that unread prefetched entries may hold.", minimum=0, maximum=1),
    Option("models-dir", "string", "", True,
           "Directory of versioned model directories; the newest valid one is served and watched."),
    Option("collector-sampling", "float", 0.01, True,
           "Share of time the access collector records (time windows; 0 = off, 1 = every access).",
           minimum=0, maximum=1),
    Option("collector-buffer-events", "int", 1_000_000, False, "Ring buffer size of the access collector.",
           minimum=16),
    Option("collector-export-dir", "string", "", True,
           "Directory for the collector's NPZ segments (training data); empty = no export."),
    Option("collector-export-max-bytes", "memory", 256 * 1024 * 1024, True,
           "Oldest segments are deleted beyond this total size.", minimum=0),
    # MLOps loop: drift, registry, retraining, A/B, rollback, tenants (models/loop.py)
    Option("drift-check-interval", "float", 60.0, True, "Seconds between drift checks (0 = no background checks).",
           minimum=0),
    Option("drift-ks-pvalue", "float", 0.01, True,
           "Significance level of the per-feature KS tests after Holm correction.", minimum=0, maximum=1),
    Option("drift-psi-warn", "float", 0.1, True, "PSI (or relative outcome drop) that raises a drift warning.",
           minimum=0),
    Option("drift-psi-alarm", "float", 0.25, True, "PSI (or relative outcome drop) that raises a drift alarm.",
           minimum=0),
    Option("drift-min-samples", "int", 2000, True, "Feature rows needed on each side before drift is judged.",
           minimum=1),
    Option("drift-webhook-url", "string", "", True, "POST drift alerts as JSON here (empty = no webhook)."),
    Option("mlflow-tracking-uri", "string", "", False,
           "MLflow tracking server; empty = embedded SQLite + artifacts under dir/mlflow."),
    Option("model-rollback-margin", "float", 0.1, True,
           "Relative drop of hit ratio or precision after a promotion that rolls the model back.",
           minimum=0, maximum=1),
    Option("ab-share", "float", 0.1, True, "Share of keys the challenger serves during an A/B test.",
           minimum=0, maximum=1),
    Option("ab-min-samples", "int", 5000, True, "Lookups per arm between two looks of the A/B test.", minimum=1),
    Option("tenant-mode", "enum", "user", True, "Tenants are ACL users (user) or key prefixes (prefix).",
           choices=("user", "prefix")),
    Option("retrain-schedule", "int", 0, True, "Retrain every this many seconds (0 = only on alarm or command).",
           minimum=0),
    Option("drift-window-events", "int", 20_000, True,
           "Collector events in the drift check's current window (and in a retrained model's reference).",
           minimum=100),
    Option("model-watch-min-lookups", "int", 2000, True,
           "Lookups after a promotion before the rollback watch judges the new model.", minimum=1),
    Option("tenant-min-events", "int", 50_000, True,
           "Collected events a tenant needs before it gets its own fine-tuned model.", minimum=1),
    Option("retrain-half-life", "float", 3600.0, True,
           "Seconds of age that halve a training row's weight when retraining (recent traffic counts more).",
           minimum=0),
    Option("prefetch-stream-floor", "int", 0, True,
           "Streams that continued this many times are prefetched whatever the model scores "
           "(heuristic floor for scans absent from the training data; 0 = the model decides).", minimum=0),
    Option("prefetch-precision-floor", "float", 0.5, True,
           "Least share of recent prefetches read: below it the prefetcher raises its threshold, "
           "then pauses issuing (probing now and then) until its precision recovers (0 = never throttle).",
           minimum=0, maximum=1),
]

_BY_NAME: dict[str, Option] = {}
for _option in OPTIONS:
    _BY_NAME[_option.name] = _option
    for _alias in _option.aliases:
        _BY_NAME[_alias] = _option


def register(option: Option) -> None:
    """Add an option declared by another package (origins, TLS, models...)."""
    OPTIONS.append(option)
    _BY_NAME[option.name] = option
    for alias in option.aliases:
        _BY_NAME[alias] = option


def find_option(name: str) -> Option | None:
    return _BY_NAME.get(name.lower())


@dataclass
class Config:
    """Current values; ``set`` validates and notifies watchers (e.g. the store on policy change)."""

    path: str | None = None
    _watchers: dict[str, list[Callable[[Any], None]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for option in OPTIONS:
            setattr(self, option.attr, option.default)

    def get(self, name: str) -> Any:
        option = find_option(name)
        if option is None:
            raise KeyError(name)
        return getattr(self, option.attr)

    def set(self, name: str, raw: str, startup: bool = False) -> None:
        option = find_option(name)
        if option is None:
            raise KeyError(name)
        if not startup and not option.mutable:
            raise InvalidValue("can't set immutable config")
        value = option.parse(raw)
        if option.kind == "list":  # repeatable directives (rename-command) accumulate
            value = (*getattr(self, option.attr), value)
        setattr(self, option.attr, value)
        for watcher in self._watchers.get(option.name, ()):
            watcher(value)

    def watch(self, name: str, callback: Callable[[Any], None]) -> None:
        self._watchers.setdefault(name, []).append(callback)

    def matching(self, pattern: str) -> list[tuple[str, str]]:
        pattern = pattern.lower()
        return [(o.name, o.format(getattr(self, o.attr)))
                for o in OPTIONS if fnmatch.fnmatchcase(o.name, pattern)]

    def formatted(self, name: str) -> str:
        option = find_option(name)
        assert option is not None
        return option.format(getattr(self, option.attr))

    # -- files and command lines ----------------------------------------------------------
    def load_file(self, path: str) -> None:
        self.path = os.path.abspath(path)
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                self._apply_line(line, f"{path}:{number}")

    def load_args(self, args: list[str]) -> None:
        """``--port 7000 --save ""`` style flags, as redis-server takes them."""
        words: list[str] = []
        for arg in args:
            if arg.startswith("--"):
                if words:
                    self._apply_words(words, "command line")
                words = [arg[2:]]
            else:
                if not words:
                    raise InvalidValue(f"unexpected argument {arg!r}")
                words.append(arg)
        if words:
            self._apply_words(words, "command line")

    def _apply_line(self, line: str, where: str) -> None:
        words = _split_conf_line(line)
        if words:
            self._apply_words(words, where)

    def _apply_words(self, words: list[str], where: str) -> None:
        name, values = words[0].lower(), words[1:]
        option = find_option(name)
        if option is None:
            raise InvalidValue(f"{where}: Bad directive or wrong number of arguments: {name}")
        try:
            self.set(option.name, " ".join(values), startup=True)
        except InvalidValue as exc:
            raise InvalidValue(f"{where}: {name}: {exc}") from None

    def rewrite(self) -> None:
        """CONFIG REWRITE: keep the file's comments and order, update changed values."""
        if not self.path:
            raise CommandError("ERR The server is running without a config file")
        with open(self.path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
        seen: set[str] = set()
        out: list[str] = []
        for line in lines:
            words = _split_conf_line(line)
            option = find_option(words[0]) if words else None
            if option is None:
                out.append(line)
                continue
            if option.name in seen:
                continue
            seen.add(option.name)
            out.append(f"{option.name} {_quote(option.format(getattr(self, option.attr)))}")
        changed = [o for o in OPTIONS if o.name not in seen
                   and getattr(self, o.attr) != o.default]
        if changed:
            out.append("# Generated by CONFIG REWRITE")
            out.extend(f"{o.name} {_quote(o.format(getattr(self, o.attr)))}" for o in changed)
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write("\n".join(out) + "\n")
        os.replace(tmp, self.path)


def example_conf() -> str:
    """conf/predis.conf: every option in the table, documented, set to its default.

    Generated from ``OPTIONS`` so the example can never fall behind the table (a test checks
    that the file in the repository is exactly this text).
    """
    out = [
        "# Predis configuration file (redis.conf syntax: one 'directive value' per line).",
        "#",
        "# Start the server with it:   predis-server conf/predis.conf",
        "# Command-line flags override the file:   predis-server conf/predis.conf --port 7000",
        "# CONFIG SET changes options marked 'runtime: yes' while the server runs, and",
        "# CONFIG REWRITE writes them back here, keeping comments and order.",
        "#",
        "# Memory values accept units: 1k = 1000 bytes, 1kb = 1024 bytes, likewise m/mb, g/gb.",
        "#",
        "# This file is generated from predis_server/config.py (OPTIONS):",
        "#   python -m predis_server --example-conf > conf/predis.conf",
        "",
    ]
    for option in OPTIONS:
        out.append(f"# {option.help}")
        details = [f"type: {option.kind}", f"runtime: {'yes' if option.mutable else 'no'}"]
        if option.choices:
            details.append("one of: " + ", ".join(option.choices))
        if option.minimum is not None or option.maximum is not None:
            low = "" if option.minimum is None else f"{option.minimum:g}"
            high = "" if option.maximum is None else f"{option.maximum:g}"
            details.append(f"range: {low}..{high}")
        out.append("# " + "; ".join(details))
        if option.kind == "list":  # repeatable; empty by default, so shown as an example
            out.append(f"# {option.name} <value>")
        else:
            out.append(f"{option.name} {_quote(option.format(option.default))}")
        out.append("")
    return "\n".join(out)


def _quote(text: str) -> str:
    if text == "" or any(c in text for c in ' "\'\\'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _split_conf_line(line: str) -> list[str]:
    from .protocol.parser import split_inline_args

    line = line.strip()
    if not line or line.startswith("#"):
        return []
    return [w.decode("utf-8") for w in split_inline_args(line.encode("utf-8"))]
