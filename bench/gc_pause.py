"""How long one full garbage collection takes with a store of many keys, before and after the
server's start-up freeze (predis_server/gc_policy.py).

Each store keeps all its keys in one list, which a full collection walks; freezing the objects
alive at start-up (the stores' containers among them) takes them out of every later pass.

    python bench/gc_pause.py [--keys 1000000] [--out bench/results/store]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shlex
import statistics
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
from store_bench import commit_id, device_name

from gpu.cpu import NumpyStore
from predis_server.gc_policy import freeze_start_up_objects


def full_collection_ms(repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - started) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "store"))
    args = parser.parse_args()
    store = NumpyStore()  # made before the freeze, as the server's stores are
    before_keys = full_collection_ms(args.repeats)
    frozen = freeze_start_up_objects()
    for i in range(args.keys):
        store.set(b"key:%012d" % i, b"v" * 100, 0)
    after = full_collection_ms(args.repeats)
    gc.unfreeze()
    unfrozen = full_collection_ms(args.repeats)
    report = {"keys": args.keys, "repeats": args.repeats, "device": device_name(),
              "host": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": commit_id(),
              "command": shlex.join(["python", "bench/gc_pause.py", *sys.argv[1:]]),
              "frozen_objects": frozen, "empty_store_ms": before_keys,
              "full_store_frozen_ms": after, "full_store_not_frozen_ms": unfrozen}
    med = {k: statistics.median(report[k]) for k in ("empty_store_ms", "full_store_frozen_ms", "full_store_not_frozen_ms")}
    text = (f"# One full garbage collection with {args.keys:,} keys in a store\n\n"
            f"Device: {report['device']}  \nHost: {report['host']}  \nDate: {report['date']}  \n"
            f"Commit: {report['commit']}  \nCommand: `{report['command']}`\n\n"
            f"| state | median ms ({args.repeats} collections) |\n|---|---|\n"
            f"| empty store | {med['empty_store_ms']:.2f} |\n"
            f"| {args.keys:,} keys, start-up objects frozen (as the server runs) | {med['full_store_frozen_ms']:.2f} |\n"
            f"| {args.keys:,} keys, not frozen (before 415ef1b) | {med['full_store_not_frozen_ms']:.2f} |\n")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gc_pause.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    with open(os.path.join(args.out, "gc_pause.md"), "w") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
