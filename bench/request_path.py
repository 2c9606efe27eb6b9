"""CPU time of Predis's own request path, without sockets: parse, batch, execute, encode.

50 in-process connections (``Connection.data_received`` with a transport that only counts
bytes) each receive a pipeline, then ``Server.run_batch`` runs the tick and flushes: what the
server does per request besides the system calls and the event loop. It separates the Python
cost from the kernel's in ``bench/vs_redis.py``'s figures, and shows what the C fast path
(``predis_server/_fastpath.c``) saves: run it with ``PREDIS_NATIVE=no`` for the Python path.

    python bench/request_path.py [--rounds 40] [--out bench/results]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

from inprocess import connect, in_process_server
from resp import encode_command

from predis_server.fastpath import native

KEYSPACE = 100_000
CONNECTIONS = 50


def payloads(test: str, pipeline: int, keys: list[bytes]) -> list[bytes]:
    mget = [b"key%d" % i for i in range(1, 101)]
    out = []
    for i in range(64):
        requests = []
        for j in range(pipeline):
            key = keys[(i * pipeline + j) % len(keys)]
            if test == "GET":
                requests.append(encode_command(b"GET", key))
            elif test == "SET":
                requests.append(encode_command(b"SET", key, b"v" * 100))
            elif test == "INCR":
                requests.append(encode_command(b"INCR", b"counter:" + key[4:]))
            else:
                requests.append(encode_command(b"MGET", *mget))
        out.append(b"".join(requests))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="ticks per measurement")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = parser.parse_args()
    server = in_process_server()
    connections = [connect(server, keep=False)[0] for _ in range(CONNECTIONS)]
    db = server.keyspace.dbs[0]
    for k in range(KEYSPACE):
        db.set(b"key:%012d" % k, b"v" * 100)
    for k in range(1, 101):
        db.set(b"key%d" % k, b"v" * 100)
    rng = random.Random(1)
    keys = [b"key:%012d" % rng.randrange(KEYSPACE) for _ in range(4096)]
    rows = []
    for test, pipeline in [("GET", 1), ("SET", 1), ("INCR", 1), ("MGET_100", 1),
                           ("GET", 16), ("SET", 16), ("INCR", 16), ("MGET_100", 16)]:
        chunks = payloads(test, pipeline, keys)
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            for r in range(args.rounds):
                for i, conn in enumerate(connections):
                    conn.data_received(chunks[(r + i) % len(chunks)])
                server.run_batch()
            best = min(best, (time.process_time() - started) / (args.rounds * CONNECTIONS * pipeline))
        rows.append({"test": test, "pipeline": pipeline, "cpu_us_per_request": round(best * 1e6, 2)})
        print(f"{test:9s} -P {pipeline:<3d} {best * 1e6:7.2f} µs CPU per request")
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/request_path.py", *sys.argv[1:]]),
        "c_fast_path": native is not None,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "rows": rows,
    }
    stem = "request_path" if native is not None else "request_path_python"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, stem + ".json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    lines = [f"# Predis request path, CPU per request without sockets ({'C fast path' if native else 'Python path'})",
             "", f"- date: {report['date']}", f"- command: `{report['command']}`"
             + ("" if native is not None else " with PREDIS_NATIVE=no"),
             f"- machine: {report['machine']}; Python {report['python']}",
             "- 50 in-process connections, one pipeline each per tick; parse, batch, execute, encode, flush",
             "", "| test | pipeline | CPU µs per request |", "|---|---|---|"]
    lines += [f"| {row['test']} | {row['pipeline']} | {row['cpu_us_per_request']} |" for row in rows]
    with open(os.path.join(args.out, stem + ".md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
