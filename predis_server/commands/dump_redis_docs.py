"""Regenerate ``redis_docs.json`` (COMMAND DOCS text, key specs and tips) from a running Redis 7.

Usage: python -m predis_server.commands.dump_redis_docs [port]

COMMAND DOCS feeds redis-cli's interactive hints and COMMAND INFO's key specs feed cluster-aware
clients; both are Redis's own data, so they are copied from Redis rather than rewritten. Only the
commands (and subcommands) in Predis's table are kept. Flags, arity, key positions and ACL
categories are *not* copied: they come from Predis's table, the single source of truth.

The file keeps RESP3 types exactly: a JSON object is a map, ``{"~": [...]}`` a set,
``{"+": "text"}`` a simple string, a list an array, a string a bulk string.
"""
from __future__ import annotations

import json
import pathlib
import socket
import sys
from typing import Any

OUT = pathlib.Path(__file__).with_name("redis_docs.json")


class _Resp3Reader:
    """A tiny RESP3 reader that keeps the distinction between arrays, sets, maps and statuses."""

    def __init__(self, sock: socket.socket) -> None:
        self.file = sock.makefile("rb")

    def read(self) -> Any:
        line = self.file.readline()[:-2]
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return {"+": rest.decode()}
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"_":
            return None
        if kind in (b"$", b"="):
            data = self.file.read(int(rest) + 2)[:-2]
            return data[4:].decode() if kind == b"=" else data.decode()  # "txt:" of verbatim
        if kind == b"*":
            return [self.read() for _ in range(int(rest))]
        if kind == b"~":
            return {"~": [self.read() for _ in range(int(rest))]}
        if kind == b"%":
            pairs = [(self.read(), self.read()) for _ in range(int(rest))]
            return {k: v for k, v in pairs}
        raise ValueError(f"unexpected RESP3 type {line!r}")


def _call(sock: socket.socket, reader: _Resp3Reader, *args: str) -> Any:
    sock.sendall(b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args))
    return reader.read()


def _filter_subcommands(doc: dict, implemented: set[str]) -> dict:
    subs = doc.get("subcommands")
    if isinstance(subs, dict):
        doc = dict(doc)
        doc["subcommands"] = {name: d for name, d in subs.items() if name in implemented}
    return doc


def main() -> None:
    from . import COMMANDS

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 6379
    sock = socket.create_connection(("127.0.0.1", port))
    reader = _Resp3Reader(sock)
    _call(sock, reader, "HELLO", "3")
    implemented = {name for name in COMMANDS}
    for cmd in COMMANDS.values():
        implemented.update(sub.full_name for sub in cmd.subcommands.values())
    docs = _call(sock, reader, "COMMAND", "DOCS")
    info: dict[str, dict] = {}
    for entry in _call(sock, reader, "COMMAND"):
        rows = [entry] + (entry[9] if isinstance(entry[9], list) else [])
        for row in rows:
            if row[0] in implemented:
                info[row[0]] = {"tips": row[7], "key_specs": row[8]}
    kept = {name: _filter_subcommands(docs[name], implemented) for name in sorted(docs)
            if name in implemented}
    data = {"redis_version": _server_version(sock, reader), "docs": kept,
            "info": {name: info[name] for name in sorted(info)}}
    OUT.write_text(json.dumps(data, indent=None, separators=(",", ":")) + "\n")
    missing = sorted(implemented - set(info))
    print(f"wrote docs for {len(kept)} commands and info for {len(info)} rows to {OUT}")
    if missing:
        print("not in Redis (Predis-only or renamed):", " ".join(missing))


def _server_version(sock: socket.socket, reader: _Resp3Reader) -> str:
    text = _call(sock, reader, "INFO", "server")
    for line in text.splitlines():
        if line.startswith("redis_version:"):
            return line.split(":", 1)[1]
    return ""


if __name__ == "__main__":
    main()
