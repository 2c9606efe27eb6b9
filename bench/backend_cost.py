"""CPU and wall time per request of the CPU and GPU store backends, without sockets.

redis-benchmark rounds of two server processes on a shared GPU machine vary by more than the
backends differ (bench/results/store/store_rounds.md: per-round GPU/CPU ratios 0.6-1.5x for
the same code path). Here each backend runs an in-process server (tests/inprocess.py: the
real parser, batch loop, C fast path and store) in its own process, both pinned to one core,
and they take turns of SLICE ticks (cpu, gpu, gpu, cpu, ...), so whatever disturbs the
machine hits both alike. (Two servers in one process were not comparable: with a CUDA context
in the process, the second server made ran slower whatever its backend.)
A tick is what redis-benchmark -P 16 -c 50 gives the server: 50 connections' pipelines of 16
commands, then the tick's end (``batching.end_tick``: the GPU store's sync once its oldest
change is ``gpu-sync-interval`` old). Each block of ticks gives one sample per backend; the figures are
medians over blocks, and the ratio the median of the blocks' GPU/CPU ratios. ``--pair cpu,cpu-cuda`` measures what a
CUDA context alone costs a process's CPU work (the CPU store in both). The clock is
the server thread's CPU time (and wall time: the GPU store never waits for the device on
these paths, so the two agree unless a sync blocks).

Phases, in order, on fresh servers: ``SET new`` (720k keys not yet stored, ``key:%012d`` as
redis-benchmark -r makes them, the keyspace filling up), ``SET`` (overwrites of 100k of
them, as -r 100000), ``GET``, ``MGET 100``.

    python bench/backend_cost.py [--blocks 9] [--ticks 150] [--out bench/results/store]
"""
from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

from inprocess import connect, in_process_server
from resp import encode_command
from store_bench import commit_id, device_name

from gpu import gpu_available
from predis_server.config import Config
from predis_server.fastpath import native

KEYSPACE = 100_000
NEW_KEYS = 720_000  # the SET-new phase's distinct keys (then the keyspace holds them all)
CONNECTIONS = 50
PIPELINE = 16


def chunks_for(test: str, keys: list[bytes]) -> list[bytes]:
    """Each connection's pipeline for one tick, cycling through ``keys``."""
    out = []
    per_tick = PIPELINE
    for i in range(0, len(keys) - per_tick + 1, per_tick):
        part = keys[i: i + per_tick]
        if test == "GET":
            out.append(b"".join(encode_command(b"GET", k) for k in part))
        elif test == "MGET":
            out.append(b"".join(encode_command(b"MGET", *keys[i: i + 100]) for _ in part))
        else:
            out.append(b"".join(encode_command(b"SET", k, b"x" * 100) for k in part))
    return out


SLICE = 10  # ticks one server runs before the other takes its turn


def phases() -> list[tuple[str, list[bytes]]]:
    rng = random.Random(1)
    fresh = [b"key:%012d" % k for k in rng.sample(range(NEW_KEYS), NEW_KEYS)]
    again = [b"key:%012d" % rng.randrange(KEYSPACE) for _ in range(KEYSPACE)]
    return [("SET new", chunks_for("SET", fresh)), ("SET", chunks_for("SET", again)),
            ("GET", chunks_for("GET", again)), ("MGET 100", chunks_for("MGET", again))]


