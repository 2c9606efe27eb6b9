"""CPU time of Predis's own request path, without sockets: parse, batch, execute, encode.

50 in-process connections (``Connection.data_received`` with a transport that only counts
bytes) each receive a pipeline, then ``Server.run_batch`` runs the tick and flushes: what the
server does per request besides the system calls and the event loop. It separates the Python
cost from the kernel's in ``bench/vs_redis.py``'s figures, and shows what the C fast path
(``predis_server/_fastpath.c``) saves: run it with ``PREDIS_NATIVE=no`` for the Python path.

``--collector-sampling R`` measures instead what the access collector at sampling R adds to a
pipelined GET's CPU time: two servers (collector off, and at R) whose ticks alternate, so
machine noise hits both alike, built in either order (``collector_cost_balanced``; at R = 0
both are off: the A/A run that shows the measurement's own bias and spread).
``bench/collector_bench.py`` reports it next to its redis-benchmark figures.

    python bench/request_path.py [--rounds 40] [--out bench/results] [--untuned-malloc]
    python bench/request_path.py --collector-sampling 1 [--blocks 15]
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

from inprocess import connect, in_process_server
from resp import encode_command

from predis_server.config import Config
from predis_server.fastpath import native
from predis_server.malloc_tuning import tune_malloc

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


def collector_cost(sampling: float, pipeline: int = 16, blocks: int = 15, ticks: int = 100,
                   on_first: bool = False) -> dict:
    """CPU time per GET (``-P pipeline``, 50 connections, 100k keys) with the collector off and
    at ``sampling``: two servers in one process, their ticks taken in turns (off, on, on, off,
    ...) so that whatever disturbs the machine for a few milliseconds hits both alike; each
    block of ``ticks`` ticks a server gives one sample, and the cost is the median of the
    blocks' ratios. The clock is this thread's CPU time (not the process's: NumPy's BLAS
    threads may spin). In-process there is no event loop to open and close sampling windows:
    a rate below 1 is either always or never inside its window here, so this measures the
    cost while the collector records (rate 1)."""
    rng = random.Random(1)
    keys = [b"key:%012d" % rng.randrange(KEYSPACE) for _ in range(4096)]
    chunks = payloads("GET", pipeline, keys)
    servers = []
    for rate in ((sampling, 0.0) if on_first else (0.0, sampling)):
        config = Config()
        config.collector_sampling = rate
        server = in_process_server(config)
        server.prediction._reconfigure()  # what start() does: collector and access hook
        db = server.keyspace.dbs[0]
        for k in range(KEYSPACE):
            db.set(b"key:%012d" % k, b"v" * 100)
        servers.append((server, [connect(server, keep=False)[0] for _ in range(CONNECTIONS)]))
    if on_first:
        servers.reverse()  # servers[0]: off, servers[1]: at sampling
    collector = servers[1][0].prediction.collector
    if collector is not None:
        # the steady state: a fresh ring's first lap also pays for its pages (faulted in and
        # zeroed by the kernel, 41 bytes an event), once per server
        collector._block[:] = 1
        collector._block[:] = 0
    clock = time.thread_time

    def tick(which: int, r: int) -> float:
        server, connections = servers[which]
        started = clock()
        for i, conn in enumerate(connections):
            conn.data_received(chunks[(r + i) % len(chunks)])
        server.run_batch()
        hook = server.access_hook
        if hook is not None and r % 80 == 79:
            hook.flush()  # the server hands queued events over every 50 ms (the Python path's)
        return clock() - started

    for r in range(2 * ticks):  # warm up: caches, FastRuns' learned names
        tick(r % 2, r)
    gc.collect()
    gc.freeze()  # the stores' objects: no full collections walking them in some samples only
    samples: list[list[float]] = [[], []]
    r = 0
    for _ in range(blocks):
        spent = [0.0, 0.0]
        for t in range(ticks):
            for which in ((0, 1) if t % 2 == 0 else (1, 0)):
                spent[which] += tick(which, r)
            r += 1
        for which in (0, 1):
            samples[which].append(spent[which] / (ticks * CONNECTIONS * pipeline))
    gc.unfreeze()
    ratios = [on / off for off, on in zip(*samples)]
    off, on = statistics.median(samples[0]), statistics.median(samples[1])
    quartiles = statistics.quantiles(ratios, n=4)
    return {"sampling": sampling, "pipeline": pipeline, "blocks": blocks, "ticks_per_block": ticks,
            "c_fast_path": native is not None,
            "off_ns": round(off * 1e9, 1), "on_ns": round(on * 1e9, 1), "delta_ns": round((on - off) * 1e9, 1),
            "cost_pct": round(100 * (statistics.median(ratios) - 1), 2),
            "cost_pct_iqr": [round(100 * (quartiles[0] - 1), 2), round(100 * (quartiles[2] - 1), 2)],
            "events_recorded": collector.written if collector is not None else 0, "ratios": ratios}


def collector_cost_balanced(sampling: float, pipeline: int = 16, blocks: int = 15) -> dict:
    """``collector_cost`` twice, the servers built in either order, pooled. In A/A runs (both
    off, ``--collector-sampling 0``) the server built second often measured 0.5-1.5% faster
    than the first, though not in every run (memory placement); measured in one order only,
    that offset is part of the cost. Both orders cancel the order's part; what is left is the
    spread from one pair of server instances to the next, which the A/A figure shows. The
    cost: the median of both runs' block ratios (quartiles likewise); per order in
    ``by_order``."""
    runs = [collector_cost(sampling, pipeline, blocks, on_first=on_first) for on_first in (False, True)]
    ratios = runs[0]["ratios"] + runs[1]["ratios"]
    quartiles = statistics.quantiles(ratios, n=4)
    off = statistics.mean(r["off_ns"] for r in runs)
    on = statistics.mean(r["on_ns"] for r in runs)
    return {"sampling": sampling, "pipeline": pipeline, "blocks": 2 * blocks, "ticks_per_block": runs[0]["ticks_per_block"],
            "c_fast_path": native is not None, "off_ns": round(off, 1), "on_ns": round(on, 1),
            "delta_ns": round(on - off, 1), "cost_pct": round(100 * (statistics.median(ratios) - 1), 2),
            "cost_pct_iqr": [round(100 * (quartiles[0] - 1), 2), round(100 * (quartiles[2] - 1), 2)],
            "by_order": {("collector server built first" if r is runs[1] else "off server built first"):
                         {k: r[k] for k in ("off_ns", "on_ns", "cost_pct", "cost_pct_iqr")} for r in runs},
            "events_recorded": sum(r["events_recorded"] for r in runs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="ticks per measurement")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    parser.add_argument("--untuned-malloc", action="store_true",
                        help="leave glibc's malloc as it is (predis_server/malloc_tuning.py's effect)")
    parser.add_argument("--collector-sampling", type=float, default=None,
                        help="measure the collector's cost at this sampling rate instead")
    parser.add_argument("--blocks", type=int, default=15, help="samples per server (--collector-sampling)")
    args = parser.parse_args()
    if not args.untuned_malloc:
        tune_malloc()  # as predis-server does at start-up (predis_server/cli.py)
    if args.collector_sampling is not None:
        for pipeline in (16, 1):
            row = collector_cost_balanced(args.collector_sampling, pipeline, args.blocks)
            print(f"GET -P {pipeline:<3d} collector off {row['off_ns']:7.1f} ns, at {args.collector_sampling:g} "
                  f"{row['on_ns']:7.1f} ns CPU per request: {row['cost_pct']:+.2f}% "
                  f"(blocks' ratios: quartiles {row['cost_pct_iqr'][0]:+.2f}% .. {row['cost_pct_iqr'][1]:+.2f}%)")
        return 0
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
        "commit": subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                                 text=True, check=False).stdout.strip() or "unknown",
        "command": " ".join(["python", "bench/request_path.py", *sys.argv[1:]]),
        "c_fast_path": native is not None,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "rows": rows,
    }
    stem = ("request_path" if native is not None else "request_path_python") \
        + ("_untuned_malloc" if args.untuned_malloc else "")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, stem + ".json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    lines = [f"# Predis request path, CPU per request without sockets ({'C fast path' if native else 'Python path'})",
             "", f"- date: {report['date']}; commit: {report['commit']}", f"- command: `{report['command']}`"
             + ("" if native is not None else " with PREDIS_NATIVE=no"),
             f"- machine: {report['machine']}; Python {report['python']}",
             "- 50 in-process connections, one pipeline each per tick; parse, batch, execute, encode, flush"
             + ("; glibc malloc left untuned" if args.untuned_malloc else "; glibc malloc tuned as predis-server tunes it"),
             "", "| test | pipeline | CPU µs per request |", "|---|---|---|"]
    lines += [f"| {row['test']} | {row['pipeline']} | {row['cpu_us_per_request']} |" for row in rows]
    with open(os.path.join(args.out, stem + ".md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
