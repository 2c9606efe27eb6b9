#!/usr/bin/env python3
"""Baseline hit ratios for the five generated workloads, and optionally a live server's.

For each workload (ml-training, hft, gaming, web, database) this generates a seeded trace,
runs every libCacheSim baseline policy (predis-sim) at 1%, 5%, 10% and 20% of the trace's
footprint and, when ``--host/--port`` are given, replays the same trace against that server in
cache-aside mode (predis-replay) at the same sizes. It writes JSON and Markdown to
``bench/results/workloads/`` with the machine, the date, the exact command and, for each row,
the stand-alone commands that reproduce it.

    python bench/workloads_baselines.py                                  # baselines only
    python bench/workloads_baselines.py --port 6379 --label Redis        # plus a live server
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workloads.generators import GENERATORS, make_generator
from workloads.replay import ReplayConfig, replay
from workloads.report import provenance, replay_markdown, sim_markdown, write_json
from workloads.sim import DEFAULT_POLICIES, SimConfig, simulate
from workloads.trace import write_trace


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200_000, help="requests per workload trace")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sizes", default="0.01,0.05,0.1,0.2", help="fractions of each trace's footprint")
    ap.add_argument("--workloads", default=",".join(GENERATORS), help="comma-separated kinds")
    ap.add_argument("--policies", default=",".join(DEFAULT_POLICIES))
    ap.add_argument("--warmup", type=float, default=0.1, help="fraction excluded, in sim and replay alike")
    ap.add_argument("--host", default=None, help="replay against this server too")
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--label", default="server", help="name of the replayed server in the tables (Redis, Predis)")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--origin-latency-ms", type=float, default=0.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "workloads"))
    args = ap.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    kinds = [k.strip() for k in args.workloads.split(",") if k.strip()]
    do_replay = args.port is not None or args.host is not None
    host, port = args.host or "127.0.0.1", args.port or 6379
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance([sys.executable, *sys.argv] if argv is None else ["bench/workloads_baselines.py", *argv])
    summary_md = [
        "# Workload baselines\n",
        f"- date: {prov['date']}\n- machine: {prov['machine']['cpu_model']}, {prov['machine']['cores']} cores, "
        f"{prov['machine']['platform']}, Python {prov['machine']['python']}\n- command: `{prov['command']}`\n"
        f"- {args.requests:,} requests per workload, seed {args.seed}, warm-up {args.warmup:.0%} excluded; "
        "sizes are fractions of the trace footprint (sum of distinct objects' sizes), in bytes.\n",
    ]
    with tempfile.TemporaryDirectory(prefix="predis-bench-") as tmp:
        for kind in kinds:
            t0 = time.time()
            trace = Path(tmp) / f"{kind}.csv"
            write_trace(make_generator(kind, seed=args.seed).chunks(args.requests), trace, "csv")
            gen_cmd = ["predis-workload", kind, "--requests", str(args.requests), "--seed", str(args.seed),
                       "--out", f"{kind}.csv"]
            sim = simulate(SimConfig(trace=str(trace), fmt="csv", sizes=sizes, policies=args.policies.split(","),
                                     warmup=args.warmup))
            sim_cmd = ["predis-sim", f"{kind}.csv", "--sizes", ",".join(sizes), "--warmup", str(args.warmup),
                       "--policies", args.policies]
            runs = []
            replay_cmds = []
            if do_replay:
                for size in sizes:
                    cfg = ReplayConfig(trace=str(trace), fmt="csv", host=host, port=port, size=size,
                                       warmup=args.warmup, concurrency=args.concurrency,
                                       origin_latency_ms=args.origin_latency_ms)
                    res = replay(cfg)
                    res["label"] = args.label
                    res["trace"] = f"{kind}.csv"
                    runs.append(res)
                    replay_cmds.append(shlex.join([
                        "predis-replay", f"{kind}.csv", "--host", host, "--port", str(port), "--mode", "cache-aside",
                        "--size", size, "--warmup", str(args.warmup), "--concurrency", str(args.concurrency),
                        "--origin-latency-ms", str(args.origin_latency_ms), "--label", args.label]))
                    print(f"{kind} replay {size}: server hit ratio {res['hit_ratio_server']:.4f}", flush=True)
            sim["trace"] = f"{kind}.csv"
            replays = [{"label": args.label, "runs": runs}] if runs else []
            result = {"workload": kind, "requests": args.requests, "seed": args.seed, "provenance": prov,
                      "reproduce": {"generate": shlex.join(gen_cmd), "sim": shlex.join(sim_cmd),
                                    "replay": replay_cmds},
                      "sim": sim, "replay": {"label": args.label, "runs": runs} if runs else None,
                      "seconds": time.time() - t0}
            write_json(result, out / f"{kind}.json")
            md = [f"## {kind}\n", sim_markdown(sim, replays)]
            if runs:
                md.append("\n" + replay_markdown(runs, args.label))
            md.append("\nReproduce:\n\n```\n" + shlex.join(gen_cmd) + "\n" + shlex.join(sim_cmd) + "\n"
                      + "\n".join(replay_cmds) + ("\n" if replay_cmds else "") + "```\n")
            (out / f"{kind}.md").write_text("\n".join(md))
            summary_md.append("\n".join(md))
            print(f"{kind}: done in {time.time() - t0:.1f}s", flush=True)
    (out / "README.md").write_text("\n".join(summary_md))
    print((out / "README.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
