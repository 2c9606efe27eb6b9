"""Failed-AUTH flood: redis-benchmark throughput on Predis while 200 connections fail AUTH in a loop.

Pass: throughput under the flood >= 0.9x the quiet baseline. Writes bench/results/auth_flood.{json,md}.
Run: .venv/bin/python bench/auth_flood.py [--seconds 5] [--connections 200]
"""
from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import re
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from servers import predis_process  # noqa: E402

BAD_AUTH = b"*3\r\n$4\r\nAUTH\r\n$5\r\nghost\r\n$5\r\nwrong\r\n"


def flood(port: int, connections: int, stop_at: float, counter) -> None:
    """One process: many sockets, each sending a failing AUTH and reading the error, in a loop."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    sent = 0
    while time.time() < stop_at:
        for sock in socks:
            sock.sendall(BAD_AUTH)
        for sock in socks:
            sock.recv(256)
        sent += len(socks)
    counter.value += sent


def benchmark(port: int, requests: int) -> float:
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-n", str(requests), "-c", "20", "-P", "1",
                          "-t", "set,get", "-q"], capture_output=True, text=True, check=True).stdout
    rates = [float(m) for m in re.findall(r"([\d.]+) requests per second", out)]
    return sum(rates) / len(rates)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument("--connections", type=int, default=200)
    args = parser.parse_args()
    with predis_process("--requirepass", "", "--protected-mode", "no") as server:
        benchmark(server.port, 5000)  # warm-up
        quiet = benchmark(server.port, args.requests)
        counter = multiprocessing.Value("q", 0)
        stop_at = time.time() + 3600
        proc = multiprocessing.Process(target=flood, args=(server.port, args.connections, stop_at, counter))
        # the flood stops when the benchmark ends (terminate), so both overlap fully
        proc.start()
        time.sleep(1.0)
        started = time.time()
        flooded = benchmark(server.port, args.requests)
        flood_seconds = time.time() - started
        proc.terminate()
        proc.join()
    ratio = flooded / quiet
    result = {
        "benchmark": "auth_flood", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "machine": {"node": platform.node(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "failing_connections": args.connections, "requests": args.requests,
        "quiet_rps": round(quiet), "flood_rps": round(flooded), "ratio": round(ratio, 3),
        "flood_seconds": round(flood_seconds, 2), "pass": ratio >= 0.9,
    }
    out_dir = os.path.join(ROOT, "bench", "results")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "auth_flood.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    with open(os.path.join(out_dir, "auth_flood.md"), "w") as handle:
        handle.write(f"# Failed-AUTH flood ({result['date'][:10]}, {platform.node()}, "
                     f"{os.cpu_count()} CPUs)\n\n| | requests/s |\n|---|---|\n"
                     f"| redis-benchmark SET/GET, quiet | {result['quiet_rps']} |\n"
                     f"| same, {args.connections} connections failing AUTH in a loop | {result['flood_rps']} |\n"
                     f"| ratio (target >= 0.9) | {result['ratio']} |\n")
    print(json.dumps(result, indent=2))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
