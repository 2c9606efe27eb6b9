"""Regenerate ``redis_docs.json`` (COMMAND DOCS text) from a running Redis 7 server.

Usage: python -m predis_server.commands.dump_redis_docs [port]

COMMAND DOCS feeds redis-cli's interactive hints; the text (summaries, argument specs)
is Redis's own documentation, so it is copied from Redis rather than rewritten.
Only the commands in Predis's table are kept.
"""
from __future__ import annotations

import json
import pathlib
import sys

import redis

OUT = pathlib.Path(__file__).with_name("redis_docs.json")


def _plain(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return value


def main() -> None:
    from . import COMMANDS

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 6379
    client = redis.Redis(port=port, protocol=3)
    docs = _plain(client.execute_command("COMMAND", "DOCS"))
    assert isinstance(docs, dict)
    wanted = {name for name in COMMANDS}
    kept = {name: docs[name] for name in sorted(docs) if name in wanted}
    OUT.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(kept)} command docs to {OUT}")


if __name__ == "__main__":
    main()
