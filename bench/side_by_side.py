"""Two Predis servers under the same redis-benchmark load at the same time, on swapped cores.

On a shared GPU machine one server's throughput moves by up to 50% from one round to the next
(bench/results/store/store_rounds_abd3b18.md), far more than the store backends differ, because
rounds run one after the other and the machine changes in between. Here both servers run at
once, each with its own cores (server and client), so whatever the machine does meanwhile hits
both; each round swaps the two core sets, so neither backend keeps the better cores. A round's
figure is the ratio B/A of ops/s (and of the servers' CPU µs per request); the report gives the
median and the geometric mean over rounds with a bootstrap 95% interval of the latter.
``--pair cpu,cpu`` is the A/A control: the method's own resolution on that machine.

Each round starts both servers fresh (so SET stores new keys first, as in store_bench.py), then
runs SET and GET at -P 16 and MGET of 100 keys at -P 16 (50 clients, 100-byte values,
-r 100000) against both at once. Each server's threads are all pinned to its server core: the
GPU server's CUDA driver threads are counted, not hidden on spare cores; the report lists each
server's CPU time by thread.

    python bench/side_by_side.py [--pair cpu,gpu] [--rounds 12] [--requests 1000000] [--out DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from store_bench import _cpu_seconds, commit_id, device_name

COMMON = ["-P", "16", "-r", "100000", "-d", "100", "-c", "50"]
MGET = ["MGET", *["key:__rand_int__"] * 100]


def tests(requests: int) -> list[tuple[str, int, list[str]]]:
    """(name, requests, redis-benchmark arguments) of one round, in order."""
    out = [(f"{t}_P16", requests, [*COMMON, "-n", str(requests), "-t", t]) for t in ("set", "get")]
    mget_requests = max(requests // 40, 100)
    out.append(("mget100_P16", mget_requests, [*COMMON, "-n", str(mget_requests), *MGET]))
    return out


# -- cores ---------------------------------------------------------------------------------
def _siblings(cpu: int) -> set[int]:
    """The logical CPUs sharing ``cpu``'s physical core (itself alone where sysfs says nothing)."""
    path = f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"
    try:
        with open(path) as handle:
            return parse_cpu_list(handle.read().strip()) | {cpu}
    except OSError:
        return {cpu}


def parse_cpu_list(text: str) -> set[int]:
    """Linux's CPU list syntax: ``"0-3,8,10-11"``."""
    cpus: set[int] = set()
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def pick_cores(cpus: list[int], siblings=_siblings, client_cores: int = 4) -> list[dict[str, set[int]]] | None:
    """Two disjoint core sets {"server", "client"}: each server a physical core to itself (its
    hyperthread sibling left idle), then ``client_cores`` logical CPUs per client. Cores 0-1 are
    left to the machine. None where there are too few CPUs (the caller runs unpinned)."""
    free = [c for c in sorted(cpus) if c >= 2]
    servers: list[int] = []
    taken: set[int] = set()
    for cpu in free:
        if len(servers) == 2:
            break
        if cpu not in taken:
            servers.append(cpu)
            taken |= siblings(cpu)
    rest = [c for c in free if c not in taken]
    if len(servers) < 2 or len(rest) < 2 * client_cores:
        return None
    return [{"server": {servers[i]}, "client": set(rest[i * client_cores:(i + 1) * client_cores])} for i in (0, 1)]


