"""Predis against redis-server on the same machine in the same run (``make bench``).

redis-benchmark (50 clients) drives GET, SET, INCR, MSET (10 keys) and MGET of 100 keys at
pipeline depths 1 and 16 against both servers, running side by side, in interleaved rounds
(Predis then Redis, then Redis then Predis, ...; each round starts from an empty keyspace), so
a change in the machine's load hits both; each figure is the median of its rounds. Then both
are filled with 1,000,000 keys of 100-byte values through pipelined SETs and their memory is
compared (RSS from psutil, and INFO used_memory). Results go to
bench/results/vs_redis.{json,md} with the Predis / Redis ratio of every number, each round's
ratio, the machine, the date and the exact command.

    python bench/vs_redis.py            # full run: 3 rounds
    python bench/vs_redis.py --quick    # fewer requests, 1 round: about 1 minute on 2 cores
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "tests"))
from resp import encode_command  # noqa: E402  (the tests' RESP helpers and process control)
from servers import free_port, stop, wait_ready  # noqa: E402
MGET_KEYS = [f"key{i}" for i in range(1, 101)]

# The targets: Predis throughput / Redis throughput (higher is better) and memory
# ratio (lower is better).
TARGETS = {
    ("GET", 1): 1.0, ("SET", 1): 1.0, ("INCR", 1): 1.0,
    ("GET", 16): 0.5, ("SET", 16): 0.5, ("INCR", 16): 0.5,
    ("MGET_100", 1): 0.8, ("MGET_100", 16): 0.8,
}
MEMORY_TARGET = 1.5


@contextmanager
def server(kind: str, extra: list[str]):
    port = free_port()
    workdir = tempfile.mkdtemp(prefix=f"bench-{kind}-")
    if kind == "predis":
        cmd = [sys.executable, "-m", "predis_server", "--port", str(port), "--save", "",
               "--appendonly", "no", "--dir", workdir, *extra]
    else:
        cmd = [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--dir", workdir, *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_ready(port, proc, timeout=90.0)
        yield port, proc
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def call(port: int, *args: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(encode_command(*args))
        data = b""
        while True:
            chunk = sock.recv(1 << 20)
            data += chunk
            if not chunk or data.endswith(b"\r\n") and _complete(data):
                return data


def _complete(data: bytes) -> bool:
    if data[:1] == b"$":
        header, _, rest = data.partition(b"\r\n")
        return int(header[1:]) < 0 or len(rest) >= int(header[1:]) + 2
    return True


def info_field(port: int, section: str, field: str) -> str:
    text = call(port, "INFO", section).decode(errors="replace")
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def redis_benchmark(port: int, requests: int, pipeline: int, clients: int, args: list[str]) -> float:
    cmd = ["redis-benchmark", "-p", str(port), "-c", str(clients), "-n", str(requests),
           "-P", str(pipeline), "--csv", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True).stdout
    rows = list(csv.reader(io.StringIO(out)))
    data = [row for row in rows if row and row[0] != "test"]
    if not data:
        raise RuntimeError(f"no results from {' '.join(cmd)}:\n{out}")
    return float(data[-1][1])


def throughput(port: int, pid: int, requests: int, pipeline: int, clients: int) -> dict[str, float]:
    """Requests/s of each test, and the server's CPU time per request ("<TEST>_cpu_us").

    CPU time per request is the steadier number on a shared machine: throughput falls when
    another process takes the cores, the server's own CPU seconds per request do not.
    """
    results = {}
    process = psutil.Process(pid)

    def cpu() -> float:
        times = process.cpu_times()
        return times.user + times.system

    def run(name: str, n: int, args: list[str]) -> None:
        before = cpu()
        results[name] = redis_benchmark(port, n, pipeline, clients, args)
        results[name + "_cpu_us"] = round((cpu() - before) * 1e6 / n, 2)

    call(port, "FLUSHALL")  # every round starts alike (SET's new keys, INCR's counters)
    # SET runs first, so the GETs find their keys
    for test in ("set", "get", "incr", "mset"):
        run(test.upper(), requests, ["-t", test, "-r", "100000"])
    for key in MGET_KEYS:
        call(port, "SET", key, "x" * 100)
    run("MGET_100", max(1000, requests // 5), ["MGET", *MGET_KEYS])
    return results


def fill(port: int, keys: int, value_size: int, batch: int = 10_000) -> float:
    value = b"v" * value_size
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        for first in range(0, keys, batch):
            last = min(keys, first + batch)
            sock.sendall(b"".join(encode_command(b"SET", b"key:%010d" % i, value) for i in range(first, last)))
            expected = (last - first) * 5  # "+OK\r\n" each
            got = 0
            while got < expected:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise RuntimeError("server closed the connection while filling")
                got += len(chunk)
    return time.perf_counter() - started


def memory(kind: str, extra: list[str], keys: int, value_size: int) -> dict[str, float]:
    with server(kind, extra) as (port, proc):
        rss_empty = psutil.Process(proc.pid).memory_info().rss
        used_empty = int(info_field(port, "memory", "used_memory") or 0)
        seconds = fill(port, keys, value_size)
        time.sleep(0.5)
        dbsize = call(port, "DBSIZE")
        return {
            "keys": int(dbsize[1:].strip()), "fill_seconds": round(seconds, 2),
            "rss_empty": rss_empty, "rss_full": psutil.Process(proc.pid).memory_info().rss,
            "used_memory_empty": used_empty,
            "used_memory_full": int(info_field(port, "memory", "used_memory") or 0),
        }


def machine() -> dict[str, object]:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                                   check=False).stdout
    import hiredis
    try:
        import uvloop
        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio"
    return {
        "cpu_model": model, "logical_cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "os": platform.platform(), "python": platform.python_version(), "event_loop": loop,
        "hiredis": hiredis.__version__, "redis_server": redis_version.strip(),
    }


def ratio(ours: float, theirs: float) -> float:
    return round(ours / theirs, 3) if theirs else float("nan")


def write_markdown(report: dict, path: Path) -> None:
    lines = [
        "# Predis vs redis-server", "",
        f"- date: {report['date']}; commit: {report.get('commit', 'not recorded')}",
        f"- command: `{report['command']}`",
        (f"- machine: {report['machine']['cpu_model']}, {report['machine']['logical_cores']} logical cores, "
         f"{report['machine']['memory_gb']} GB; {report['machine']['os']}"),
        (f"- Predis on Python {report['machine']['python']}, {report['machine']['event_loop']}, "
         f"hiredis {report['machine']['hiredis']}; {report['machine']['redis_server']}"),
        (f"- redis-benchmark: {report['clients']} clients, {report['requests']} requests a test at -P 1, "
         f"x4 at -P 16 (MGET: a fifth), keyspace -r 100000; {report.get('rounds', 1)} interleaved round(s) "
         "per depth, both servers running side by side; figures are medians of the rounds"),
        f"- load average before/after: {report['loadavg_before']} / {report['loadavg_after']}",
        f"- note: {report['note']}", "",
        "## Throughput (requests/s, higher is better)", "",
        "Server CPU per request: the server process's user+system CPU time during the test divided",
        "by its requests (steadier than throughput on a shared machine; lower is better).", "",
        ("| test | pipeline | Predis | Redis | Predis / Redis | each round | target | met "
         "| Predis CPU µs/req | Redis CPU µs/req | CPU Predis / Redis |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["throughput"]:
        target = row["target"]
        met = "" if target is None else ("yes" if row["ratio"] >= target else "no")
        rounds = " / ".join(f"{r:.2f}" for r in row.get("round_ratios", []))
        lines.append(f"| {row['test']} | {row['pipeline']} | {row['predis']:,.0f} | {row['redis']:,.0f} | "
                     f"{row['ratio']:.2f}x | {rounds} | {'' if target is None else f'>= {target}x'} | {met} | "
                     f"{row['predis_cpu_us']:.2f} | {row['redis_cpu_us']:.2f} | {row['cpu_ratio']:.2f}x |")
    mem = report["memory"]
    lines += [
        "", f"## Memory: {mem['predis']['keys']:,} keys with {mem['value_size']}-byte values (lower is better)", "",
        "| measure | Predis | Redis | Predis / Redis |", "|---|---|---|---|",
    ]
    for name, key in (("RSS, full", "rss_full"), ("RSS, growth from empty", "rss_growth"),
                      ("INFO used_memory, full", "used_memory_full")):
        ours, theirs = mem["predis"][key], mem["redis"][key]
        lines.append(f"| {name} | {ours / 2**20:,.1f} MiB | {theirs / 2**20:,.1f} MiB | {ratio(ours, theirs):.2f}x |")
    lines += ["", (f"Target: RSS growth ratio <= {MEMORY_TARGET}x: "
                   f"{'met' if mem['ratio_rss_growth'] <= MEMORY_TARGET else 'not met'}."),
              (f"Fill time (pipelined SETs from one Python client): Predis {mem['predis']['fill_seconds']} s, "
               f"Redis {mem['redis']['fill_seconds']} s."), ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests (about 2-4 minutes on 2 cores)")
    parser.add_argument("--requests", type=int, help="requests per test at -P 1 (x4 at -P 16)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, help="interleaved rounds per pipeline depth (median; default 3, 1 with --quick)")
    parser.add_argument("--memory-keys", type=int, default=1_000_000)
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--predis-arg", action="append", default=[], help="extra predis-server argument")
    parser.add_argument("--out", default=str(RESULTS), help="directory for vs_redis.json and vs_redis.md")
    parser.add_argument("--note", default="Both servers share the machine's cores with redis-benchmark, "
                        "so ratios measured in the same run mean more than absolute numbers.",
                        help="a line about the run's conditions, written into the results")
    args = parser.parse_args(argv)
    requests = args.requests or (50_000 if args.quick else 200_000)
    rounds = args.rounds or (1 if args.quick else 3)
    if not shutil.which("redis-benchmark") or not shutil.which("redis-server"):
        print("redis-server and redis-benchmark are needed (make install-test)", file=sys.stderr)
        return 2
    report: dict = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                                 text=True, check=False).stdout.strip() or "unknown",
        "command": shlex.join([os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT))
                               else sys.executable, *sys.argv]),
        "machine": machine(), "clients": args.clients, "requests": requests, "rounds": rounds, "note": args.note,
        "loadavg_before": [round(x, 2) for x in os.getloadavg()], "throughput": [],
    }
    for pipeline in (1, 16):
        n = requests if pipeline == 1 else requests * 4
        raw: dict[str, list[dict[str, float]]] = {"predis": [], "redis": []}
        with server("predis", args.predis_arg) as predis, server("redis", []) as redis:
            for round_no in range(rounds):
                order = [("predis", predis), ("redis", redis)]
                for kind, (port, proc) in order if round_no % 2 == 0 else order[::-1]:
                    print(f"{kind}: -P {pipeline}, round {round_no + 1}/{rounds}, {n} requests a test ...",
                          flush=True)
                    raw[kind].append(throughput(port, proc.pid, n, pipeline, args.clients))
                    print(f"  {raw[kind][-1]}", flush=True)
        for test in ("GET", "SET", "INCR", "MSET", "MGET_100"):
            ours, theirs, cpu_ours, cpu_theirs = (
                statistics.median(result[name] for result in raw[kind])
                for kind, name in (("predis", test), ("redis", test), ("predis", test + "_cpu_us"),
                                   ("redis", test + "_cpu_us")))
            report["throughput"].append({
                "test": test, "pipeline": pipeline, "predis": ours, "redis": theirs,
                "ratio": ratio(ours, theirs), "target": TARGETS.get((test, pipeline)),
                "round_ratios": [ratio(a[test], b[test]) for a, b in zip(raw["predis"], raw["redis"])],
                "predis_cpu_us": cpu_ours, "redis_cpu_us": cpu_theirs, "cpu_ratio": ratio(cpu_ours, cpu_theirs)})
    print(f"memory: {args.memory_keys} keys ...", flush=True)
    mem: dict = {"value_size": args.value_size}
    for kind, extra in (("predis", args.predis_arg), ("redis", [])):
        mem[kind] = memory(kind, extra, args.memory_keys, args.value_size)
        mem[kind]["rss_growth"] = mem[kind]["rss_full"] - mem[kind]["rss_empty"]
    mem["ratio_rss_full"] = ratio(mem["predis"]["rss_full"], mem["redis"]["rss_full"])
    mem["ratio_rss_growth"] = ratio(mem["predis"]["rss_growth"], mem["redis"]["rss_growth"])
    mem["ratio_used_memory"] = ratio(mem["predis"]["used_memory_full"], mem["redis"]["used_memory_full"])
    report["memory"] = mem
    report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vs_redis.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, out / "vs_redis.md")
    print((out / "vs_redis.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
