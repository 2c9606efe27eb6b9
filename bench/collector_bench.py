"""Collector cost: redis-benchmark GET throughput with the collector off, at the default
sampling and at 100%, same machine, same run. Writes bench/results/prefetch/collector.json/.md.

    python bench/collector_bench.py [--requests 200000] [--pipeline 16] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from servers import predis_process  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "prefetch")


def throughput(port: int, requests: int, pipeline: int) -> float:
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "get", "-n", str(requests), "-P",
                          str(pipeline), "-r", "100000", "-q"], capture_output=True, text=True, check=True).stdout
    return float(re.findall(r"([\d.]+) requests per second", out)[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--pipeline", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configs = {"off": ["--collector-sampling", "0"], "default (0.01)": [],
               "100%": ["--collector-sampling", "1"],
               "prefetch on (heuristic ranker)": ["--collector-sampling", "0", "--prefetch-enabled", "yes"]}
    results: dict[str, list[float]] = {k: [] for k in configs}
    servers = {}
    stack = []
    for name, extra in configs.items():
        cm = predis_process(*extra)
        servers[name] = cm.__enter__()
        stack.append(cm)
    try:
        for _ in range(args.rounds):  # interleaved rounds: machine noise hits every config alike
            for name in configs:
                results[name].append(throughput(servers[name].port, args.requests, args.pipeline))
    finally:
        for cm in stack:
            cm.__exit__(None, None, None)
    best = {k: max(v) for k, v in results.items()}
    base = best["off"]
    lines = ["| configuration | GET rps (best of rounds) | cost vs off |", "|---|---|---|"]
    for k, v in best.items():
        lines.append(f"| {k} | {v:,.0f} | {100 * (1 - v / base):+.2f}% |")
    cmd = " ".join(["python", "bench/collector_bench.py", *sys.argv[1:]])
    md = "\n".join(lines) + f"\n\nCommand: `{cmd}` (redis-benchmark -t get -P {args.pipeline} -r 100000)\n"
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "collector.json"), "w") as f:
        json.dump({"rounds": results, "best": best, "command": cmd}, f, indent=2)
    with open(os.path.join(OUT, "collector.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