def pin_all_threads(pid: int, cores: set[int]) -> None:
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task), cores)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each of ``pid``'s threads by name (threads of one name summed)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as handle:
                text = handle.read()
        except OSError:
            continue
        name = text[text.index("(") + 1: text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        label = "main" if int(task) == pid else name
        out[label] = out.get(label, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


# -- a round -------------------------------------------------------------------------------
def _benchmark(port: int, args: list[str], client: set[int] | None) -> subprocess.Popen:
    proc = subprocess.Popen([shutil.which("redis-benchmark"), "-p", str(port), "--csv", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if client:  # before it has connected its clients (a fork's preexec_fn is unsafe with threads)
        os.sched_setaffinity(proc.pid, client)
    return proc


def _rate(proc: subprocess.Popen) -> float:
    stdout, stderr = proc.communicate(timeout=600)
    for line in stdout.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) > 1 and cells[0] != "test":
            with contextlib.suppress(ValueError):
                return float(cells[1])
    raise RuntimeError(f"redis-benchmark gave no numbers: {stdout}\n{stderr}")


def run_round(backends: tuple[str, str], cores: list[dict[str, set[int]]] | None, requests: int,
              swap: bool) -> dict:
    """Both servers fresh, every test at once against both; figures by side ("a", "b")."""
    from servers import predis_process

    sides = {"a": backends[0], "b": backends[1]}
    placed = {"a": cores[1 if swap else 0], "b": cores[0 if swap else 1]} if cores else {"a": None, "b": None}
    row: dict = {"swap": swap}
    with contextlib.ExitStack() as stack:
        servers = {side: stack.enter_context(predis_process("--store-backend", backend, "--save", ""))
                   for side, backend in sides.items()}
        for name, n, args in tests(requests):
            for side, server in servers.items():
                if placed[side]:
                    pin_all_threads(server.process.pid, placed[side]["server"])  # threads made since
            before = {side: _cpu_seconds(s.process.pid) for side, s in servers.items()}
            procs = {side: _benchmark(s.port, args, placed[side]["client"] if placed[side] else None)
                     for side, s in servers.items()}
            for side, server in servers.items():
                row[f"{side}_{name}_ops_per_s"] = _rate(procs[side])
                row[f"{side}_{name}_cpu_us"] = (_cpu_seconds(server.process.pid) - before[side]) * 1e6 / n
        for side, server in servers.items():
            row[f"{side}_threads_cpu_s"] = thread_cpu(server.process.pid)
    return row


# -- the summary ---------------------------------------------------------------------------
def bootstrap_interval(values: list[float], draws: int = 2000, seed: int = 1) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the geometric mean of ``values`` (seeded: the
    same rounds give the same interval)."""
    rng = random.Random(seed)
    means = sorted(statistics.geometric_mean(rng.choices(values, k=len(values))) for _ in range(draws))
    return means[int(0.025 * draws)], means[int(0.975 * draws) - 1]


def summarise(rounds: list[dict], requests: int) -> dict:
    """Per metric: the B/A ratio of every round, its median, geometric mean and 95% interval."""
    summary = {}
    for name, _, _ in tests(requests):
        for unit in ("ops_per_s", "cpu_us"):
            # a run too short for the CPU clock's ticks reads 0 CPU: no ratio from it
            ratios = [r[f"b_{name}_{unit}"] / r[f"a_{name}_{unit}"] for r in rounds
                      if r.get(f"a_{name}_{unit}", 0) > 0 and r.get(f"b_{name}_{unit}", 0) > 0]
            if not ratios:
                continue
            low, high = bootstrap_interval(ratios)
            summary[f"{name}_{unit}"] = {"ratios": [round(x, 4) for x in ratios], "median": statistics.median(ratios),
                                         "geometric_mean": statistics.geometric_mean(ratios),
                                         "interval_95": [low, high], "rounds_at_least_1": sum(x >= 1 for x in ratios)}
    return summary


def markdown(report: dict) -> str:
    a, b = report["pair"]
    cores = report.get("cores")
    placed = ("; ".join(f"set {i}: server core {c['server']}, redis-benchmark cores {c['client']}"
                        for i, c in enumerate(cores)) + " (swapped every round)") if cores else "not pinned"
    lines = [f"# Side by side: predis-{b} / predis-{a}, both under load at once\n",
             (f"Device: {report['device']}  \nHost: {report['host']}  \nDate: {report['date']}  \n"
              f"Commit: {report['commit']}  \nCommand: `{report['command']}`  \nCores: {placed}\n"),
             (f"Load per round (both servers fresh): {', '.join(n for n, _, _ in tests(report['requests']))}; "
              "-P 16, 50 clients, 100-byte values, -r 100000. Ratios are "
              f"{b}/{a}: above 1 is better for {b} in ops/s, worse in CPU µs per request.\n"),
             "| metric | rounds | median | geometric mean | 95% interval | rounds >= 1.0 |", "|---|---|---|---|---|---|"]
    for metric, s in report["summary"].items():
        lines.append(f"| {metric} | {len(s['ratios'])} | {s['median']:.3f} | {s['geometric_mean']:.3f} | "
                     f"{s['interval_95'][0]:.3f} - {s['interval_95'][1]:.3f} | {s['rounds_at_least_1']} |")
    lines.append("\n## Every round (ops/s)\n")
    names = [n for n, _, _ in tests(report["requests"])]
    lines.append("| round | cores swapped | " + " | ".join(f"{n} {a} | {n} {b}" for n in names) + " |")
    lines.append("|---|---|" + "---|---|" * len(names))
    for i, r in enumerate(report["rounds"]):
        lines.append(f"| {i} | {'yes' if r['swap'] else 'no'} | " + " | ".join(
            f"{r[f'a_{n}_ops_per_s']:,.0f} | {r[f'b_{n}_ops_per_s']:,.0f}" for n in names) + " |")
    lines.append("\n## CPU seconds by thread, last round\n")
    for side, backend in (("a", a), ("b", b)):
        threads = report["rounds"][-1][f"{side}_threads_cpu_s"]
        lines.append(f"- predis-{backend}: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                         sorted(threads.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default="cpu,gpu", help="store backends A,B (ratios are B/A)")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--requests", type=int, default=1_000_000, help="SET and GET requests a round (MGET: 1/40)")
    parser.add_argument("--pin", default="auto", help="auto (two core sets from the topology) or no")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "store"))
    parser.add_argument("--name", default=None, help="file name stem (default side_by_side_A_B)")
    args = parser.parse_args()
    pair = tuple(args.pair.split(","))
    assert len(pair) == 2, "--pair takes two backends"
    cores = pick_cores(sorted(os.sched_getaffinity(0))) if args.pin == "auto" else None
    report = {"pair": pair, "device": device_name(), "requests": args.requests,
              "host": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": commit_id(),
              "command": " ".join(["python", "bench/side_by_side.py", *sys.argv[1:]]),
              "cores": [{k: sorted(v) for k, v in c.items()} for c in cores] if cores else None, "rounds": []}
    for round_no in range(args.rounds):
        row = run_round(pair, cores, args.requests, swap=bool(round_no % 2))
        report["rounds"].append(row)
        print(f"round {round_no}", {k: v for k, v in row.items() if k.endswith("ops_per_s")}, flush=True)
    report["summary"] = summarise(report["rounds"], args.requests)
    stem = args.name or f"side_by_side_{pair[0]}_{pair[1]}"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, stem + ".json"), "w") as handle:
        json.dump(report, handle, indent=2, default=sorted)
    text = markdown(report)
    with open(os.path.join(args.out, stem + ".md"), "w") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
