"""Two Predis servers under the same redis-benchmark load at the same time, measured over one window.

On a shared GPU machine one server's throughput moves by up to 50% from one round to the next
(bench/results/store/store_rounds_abd3b18.md), far more than the store backends differ: the
virtual CPUs change speed as the host's other tenants come and go. Here both servers run at
once and are measured over the same window of time (the servers' own command counters, read at
its start and end while both loads run), so whatever the machine does meanwhile hits both:

* ``--layout shared`` (default): both servers' threads on one core, which the kernel's
  scheduler shares equally between two busy processes; the ratio of their throughputs is the
  ratio of the CPU work each spends per request, on the same core at the same moments;
* ``--layout apart``: each server on a core of its own (swapped every round), as two machines.

A round's figure is the ratio B/A of ops/s (and of the servers' CPU µs per request); the report
gives the median and the geometric mean over rounds with a bootstrap 95% interval of the latter.
``--pair cpu,cpu`` is the A/A control: the method's own resolution on that machine.

Each round starts both servers fresh, waits until they are idle (start-up work done), then for
each test runs redis-benchmark against both (looping, 50 clients, -P 16, 100-byte values),
reads the counters after SETTLE_S and again WINDOW_S later, and stops the loads: SET over 100,000
keys (``-r 100000``; mostly overwrites after the first moments), SET of new keys (``-r`` 1e9),
GET, MGET of 100 keys. All of a server's threads are pinned with it: the GPU server's CUDA
driver threads are counted, not hidden on spare cores; the report lists CPU time by thread.

    python bench/side_by_side.py [--pair cpu,gpu] [--layout shared] [--rounds 12] [--window 3] [--out DIR]
    python bench/side_by_side.py --pair cpu,cpu --a-rev HEAD~1   # a change against its parent
    python bench/side_by_side.py --pair gpu,gpu --a-args '--gpu-sync-interval 50'   # one setting against another
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from store_bench import _cpu_seconds, commit_id, device_name
from trees import extract_revision

LOAD = ["-P", "16", "-d", "100", "-c", "50", "-l", "-n", "1000000000"]  # -l: loop until stopped
MGET = ["MGET", *["key:__rand_int__"] * 100]
TESTS = {  # name -> redis-benchmark arguments besides LOAD
    "set_P16": ["-r", "100000", "-t", "set"],
    "set_new_P16": ["-r", "1000000000", "-t", "set"],
    "get_P16": ["-r", "100000", "-t", "get"],
    "mget100_P16": ["-r", "100000", *MGET],
}
SETTLE_S = 0.5  # after the loads start: connections made, both servers busy
QUIET_TICKS = 2  # a server that took at most this many clock ticks in 0.5 s is idle


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
    proc = subprocess.Popen([shutil.which("redis-benchmark"), "-p", str(port), *LOAD, *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if client:  # before it has connected its clients (a fork's preexec_fn is unsafe with threads)
        os.sched_setaffinity(proc.pid, client)
    return proc


def _commands(client) -> int:
    return int(client.info("stats")["total_commands_processed"])


def wait_idle(pids: list[int], timeout: float = 60.0) -> None:
    """Until every process took at most QUIET_TICKS of CPU in half a second (start-up work, e.g.
    the GPU store's kernel warm-up, done)."""
    tick = 1 / os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = [_cpu_seconds(pid) for pid in pids]
        time.sleep(0.5)
        if all(_cpu_seconds(pid) - b <= QUIET_TICKS * tick for pid, b in zip(pids, before)):
            return


def placements(layout: str, cores: list[dict[str, set[int]]] | None, swap: bool) -> dict:
    """Each side's {"server", "client"} cores (None: unpinned). ``shared``: one server core for
    both, each client its own; ``apart``: the two sets, swapped on odd rounds."""
    if not cores:
        return {"a": None, "b": None}
    if layout == "shared":
        return {side: {"server": cores[0]["server"], "client": c["client"]} for side, c in zip("ab", cores)}
    return {"a": cores[1 if swap else 0], "b": cores[0 if swap else 1]}


def run_round(backends: tuple[str, str], placed: dict, window: float, tests: list[str],
              extra: tuple[list[str], list[str]] = ([], []), trees: tuple = (None, None)) -> dict:
    """Both servers fresh; each test's load on both at once, counted over the same window.
    ``trees``: a side's server runs from that extracted tree (another revision) if given."""
    import redis
    from servers import predis_process

    row: dict = {}
    with contextlib.ExitStack() as stack:
        servers = {side: stack.enter_context(predis_process("--store-backend", backend, "--save", "", *args,
                                                            tree=tree))
                   for side, backend, args, tree in zip("ab", backends, extra, trees)}
        pids = {side: s.process.pid for side, s in servers.items()}
        wait_idle(list(pids.values()))
        clients = {side: redis.Redis(port=s.port) for side, s in servers.items()}
        for name in tests:
            args = TESTS[name]
            for side, pid in pids.items():
                if placed[side]:
                    pin_all_threads(pid, placed[side]["server"])  # threads made since, too
            loads = [_benchmark(s.port, args, placed[side]["client"] if placed[side] else None)
                     for side, s in servers.items()]
            try:
                time.sleep(SETTLE_S)
                start = {side: (_commands(c), _cpu_seconds(pids[side]), time.monotonic()) for side, c in clients.items()}
                time.sleep(window)
                end = {side: (_commands(c), _cpu_seconds(pids[side]), time.monotonic()) for side, c in clients.items()}
            finally:
                for load in loads:
                    load.terminate()
                for load in loads:
                    load.wait(timeout=30)
            for side in servers:
                done = end[side][0] - start[side][0] - 1  # less the INFO call itself
                if done <= 0:
                    raise RuntimeError(f"predis-{backends['ab'.index(side)]} served nothing under {name}: "
                                       f"{loads['ab'.index(side)].stderr.read()!r}")
                row[f"{side}_{name}_ops_per_s"] = done / (end[side][2] - start[side][2])
                row[f"{side}_{name}_cpu_us"] = (end[side][1] - start[side][1]) * 1e6 / done
        for side, pid in pids.items():
            row[f"{side}_threads_cpu_s"] = thread_cpu(pid)
    return row


# -- the summary ---------------------------------------------------------------------------
def bootstrap_interval(values: list[float], draws: int = 2000, seed: int = 1) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the geometric mean of ``values`` (seeded: the
    same rounds give the same interval)."""
    rng = random.Random(seed)
    means = sorted(statistics.geometric_mean(rng.choices(values, k=len(values))) for _ in range(draws))
    return means[int(0.025 * draws)], means[int(0.975 * draws) - 1]


def summarise(rounds: list[dict]) -> dict:
    """Per metric: the B/A ratio of every round, its median, geometric mean and 95% interval."""
    summary = {}
    for name in TESTS:
        if f"a_{name}_ops_per_s" not in rounds[0]:
            continue
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


def _placed_text(placed: dict) -> str:
    return "; ".join(f"{side}: server {sorted(p['server'])}, redis-benchmark {sorted(p['client'])}"
                     for side, p in placed.items() if p) or "not pinned"


def markdown(report: dict) -> str:
    rounds = report["rounds"]
    names = [n for n in TESTS if f"a_{n}_ops_per_s" in rounds[0]]
    a, b = (f"{name}{'@' + rev if rev else ''} {args}".strip() for name, args, rev in
            zip(report["pair"], report.get("args", ("", "")), report.get("revs", (None, None))))
    lines = [f"# Side by side: predis-{b} / predis-{a}, both under load at once\n",
             (f"Device: {report['device']}  \nHost: {report['host']}  \nDate: {report['date']}  \n"
              f"Commit: {report['commit']}  \nCommand: `{report['command']}`  \n"
              f"Layout: {report['layout']}; cores of round 0: {rounds[0]['placed']}\n"),
             (f"Each test: redis-benchmark looping on both servers at once (-P 16, 50 clients, 100-byte "
              f"values), both counted over the same {report['window']} s window. Ratios are {b}/{a}: above 1 "
              f"is better for {b} in ops/s, worse in CPU µs per request.\n"),
             "| metric | rounds | median | geometric mean | 95% interval | rounds >= 1.0 |", "|---|---|---|---|---|---|"]
    for metric, s in report["summary"].items():
        lines.append(f"| {metric} | {len(s['ratios'])} | {s['median']:.3f} | {s['geometric_mean']:.3f} | "
                     f"{s['interval_95'][0]:.3f} - {s['interval_95'][1]:.3f} | {s['rounds_at_least_1']} |")
    lines.append("\n## Every round (ops/s)\n")
    lines.append("| round | " + " | ".join(f"{n} {a} | {n} {b}" for n in names) + " |")
    lines.append("|---|" + "---|---|" * len(names))
    for i, r in enumerate(rounds):
        lines.append(f"| {i} | " + " | ".join(
            f"{r[f'a_{n}_ops_per_s']:,.0f} | {r[f'b_{n}_ops_per_s']:,.0f}" for n in names) + " |")
    lines.append("\n## CPU seconds by thread, last round\n")
    for side, backend in (("a", a), ("b", b)):
        threads = rounds[-1][f"{side}_threads_cpu_s"]
        lines.append(f"- predis-{backend}: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                         sorted(threads.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default="cpu,gpu", help="store backends A,B (ratios are B/A)")
    parser.add_argument("--layout", choices=("shared", "apart"), default="shared")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--window", type=float, default=3.0, help="seconds each test is counted over")
    parser.add_argument("--a-args", default="", help="more server arguments for A, e.g. '--gpu-sync-interval 50'")
    parser.add_argument("--b-args", default="", help="more server arguments for B")
    parser.add_argument("--tests", default=",".join(TESTS), help=f"a subset of {','.join(TESTS)}")
    parser.add_argument("--a-rev", help="A's server from this git revision (extracted, C extensions built) "
                                        "instead of the working tree: a change against its parent")
    parser.add_argument("--pin", default="auto", help="auto (core sets from the topology) or no")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "store"))
    parser.add_argument("--name", default=None, help="file name stem (default side_by_side_A_B)")
    args = parser.parse_args()
    pair = tuple(args.pair.split(","))
    assert len(pair) == 2, "--pair takes two backends"
    tests = args.tests.split(",")
    assert set(tests) <= set(TESTS), f"--tests: a subset of {list(TESTS)}"
    cores = pick_cores(sorted(os.sched_getaffinity(0))) if args.pin == "auto" else None
    trees = (extract_revision(args.a_rev) if args.a_rev else None, None)
    report = {"pair": pair, "args": [args.a_args, args.b_args], "revs": [args.a_rev, None], "layout": args.layout,
              "window": args.window, "device": device_name(),
              "host": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": commit_id(),
              "command": shlex.join(["python", "bench/side_by_side.py", *sys.argv[1:]]), "rounds": []}
    try:
        for round_no in range(args.rounds):
            placed = placements(args.layout, cores, swap=bool(round_no % 2))
            row = run_round(pair, placed, args.window, tests, (shlex.split(args.a_args), shlex.split(args.b_args)),
                            trees)
            row["placed"] = _placed_text(placed)
            report["rounds"].append(row)
            print(f"round {round_no}", {k: round(v) for k, v in row.items() if k.endswith("ops_per_s")}, flush=True)
    finally:
        if trees[0]:
            shutil.rmtree(trees[0], ignore_errors=True)
    report["summary"] = summarise(report["rounds"])
    stem = args.name or f"side_by_side_{pair[0]}_{pair[1]}"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, stem + ".json"), "w") as handle:
        json.dump(report, handle, indent=2)
    text = markdown(report)
    with open(os.path.join(args.out, stem + ".md"), "w") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
