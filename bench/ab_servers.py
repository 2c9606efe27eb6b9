"""Server throughput of an earlier revision against the working tree, on one machine in one run.

Machines that lend GPUs are shared and noisy: two runs an hour apart differ by more than most
changes. This starts the base tree's server and the working tree's server alternately, for
each store backend and round, under the same redis-benchmark load as ``store_bench.py``
(SET/GET -P 16, MGET of 100 random keys at -P 16 and -P 1; 50 clients, 100-byte values).

    python bench/ab_servers.py --base 772baf1 --backends cpu,gpu --rounds 2
    python bench/ab_servers.py --base-tree /path/to/extracted/tree   # where .git is absent
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from servers import free_port, wait_ready
from store_bench import bench_server
from trees import extract_revision


def serve(tree: str, backend: str) -> tuple[int, subprocess.Popen]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "predis_server", "--port", str(port), "--save", "",
                             "--store-backend", backend], cwd=tree, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_ready(port, proc, timeout=120)
    return port, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="git revision to compare against (extracted with git archive)")
    parser.add_argument("--base-tree", help="an extracted tree of the base revision")
    parser.add_argument("--backends", default="cpu")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    base = args.base_tree
    if base is None:
        if not args.base:
            parser.error("give --base REV or --base-tree DIR")
        base = extract_revision(args.base)  # with its C extensions built, as the working tree's
    results = {}
    for round_no in range(args.rounds):
        for backend in args.backends.split(","):
            for label, tree in (("base", base), ("now", ROOT)):
                port, proc = serve(tree, backend)
                try:
                    row = bench_server(port, args.requests)
                finally:
                    proc.terminate()
                    proc.wait()
                results[f"{label}-{backend}-r{round_no}"] = row
                print(f"{label}-{backend}-r{round_no}", {k: round(v) for k, v in row.items()}, flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
