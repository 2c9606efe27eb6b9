"""Observation cost: redis-benchmark GET throughput with the collector off, at the default
sampling, at 100%, and with prefetching on (heuristic ranker, and a trained ONNX model: the
inline-inference cost). All servers run side by side and rounds interleave, so machine noise
hits every configuration alike; the table gives the median and the best round.
Writes bench/results/prefetch/collector.json/.md.

    python bench/collector_bench.py [--requests 1000000] [--pipeline 16] [--rounds 5]
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
    args = parser.parse_args()
    models = tempfile.mkdtemp(prefix="predis-collector-bench-")
    model_dir = trained_model(models)
    configs = {"off": ["--collector-sampling", "0"], "collector default (0.01)": [],
               "collector 100%": ["--collector-sampling", "1"],
               "prefetch on, heuristic ranker": ["--collector-sampling", "0", "--prefetch-enabled", "yes"],
               "prefetch on, trained ONNX model": ["--collector-sampling", "0", "--prefetch-enabled", "yes",
                                                   "--models-dir", models]}
    results: dict[str, list[float]] = {k: [] for k in configs}
    servers = {}
    stack = []
    for name, extra in configs.items():
        cm = predis_process(*extra)
        servers[name] = cm.__enter__()
        stack.append(cm)
    try:
        for server in servers.values():  # keys exist: GETs hit, as in a warm cache
            throughput(server.port, 2 * KEYSPACE, args.pipeline, "set")
        for _ in range(args.rounds):  # interleaved rounds
            for name in configs:
                results[name].append(throughput(servers[name].port, args.requests, args.pipeline))
    finally:
        for cm in stack:
            cm.__exit__(None, None, None)
    median = {k: statistics.median(v) for k, v in results.items()}
    best = {k: max(v) for k, v in results.items()}
    lines = ["| configuration | GET rps median | cost vs off (median) | GET rps best | cost vs off (best) |",
             "|---|---|---|---|---|"]
    for k in configs:
        lines.append(f"| {k} | {median[k]:,.0f} | {100 * (1 - median[k] / median['off']):+.2f}% | "
                     f"{best[k]:,.0f} | {100 * (1 - best[k] / best['off']):+.2f}% |")
    cmd = " ".join(["python", "bench/collector_bench.py", *sys.argv[1:]])
    load = os.getloadavg()
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=False).stdout.strip() or "unknown"
    host = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, " \
           f"Python {platform.python_version()}"
    md = f"- date: {date}; commit: {commit}\n- machine: {host}\n\n" + "\n".join(lines) + (
        f"\n\nCommand: `{cmd}` (redis-benchmark -t get -n {args.requests} -P {args.pipeline} -r {KEYSPACE}, "
        f"{args.rounds} interleaved rounds, keys populated first). Positive cost = slower than off. "
        f"Load average at the end: {load[0]:.1f} on {os.cpu_count()} cores (a shared machine: differences "
        f"of a few % are within noise).\n")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "collector.json"), "w") as f:
        json.dump({"rounds": results, "median": median, "best": best, "command": cmd, "date": date,
                   "commit": commit, "machine": host, "loadavg": load, "model": model_dir}, f, indent=2)
    with open(os.path.join(OUT, "collector.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
