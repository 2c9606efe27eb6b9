"""How fast can any uvloop server answer redis-benchmark at -P 1? A ceiling for Predis.

Issue #2 asks for GET/SET/INCR at -P 1 >= 1.0x Redis. At -P 1 every request costs the server
one read and one write system call and an event-loop wakeup; Redis pays those in C. This
bench runs, side by side and in interleaved rounds: redis-server, Predis, and the *least*
server that can be built on Predis's stack (uvloop + hiredis's parser) -- it parses each
request and writes a fixed reply, touching no store. Its CPU per request is the floor that
stack sets; Predis's CPU above it is the cost of really executing commands.

    python bench/p1_ceiling.py [--requests 200000] [--rounds 3]

Writes bench/results/p1_ceiling.{json,md}. ``--serve PORT`` runs the minimal server alone.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

REPLIES = {b"GET": b"$3\r\nxxx\r\n", b"SET": b"+OK\r\n", b"INCR": b":1\r\n"}
TESTS = ("get", "set", "incr")


class MinimalProtocol(asyncio.Protocol):
    """Parse with hiredis, answer with a fixed reply per command: no store, no batching."""

    def connection_made(self, transport) -> None:
        import hiredis

        self.write = transport.write
        self.reader = hiredis.Reader()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        out = []
        while (request := self.reader.gets()) is not False:
            out.append(REPLIES.get(request[0].upper(), b"*0\r\n"))
        self.write(b"".join(out))


def serve(port: int) -> None:
    import uvloop

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(MinimalProtocol, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench(port: int, pid: int, test: str, requests: int) -> tuple[float, float]:
    """(requests/s, server CPU µs per request) of one redis-benchmark run at -P 1."""
    before = cpu_seconds(pid)
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", test, "-n", str(requests), "-c", "50",
                          "-r", "100000", "-P", "1", "-q"], capture_output=True, text=True, check=True).stdout
    rate = float(re.findall(r"([\d.]+) requests per second", out)[-1])
    return rate, round((cpu_seconds(pid) - before) * 1e6 / requests, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=int, help="run the minimal server on this port and nothing else")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    from servers import free_port, predis_process, redis_process, wait_ready

    port = free_port()
    minimal = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", str(port)])
    rows: dict[str, dict[str, list]] = {}
    try:
        wait_ready(port, minimal)
        with redis_process() as redis, predis_process() as predis:
            servers = {"redis-server": (redis.port, redis.process.pid),
                       "minimal uvloop + hiredis server": (port, minimal.pid),
                       "predis": (predis.port, predis.process.pid)}
            for _ in range(args.rounds):
                for test in TESTS:
                    for name, (p, pid) in servers.items():
                        rate, cpu = bench(p, pid, test, args.requests)
                        row = rows.setdefault(name, {}).setdefault(test, [])
                        row.append((rate, cpu))
                        print(name, test, rate, cpu, flush=True)
    finally:
        minimal.terminate()
        minimal.wait()
    median = {name: {test: {"rps": statistics.median(r for r, _ in runs),
                            "cpu_us": statistics.median(c for _, c in runs)}
                     for test, runs in tests.items()} for name, tests in rows.items()}
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=False).stdout.strip() or "unknown"
    host = f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}"
    command = " ".join(["python", "bench/p1_ceiling.py", *sys.argv[1:]])
    redis = median["redis-server"]
    setup = (f"- redis-benchmark -P 1, 50 clients, -r 100000, {args.requests} requests a test, "
             f"{args.rounds} interleaved rounds (medians); load average at the end: {os.getloadavg()[0]:.1f}")
    lines = ["# -P 1 ceiling: redis-server, the least uvloop server, Predis", "",
             f"- date: {date}; commit: {commit}", f"- machine: {host}", f"- command: `{command}`", setup,
             "", "| server | test | requests/s | vs Redis | server CPU µs/request |", "|---|---|---|---|---|"]
    for name, tests in median.items():
        for test, m in tests.items():
            lines.append(f"| {name} | {test.upper()} | {m['rps']:,.0f} | {m['rps'] / redis[test]['rps']:.2f}x | "
                         f"{m['cpu_us']:.2f} |")
    lines += ["", ("The minimal server parses each request with hiredis and writes a fixed reply: no "
                   "store, no command table, nothing a real server must do; its CPU per request is what "
                   "uvloop, hiredis and the system calls cost. It answers each connection's request on "
                   "its own; Predis runs the lone requests of all connections ready in a tick as one "
                   "batch (predis_server/lone_batch.py), so with more CPU per request it can still "
                   "serve more of them per event-loop wakeup. redis-benchmark shares the machine's "
                   "cores with the server.")]
    text = "\n".join(lines) + "\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "p1_ceiling.json"), "w") as handle:
        json.dump({"date": date, "commit": commit, "machine": host, "command": command, "rounds": rows,
                   "median": median, "loadavg": os.getloadavg(), "time": time.time()}, handle, indent=2)
    with open(os.path.join(args.out, "p1_ceiling.md"), "w") as handle:
        handle.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