def serve(backend: str, core: int | None, pipe) -> None:
    """A child process: one in-process server on ``backend``; each message (phase, ticks)
    runs that many ticks of the phase and answers (CPU seconds, wall seconds); None ends it
    with the number of keys stored."""
    if core is not None:
        os.sched_setaffinity(0, {core})
    if backend == "cpu-cuda":  # the CPU store in a process that has a CUDA context, as the GPU store's has
        import cupy
        cupy.zeros(1)
        backend = "cpu"
    config = Config()
    config.store_backend = backend
    server = in_process_server(config)
    connections = [connect(server, keep=False)[0] for _ in range(CONNECTIONS)]
    store = server.keyspace.dbs[0].store
    synced = [0.0]  # CPU seconds in the GPU store's syncs (the device copy's upkeep)
    if hasattr(store, "sync"):
        untimed = store.sync

        def timed_sync() -> None:
            started = time.thread_time()
            untimed()
            synced[0] += time.thread_time() - started

        store.sync = timed_sync
    chunks = dict(phases())
    cursor = dict.fromkeys(chunks, 0)
    pipe.send("ready")
    while (message := pipe.recv()) is not None:
        phase, ticks = message
        wall, cpu, synced[0] = time.perf_counter(), time.thread_time(), 0.0
        for _ in range(ticks):
            for conn in connections:
                conn.data_received(chunks[phase][cursor[phase] % len(chunks[phase])])
                cursor[phase] += 1
            server.run_batch()
        pipe.send((time.thread_time() - cpu, time.perf_counter() - wall, synced[0]))
    pipe.send(len(server.keyspace.dbs[0].store))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # a block should span several of the GPU store's syncs (gpu-sync-interval), or the medians leave them out
    parser.add_argument("--blocks", type=int, default=9, help="samples per backend and phase")
    parser.add_argument("--ticks", type=int, default=150, help="ticks per sample (SET new: as the keys allow)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "store"))
    parser.add_argument("--pair", default="cpu,gpu",
                        help="the two servers' backends (A/A: cpu,cpu or gpu,gpu; cpu-cuda: the CPU store in a "
                             "process with a CUDA context)")
    parser.add_argument("--core", type=int, default=2 if (os.cpu_count() or 1) >= 4 else None,
                        help="the CPU both server processes run on (they take turns), -1: not pinned")
    args = parser.parse_args()
    if "gpu" in args.pair and not gpu_available():
        print("no CUDA device: nothing to compare (the GPU backend needs one)")
        return 1
    core = None if args.core is None or args.core < 0 else args.core
    # the two servers, "cpu" and "gpu" by default, each in its own process (spawned: the
    # parent's CUDA state must not be forked); --pair gpu,gpu or cpu,cpu gives the
    # comparison's own bias (A/A: what the ratio reads when both run the same backend)
    first, second = args.pair.split(",")
    context = multiprocessing.get_context("spawn")
    pipes, children = {}, []
    for label, backend in (("cpu", first), ("gpu", second)):
        mine, theirs = context.Pipe()
        child = context.Process(target=serve, args=(backend, core, theirs), daemon=True)
        child.start()
        pipes[label] = mine
        children.append(child)
    for pipe in pipes.values():
        assert pipe.recv() == "ready"
    new_chunks = len(dict(phases())["SET new"])
    rows = []
    for name in ("SET new", "SET", "GET", "MGET 100"):
        # new keys: every tick must write keys not stored yet, so the phase is as long as
        # the key list allows and has no warm-up; the others warm up first
        new_keys = name == "SET new"
        ticks = new_chunks // (CONNECTIONS * args.blocks) if new_keys else args.ticks
        if not new_keys:
            for pipe in pipes.values():
                pipe.send((name, 2 * args.ticks))
                pipe.recv()
        samples = {"cpu": [], "gpu": []}
        for block in range(args.blocks):
            spent = {"cpu": [0.0, 0.0, 0.0], "gpu": [0.0, 0.0, 0.0]}
            for part, at in enumerate(range(0, ticks, SLICE)):
                for label in (("cpu", "gpu") if (block + part) % 2 == 0 else ("gpu", "cpu")):
                    pipes[label].send((name, min(SLICE, ticks - at)))
                    for i, seconds in enumerate(pipes[label].recv()):
                        spent[label][i] += seconds
            for label, seconds in spent.items():
                samples[label].append([s / (ticks * CONNECTIONS * PIPELINE) for s in seconds])
        row = {"phase": name, "ticks_per_block": ticks, "blocks": args.blocks}
        for which, label in ((0, "cpu_ns"), (1, "wall_ns")):
            for backend in ("cpu", "gpu"):
                row[f"{backend}_{label}"] = round(statistics.median(s[which] for s in samples[backend]) * 1e9, 1)
            ratios = [g[which] / c[which] for c, g in zip(samples["cpu"], samples["gpu"])]
            row[f"gpu_over_cpu_{label}"] = round(statistics.median(ratios), 3)
        for backend in ("cpu", "gpu"):
            row[f"{backend}_sync_ns"] = round(statistics.median(s[2] for s in samples[backend]) * 1e9, 1)
        rows.append(row)
        print(row, flush=True)
    keys = {}
    for label, pipe in pipes.items():
        pipe.send(None)
        keys[label] = pipe.recv()
    for child in children:
        child.join(30)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit_id(),
        "command": " ".join(["python", "bench/backend_cost.py", *sys.argv[1:]]),
        "device": device_name(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "c_fast_path": native is not None,
        "pair": args.pair,
        "core": core,
        "keys_stored": keys,
        "rows": rows,
    }
    os.makedirs(args.out, exist_ok=True)
    stem = "backend_cost" if args.pair == "cpu,gpu" else "backend_cost_" + args.pair.replace(",", "_")
    with open(os.path.join(args.out, stem + ".json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    title = (f"# Store backends {first} (columns 'cpu') vs {second} (columns 'gpu'): time per request, "
             "each in its own process, turns interleaved")
    setup = (f"- {CONNECTIONS} connections x {PIPELINE} pipelined commands a tick, 100-byte values; SET new: "
             f"{NEW_KEYS:,} new keys, then {KEYSPACE:,} keys; per phase {args.blocks} blocks; figures: median "
             "of blocks; ratio: median of the blocks' GPU/CPU ratios (below 1: the GPU backend is cheaper)")
    header = ("| phase | ticks/block | CPU ns/req cpu | CPU ns/req gpu | GPU/CPU (CPU time) | wall ns/req cpu "
              "| wall ns/req gpu | GPU/CPU (wall) | of which syncs, CPU ns/req gpu |")
    where = (f"- device: {report['device']}; machine: {report['machine']}; Python {report['python']}; "
             f"servers pinned to core {core}")
    lines = [title, "", f"- date: {report['date']}; commit: {report['commit']}; command: `{report['command']}`",
             where, setup, "", header, "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['phase']} | {r['ticks_per_block']} | {r['cpu_cpu_ns']} | {r['gpu_cpu_ns']} | "
              f"{r['gpu_over_cpu_cpu_ns']:.3f} | {r['cpu_wall_ns']} | {r['gpu_wall_ns']} | "
              f"{r['gpu_over_cpu_wall_ns']:.3f} | {r['gpu_sync_ns']} |" for r in rows]
    with open(os.path.join(args.out, stem + ".md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
