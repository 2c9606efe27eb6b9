"""Store backends and the server on each, measured in one run.

1. Batch GET/SET throughput of each store backend against batch size (1 .. 1M keys,
   16-byte keys, 100-byte values): the list API (``get_many``/``set_many``) on every
   backend; on the GPU also the packed path through the device index, device-side only
   (CUDA events around lookup + gather, keys already on the device) and including the
   host<->device transfers (keys up, slots and values down).
2. The end-to-end server with each backend (and redis-server for reference) under
   ``redis-benchmark -P 16`` (SET, GET) and MGET of 100 keys.

Usage: ``python bench/store_bench.py --out bench/results/store [--no-server] [--max-batch N]``.
Writes ``store_bench.json`` and ``store_bench.md`` into ``--out`` and prints the tables.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from gpu import gpu_available
from gpu.cpu import NumpyStore

NOW = 1_700_000_000_000
BATCHES = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000]
WORK_PER_POINT = 200_000  # keys per (backend, batch size) point for the list API


def device_name() -> str:
    if gpu_available():
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        return props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return f"CPU only ({platform.processor() or platform.machine()})"


def make_data(n: int) -> tuple[list[bytes], list[bytes]]:
    rng = random.Random(42)
    keys = [b"key:%012d" % i for i in range(n)]  # 16 bytes, redis-benchmark's key format
    blob = rng.randbytes(100 * 1024)
    values = [blob[(i * 97) % 102300: (i * 97) % 102300 + 100] for i in range(n)]
    return keys, values


def packed(keys: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lens = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
    offs = np.zeros(len(keys), dtype=np.int64)
    np.cumsum(lens[:-1], out=offs[1:])
    return np.frombuffer(b"".join(keys), dtype=np.uint8), offs, lens


def time_list_api(store, keys, values, batch: int) -> dict:
    rng = random.Random(batch)
    reps = max(1, min(WORK_PER_POINT // batch, 2000))
    starts = [rng.randrange(0, len(keys) - batch + 1) for _ in range(reps)]
    t0 = time.perf_counter()
    for s in starts:
        store.set_many(keys[s: s + batch], values[s: s + batch], NOW)
    if hasattr(store, "flush"):
        store.flush()
    set_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in starts:
        store.get_many(keys[s: s + batch], NOW)
    get_s = time.perf_counter() - t0
    return {"set_keys_per_s": reps * batch / set_s, "get_keys_per_s": reps * batch / get_s}


def time_packed_gpu(store, keys, batch: int) -> dict:
    import cupy as cp

    rng = np.random.default_rng(batch)
    sample = [keys[i] for i in rng.integers(0, len(keys), batch)]
    host = packed(sample)
    dev = [cp.asarray(a) for a in host]
    store.sync()
    out = {}
    # device side: lookup + gather, keys already resident
    for _ in range(3):
        slots = store.lookup_packed(*dev)
        store.gather_device(slots)
    times = []
    for _ in range(20):
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        slots = store.lookup_index(*dev)
        store.gather_device(slots)
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
    assert int((slots < 0).sum()) == 0, "benchmark keys must all hit"
    out["device_lookup_gather_keys_per_s"] = batch / statistics.median(times)
    times = []
    for _ in range(20):
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        store.lookup_index(*dev)
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
    out["device_lookup_keys_per_s"] = batch / statistics.median(times)
    # with transfers: keys up, lookup, slots down (the index alone)
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        d = [cp.asarray(a) for a in host]
        slots = cp.asnumpy(store.lookup_index(*d))
        times.append(time.perf_counter() - t0)
    out["lookup_with_transfer_keys_per_s"] = batch / statistics.median(times)
    # full batch GET: keys up, lookup, host metadata touch, gather, values down
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        store.get_many_packed(*host, NOW)
        times.append(time.perf_counter() - t0)
    out["get_packed_with_transfer_keys_per_s"] = batch / statistics.median(times)
    return out


def run_batches(max_batch: int) -> dict:
    n = max(max_batch, 1000)
    keys, values = make_data(n)
    backends = {"cpu": NumpyStore}
    if gpu_available():
        from gpu.cuda import CupyStore

        backends["gpu"] = CupyStore
    results: dict = {}
    for name, cls in backends.items():
        store = cls()
        t0 = time.perf_counter()
        store.set_many(keys, values, NOW)
        if hasattr(store, "sync"):
            store.sync()
        load_s = time.perf_counter() - t0
        rows = {}
        for batch in [b for b in BATCHES if b <= n]:
            row = time_list_api(store, keys, values, batch)
            if name == "gpu":
                row.update(time_packed_gpu(store, keys, batch))
            rows[batch] = row
            print(name, batch, {k: f"{v:,.0f}" for k, v in row.items()}, flush=True)
        results[name] = {"load_keys_per_s": n / load_s, "used_memory": store.used_memory(),
                         "keys": n, "by_batch": rows}
        del store
    return results


# -- the server under redis-benchmark ------------------------------------------------------
# With --pin, every server (its threads) runs on SERVER_CORES and redis-benchmark on
# CLIENT_CORES: on a shared VM, unpinned rounds of one configuration vary by up to 50%
# (bench/results/store/ab_servers.md), more than the backends differ.
PIN: dict[str, set[int]] = {}


def pin_cores(spec: str) -> dict[str, set[int]]:
    """``"auto"``: the server on core 2, the client on cores 4-7 where there are 8 or more;
    ``"S:C1-C2"`` explicit; ``"no"``: no pinning."""
    if spec == "no" or (spec == "auto" and (os.cpu_count() or 1) < 8):
        return {}
    if spec == "auto":
        spec = "2:4-7"

    def cores(part: str) -> set[int]:
        low, _, high = part.partition("-")
        return set(range(int(low), int(high or low) + 1))

    server, client = spec.split(":")
    return {"server": cores(server), "client": cores(client)}


def _pin_process(pid: int) -> None:
    if PIN:
        for task in os.listdir(f"/proc/{pid}/task"):  # every thread, not only the main one
            os.sched_setaffinity(int(task), PIN["server"])


def _redis_benchmark(port: int, args: list[str]) -> float:
    binary = shutil.which("redis-benchmark")
    client = PIN.get("client")
    out = subprocess.run([binary, "-p", str(port), "--csv", *args], check=False, capture_output=True, text=True,
                         timeout=300, preexec_fn=(lambda: os.sched_setaffinity(0, client)) if client else None)
    rates = []
    for line in out.stdout.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) > 1 and cells[0] != "test":
            try:
                rates.append(float(cells[1]))
            except ValueError:
                pass
    if not rates:
        raise RuntimeError(f"redis-benchmark gave no numbers: {out.stdout}\n{out.stderr}")
    return rates[0]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc; no psutil on the device)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_server(port: int, requests: int, pid: int | None = None) -> dict:
    """ops/s of each test and, given the server's pid, its CPU µs per request ("..._cpu_us"):
    the steadier figure on a shared machine (throughput falls when another process takes the
    core; the server's CPU seconds per request do not)."""
    common = ["-P", "16", "-r", "100000", "-d", "100", "-c", "50"]
    mget = ["MGET", *["key:__rand_int__"] * 100]
    tests = [(f"{t}_P16", requests, [*common, "-n", str(requests), "-t", t]) for t in ("set", "get")]
    tests += [("mget100_P16", requests // 10, [*common, "-n", str(requests // 10), *mget]),
              ("mget100_P1", requests // 20, ["-r", "100000", "-c", "50", "-n", str(requests // 20), *mget])]
    row = {}
    for name, n, args in tests:
        before = _cpu_seconds(pid) if pid else 0.0
        row[f"{name}_ops_per_s"] = _redis_benchmark(port, args)
        if pid:
            row[f"{name}_cpu_us"] = round((_cpu_seconds(pid) - before) * 1e6 / n, 2)
    return row


def run_servers(requests: int, rounds: int = 1) -> tuple[dict, dict]:
    """redis-server once, then the CPU and GPU backends alternately ``rounds`` times; each
    Predis figure is the median of its rounds (GPU machines are shared and noisy).
    Returns (figures by server, every round's figures by Predis backend)."""
    from servers import predis_process, redis_process

    results: dict = {}
    if shutil.which("redis-server"):
        with redis_process() as server:
            _pin_process(server.process.pid)
            results["redis-server"] = bench_server(server.port, requests, server.process.pid)
            print("redis-server", results["redis-server"], flush=True)
    runs: dict[str, list[dict]] = {}
    for round_no in range(rounds):
        for backend in ["cpu", "gpu"] if gpu_available() else ["cpu"]:
            with predis_process("--store-backend", backend) as server:
                _pin_process(server.process.pid)
                row = bench_server(server.port, requests, server.process.pid)
            runs.setdefault(f"predis-{backend}", []).append(row)
            print(f"predis-{backend} round {round_no}", row, flush=True)
    for name, rows in runs.items():
        results[name] = {metric: statistics.median(row[metric] for row in rows) for metric in rows[0]}
    return results, runs


def _cell(column: str, value: float) -> str:
    return f"{value:.2f}" if column.endswith("_cpu_us") else f"{value:,.0f}"


def markdown(report: dict) -> str:
    pin = report.get("pin") or {}
    pinned = (f"servers pinned to cores {sorted(pin['server'])}, redis-benchmark to {sorted(pin['client'])}"
              if pin else "not pinned")
    lines = [(f"# Store benchmark\n\nDevice: {report['device']}  \nHost: {report['host']}  \n"
              f"Date: {report['date']}  \nCommit: {report.get('commit', '?')}  \n"
              f"Command: `{report.get('command', '')}`  \nCores: {pinned}\n")]
    for name, res in report["batches"].items():
        lines.append(f"\n## {name} backend ({res['keys']:,} keys loaded at {res['load_keys_per_s']:,.0f} keys/s; "
                     f"used_memory {res['used_memory'] / 1e6:,.1f} MB)\n")
        cols = sorted({c for row in res["by_batch"].values() for c in row})
        lines.append("| batch | " + " | ".join(cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        for batch, row in res["by_batch"].items():
            lines.append(f"| {int(batch):,} | " + " | ".join(f"{row.get(c, 0):,.0f}" for c in cols) + " |")
    if report.get("servers"):
        lines.append("\n## Server under redis-benchmark (ops/s, and the server's CPU µs per request "
                     "(_cpu_us, lower is better); 50 clients, 100-byte values, -r 100000; "
                     "Predis rows: median of the rounds, run alternately)\n")
        rows = report["servers"]
        cols = sorted({c for row in rows.values() for c in row})
        lines.append("| server | " + " | ".join(cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        for name, row in rows.items():
            lines.append(f"| {name} | " + " | ".join(_cell(c, row.get(c, 0)) for c in cols) + " |")
        if "predis-gpu" in rows and "predis-cpu" in rows:
            gpu, cpu = rows["predis-gpu"], rows["predis-cpu"]
            lines.append("| GPU / CPU backend | " + " | ".join(
                f"{gpu[c] / cpu[c]:.2f}x" if cpu.get(c) and c in gpu else "" for c in cols) + " |")
    return "\n".join(lines) + "\n"


def commit_id() -> str:
    marker = os.path.join(ROOT, "COMMIT")  # a tree exported with `git archive` (the device machine)
    if os.path.exists(marker):
        with open(marker) as handle:
            return handle.read().strip()
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=ROOT, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def pool_rounds(paths: list[str]) -> str:
    """Markdown of the GPU/CPU ratio of every server round in several runs' JSON files: per
    metric the median and geometric mean of the per-round ratios, and how many are >= 1."""
    ratios: dict[str, list[float]] = {}
    sources = []
    for path in paths:
        with open(path) as handle:
            report = json.load(handle)
        rounds = report.get("server_rounds", {})
        pairs = list(zip(rounds.get("predis-cpu", []), rounds.get("predis-gpu", [])))
        sources.append(f"- `{os.path.basename(path)}`: {len(pairs)} rounds, {report.get('date')}, "
                       f"commit {report.get('commit', 'see the file')}")
        for cpu, gpu in pairs:
            for metric, value in cpu.items():
                if value and metric in gpu:
                    ratios.setdefault(metric, []).append(gpu[metric] / value)
    lines = ["# GPU / CPU backend, every server round pooled\n",
             f"Command: `python bench/store_bench.py --pool {' '.join(os.path.basename(p) for p in paths)}`\n",
             *sources, "", "| metric | rounds | median GPU/CPU | geometric mean | rounds >= 1.0 |",
             "|---|---|---|---|---|"]
    for metric, values in sorted(ratios.items()):
        lines.append(f"| {metric} | {len(values)} | {statistics.median(values):.2f}x | "
                     f"{statistics.geometric_mean(values):.2f}x | {sum(v >= 1 for v in values)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "store"))
    parser.add_argument("--max-batch", type=int, default=1_000_000)
    parser.add_argument("--no-server", action="store_true")
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3, help="server rounds per backend (median)")
    parser.add_argument("--pin", default="auto", help="SERVER:CLIENT cores (e.g. 2:4-7), auto or no")
    parser.add_argument("--pool", nargs="+", default=None,
                        help="store_bench.json files: pool their server rounds (writes store_rounds.md in --out)")
    args = parser.parse_args()
    if args.pool:
        text = pool_rounds(args.pool)
        with open(os.path.join(args.out, "store_rounds.md"), "w") as handle:
            handle.write(text)
        print(text)
        return
    PIN.update(pin_cores(args.pin))
    report = {"device": device_name(), "host": f"{platform.node()} {os.cpu_count()} cores, "
              f"Python {platform.python_version()}", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "commit": commit_id(), "command": " ".join(["python", "bench/store_bench.py", *sys.argv[1:]]),
              "pin": {k: sorted(v) for k, v in PIN.items()}}
    report["batches"] = run_batches(args.max_batch)
    if not args.no_server:
        report["servers"], report["server_rounds"] = run_servers(args.requests, args.rounds)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "store_bench.json"), "w") as handle:
        json.dump(report, handle, indent=2, default=str)
    text = markdown(report)
    with open(os.path.join(args.out, "store_bench.md"), "w") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
