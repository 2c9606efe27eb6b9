"""Observation cost: redis-benchmark GET throughput and the server's CPU time per request with
the collector off, at the default sampling, at 100%, and with prefetching on (heuristic ranker,
and a trained ONNX model: the inline-inference cost). All servers run side by side and rounds
interleave, so machine noise hits every configuration alike; the table gives the median and the
best round. CPU time per request (the server process's user+system time during a run, from the
scheduler's per-thread counts, over the requests) is the steadier figure on a shared machine: throughput also moves
when another process takes a core. Each server first answers one warm-up run of GETs (the
100% collector's ring is then past its first lap, whose page faults are paid once).

Then the same cost in-process, without sockets (bench/request_path.py ``collector_cost``):
CPU per pipelined GET with the collector off and at 100%, the two servers' ticks alternating;
the steadiest figure, and a larger share than over sockets, since the kernel's part of a
request (the same in both) is left out of the denominator; and the same for lone GETs (-P 1,
a tick's lone commands of many connections in one C batch, lone_batch.py).

Writes bench/results/prefetch/collector.json/.md.

    python bench/collector_bench.py [--requests 1000000] [--pipeline 16] [--rounds 5] [--blocks 15]
    python bench/collector_bench.py --model-only DIR   # only the trained ranker, as a models-dir
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile

import numpy as np
import psutil

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)
from servers import predis_process

OUT = os.path.join(ROOT, "bench", "results", "prefetch")
KEYSPACE = 100_000


def throughput(port: int, requests: int, pipeline: int, test: str = "get") -> float:
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", test, "-n", str(requests), "-P",
                          str(pipeline), "-r", str(KEYSPACE), "-q"], capture_output=True, text=True, check=True).stdout
    return float(re.findall(r"([\d.]+) requests per second", out)[-1])


def cpu_ns(pid: int) -> tuple[int, int]:
    """(the process's CPU time, all its threads; its main thread's, the event loop's) in ns,
    user+system: the scheduler's own counts (/proc/PID/task/*/schedstat), not /proc/PID/stat's
    10 ms ticks (psutil's, the fallback: both figures then are the process's)."""
    total = main = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as handle:
                    spent = int(handle.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # a thread that ended meanwhile
            total += spent
            if task == str(pid):
                main = spent
    except OSError:
        pass
    if total:
        return total, main
    times = psutil.Process(pid).cpu_times()
    spent = int((times.user + times.system) * 1e9)
    return spent, spent


def measured(server, requests: int, pipeline: int) -> tuple[float, float, float]:
    """(GET requests/s, the server process's and its event-loop thread's CPU ns per request)
    of one redis-benchmark run."""
    before = cpu_ns(server.process.pid)
    rps = throughput(server.port, requests, pipeline)
    after = cpu_ns(server.process.pid)
    return rps, (after[0] - before[0]) / requests, (after[1] - before[1]) / requests


def pct(value: float, base: float) -> str:
    return f"{100 * (value / base - 1):+.2f}%"


def trained_model(directory: str) -> str:
    """A small ranker trained on a synthetic stream (strides + repeated transitions)."""
    from models.keycodes import key_codes
    from models.train import build_dataset, export, train

    rng = np.random.default_rng(0)
    keys: list[bytes] = []
    while len(keys) < 20_000:
        start = int(rng.integers(0, KEYSPACE))
        keys += [b"key:%012d" % (start + i) for i in range(int(rng.integers(1, 12)))]
    kh, ph, sx = key_codes(keys)
    features, labels, _ = build_dataset({"key_hash": kh, "prefix_hash": ph, "suffix": sx})
    return export(train(features, labels), directory, {"synthetic": True}, "bench")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--pipeline", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=15, help="in-process samples per server (0: skip)")
    parser.add_argument("--model-only", metavar="DIR", help="write the trained ranker into models-dir DIR and "
                        "stop (for bench/side_by_side.py --b-args '--prefetch-enabled yes --models-dir DIR')")
    args = parser.parse_args()
    if args.model_only:
        print(trained_model(args.model_only))
        return 0
    models = tempfile.mkdtemp(prefix="predis-collector-bench-")
    model_dir = trained_model(models)
    configs = {"off": ["--collector-sampling", "0"], "collector default (0.01)": [],
               "collector 100%": ["--collector-sampling", "1"],
               "prefetch on, heuristic ranker": ["--collector-sampling", "0", "--prefetch-enabled", "yes"],
               "prefetch on, trained ONNX model": ["--collector-sampling", "0", "--prefetch-enabled", "yes",
                                                   "--models-dir", models]}
    results: dict[str, list[float]] = {k: [] for k in configs}
    process_ns: dict[str, list[float]] = {k: [] for k in configs}
    loop_ns: dict[str, list[float]] = {k: [] for k in configs}
    servers = {}
    stack = []
    for name, extra in configs.items():
        cm = predis_process(*extra)
        servers[name] = cm.__enter__()
        stack.append(cm)
    try:
        for server in servers.values():  # keys exist: GETs hit, as in a warm cache
            throughput(server.port, 2 * KEYSPACE, args.pipeline, "set")
            throughput(server.port, args.requests, args.pipeline)  # warm-up (see the docstring)
        for _ in range(args.rounds):  # interleaved rounds
            for name in configs:
                rps, process, loop = measured(servers[name], args.requests, args.pipeline)
                results[name].append(rps)
                process_ns[name].append(process)
                loop_ns[name].append(loop)
    finally:
        for cm in stack:
            cm.__exit__(None, None, None)
    median = {k: statistics.median(v) for k, v in results.items()}
    best = {k: max(v) for k, v in results.items()}
    process_median = {k: statistics.median(v) for k, v in process_ns.items()}
    loop_median = {k: statistics.median(v) for k, v in loop_ns.items()}
    header = ("| configuration | GET rps median | cost vs off (rps, median) | GET rps best | cost vs off (rps, best) "
              "| process CPU ns/request (median) | cost vs off (process CPU) | event-loop thread CPU ns/request "
              "(median) | cost vs off (loop CPU) |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for k in configs:
        lines.append(f"| {k} | {median[k]:,.0f} | {100 * (1 - median[k] / median['off']):+.2f}% | "
                     f"{best[k]:,.0f} | {100 * (1 - best[k] / best['off']):+.2f}% | "
                     f"{process_median[k]:,.0f} | {pct(process_median[k], process_median['off'])} | "
                     f"{loop_median[k]:,.0f} | {pct(loop_median[k], loop_median['off'])} |")
    in_process = in_process_lone = in_process_aa = None
    if args.blocks:
        sys.path.insert(0, os.path.join(ROOT, "bench"))
        from request_path import collector_cost_balanced

        in_process = collector_cost_balanced(1.0, args.pipeline, args.blocks)
        in_process_lone = collector_cost_balanced(1.0, 1, args.blocks)
        in_process_aa = collector_cost_balanced(0.0, args.pipeline, args.blocks)
    cmd = " ".join(["python", "bench/collector_bench.py", *sys.argv[1:]])
    load = os.getloadavg()
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=False).stdout.strip() or "unknown"
    host = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, " \
           f"Python {platform.python_version()}"
    md = f"- date: {date}; commit: {commit}\n- machine: {host}\n\n" + "\n".join(lines) + (
        f"\n\nCommand: `{cmd}` (redis-benchmark -t get -n {args.requests} -P {args.pipeline} -r {KEYSPACE}, "
        f"{args.rounds} interleaved rounds, keys populated and one warm-up run first). Positive cost = slower "
        f"(fewer requests/s, more CPU per request) than off. CPU: user+system time during the run over its "
        f"requests, of the whole server process and of its main (event-loop) thread, which serves the "
        f"requests (the kernel's socket work included; the other threads: drift checks, NumPy's BLAS). "
        f"Load average at the end: {load[0]:.1f} on {os.cpu_count()} cores (a shared machine: differences "
        f"of a few % are within noise).\n")
    if in_process is not None:
        r = in_process
        md += (f"\nIn-process (bench/request_path.py `collector_cost_balanced`: 50 connections, GET -P {r['pipeline']}, "
               f"parse + batch + execute + encode, no sockets; two servers' ticks alternating, {r['blocks']} blocks "
               f"of {r['ticks_per_block']} ticks each, half of them with each server built first): CPU per GET "
               f"{r['off_ns']:.0f} ns with the collector off, "
               f"{r['on_ns']:.0f} ns at 100% ({r['delta_ns']:+.0f} ns), cost {r['cost_pct']:+.2f}% (median of "
               f"the blocks' ratios; quartiles {r['cost_pct_iqr'][0]:+.2f}% .. {r['cost_pct_iqr'][1]:+.2f}%). "
               f"At sampling s the collector records (and costs this) during s of the time, and the access hook "
               f"is not installed in between.")
        md += "".join(f" With the {order}: {o['cost_pct']:+.2f}%." for order, o in r["by_order"].items()) + "\n"
        r = in_process_lone
        md += (f"\nThe same for lone GETs (-P 1: each connection's one GET, a tick's in one C batch): CPU per GET "
               f"{r['off_ns']:.0f} ns off, {r['on_ns']:.0f} ns at 100% ({r['delta_ns']:+.0f} ns), cost "
               f"{r['cost_pct']:+.2f}% (quartiles {r['cost_pct_iqr'][0]:+.2f}% .. {r['cost_pct_iqr'][1]:+.2f}%).\n")
        r = in_process_aa
        md += (f"\nThe measurement's own noise (A/A: the same run with both servers off, -P {r['pipeline']}): "
               f"{r['cost_pct']:+.2f}% (quartiles {r['cost_pct_iqr'][0]:+.2f}% .. {r['cost_pct_iqr'][1]:+.2f}%)"
               + "".join(f"; {label}: {o['cost_pct']:+.2f}%" for label, o in
                         zip(("the reference server built first", "built second"), r["by_order"].values()))
               + ". Cost at the default sampling 0.01, from the in-process cost at 100%: the hook records "
               f"during 1% of the time, so about {in_process['cost_pct'] / 100:+.3f}% (-P {in_process['pipeline']}) "
               f"and {in_process_lone['cost_pct'] / 100:+.3f}% (-P 1), plus two timer callbacks a second that "
               "open and close the window; far below what redis-benchmark's rounds can resolve.\n")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "collector.json"), "w") as f:
        json.dump({"rounds": results, "median": median, "best": best, "process_cpu_ns_per_request": process_ns,
                   "loop_cpu_ns_per_request": loop_ns, "process_cpu_ns_median": process_median,
                   "loop_cpu_ns_median": loop_median, "in_process": in_process,
                   "in_process_lone": in_process_lone, "in_process_aa": in_process_aa,
                   "command": cmd, "date": date,
                   "commit": commit, "machine": host, "loadavg": load, "model": model_dir}, f, indent=2)
    with open(os.path.join(OUT, "collector.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
