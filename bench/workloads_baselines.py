#!/usr/bin/env python3
"""Baseline hit ratios for the five generated workloads, and optionally a live server's.

For each workload (ml-training, hft, gaming, web, database) this generates a seeded trace,
runs every libCacheSim baseline policy (predis-sim) at 1%, 5%, 10% and 20% of the trace's
footprint and, for each ``--server LABEL=HOST:PORT`` (or the single ``--host/--port/--label``),
replays the same trace against that server in cache-aside mode (predis-replay) at the same
sizes. Servers take turns size by size, so that each size's rows ran under similar machine load
(the load is recorded with every replay). It writes JSON and Markdown to
``bench/results/workloads/`` with the machine, the date, the exact command and, for each row,
the stand-alone commands that reproduce it.

    python bench/workloads_baselines.py                                  # baselines only
    python bench/workloads_baselines.py --port 6379 --label Redis        # plus a live server
    python bench/workloads_baselines.py --server 'Redis 7.0.15=127.0.0.1:6399' \
        --server Predis=127.0.0.1:6400                                   # several, side by side
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workloads.generators import GENERATORS, make_generator
from workloads.replay import ReplayConfig, replay
from workloads.report import comparison_markdown, provenance, replay_markdown, sim_markdown, write_json
from workloads.sim import DEFAULT_POLICIES, SimConfig, simulate
from workloads.trace import write_trace


METHOD = """
## How the rows are made, and how to reproduce each

* **libCacheSim rows** (LRU ... Belady): `predis-sim TRACE --sizes 0.01,0.05,0.1,0.2 --warmup 0.1
  --policies ...` on the trace made by `predis-workload KIND --requests 60000 --seed 1 --out KIND.csv`
  (the generators are deterministic for a seed, so the trace, and these rows, are identical on any
  machine). Cache sizes are in bytes, objects carry their trace size.
* **Server rows** (Redis, Predis): `predis-replay KIND.csv --host H --port P --mode cache-aside
  --size F --warmup 0.1 --concurrency 2 --label L`, one run per size, against a server started
  empty with persistence off (`redis-server --port P --save "" --appendonly no`, `predis-server
  --port P --save ""`). The replay FLUSHALLs, sets `maxmemory-policy allkeys-lru` and
  `maxmemory` = the empty server's `used_memory` (after the replay's connections have grown their
  buffers to the largest value) + the cache size, resets the stats, replays the first 10% as
  warm-up, then reads the server's `keyspace_hits`/`keyspace_misses` over the rest. The exact
  command of each row is listed under each workload. Hit ratios are deterministic up to the
  interleaving of the two client threads and the servers' sampled eviction; latency and req/s depend
  on the machine's load (recorded per row).
* **Same nominal size, same effective size?** `used_memory` means different things: Redis counts
  the allocator's bytes (about 0.9 MiB for an empty server, which the baseline subtracts, plus
  per-key overhead: dict entry, robj, sds header, allocator rounding), Predis counts only its
  store (key and value objects as `sys.getsizeof` sees them plus per-slot metadata arrays; 0 when
  empty, so the baseline is 0). Neither counts the values alone, so each row also gives
  *resident data*: the value bytes the server held at the end of the replay (SCAN + STRLEN, with
  maxmemory lifted first so the counting itself evicts nothing) and their share of the nominal
  cache size; it is one snapshot, not an average over the run. Compare hit ratios of the two servers together with that
  column: a server that fits more data in the same `maxmemory` gets a higher hit ratio for that
  reason alone. libCacheSim's caches hold exactly the nominal size of values (100%). Measured
  with 5,000 SETs into each empty server (`used_memory` growth minus the value bytes): Redis
  7.0.15 spends about 83 B per key with 100-byte values, 93 B at 1,000 and 165 B at 4,000 (jemalloc
  size classes); Predis 0.1.0 (CPU store) 190 B per key at every value size. So with small values
  (hft) Predis holds fewer keys than Redis in the same cache size, with large ones (ml-training,
  gaming) about as many. Redis's effective room also moves with its client buffers, which
  `used_memory` counts and the baseline only estimates: the baseline is taken with the replay's
  connections' buffers grown to the largest value, which Redis later shrinks (more room than
  nominal: above 100% resident is possible with large values), while INFO replies and query
  buffers can take room back (at hft's 1%, 20 KiB, they took all of it and Redis refused every
  SET with OOM). Predis's `used_memory` has no such term, but it evicts 16 sampled victims at a
  time, so it sits up to 15 keys below its limit.
* **Policies.** Both servers run `allkeys-lru`, set by the replay with CONFIG SET: Redis's is
  approximated LRU (5 sampled keys per eviction); Predis's is its current default LRU-like
  eviction, until the prefetch issue changes the default.
* **Read-through** (Predis only; Redis has no origin): start `predis-server --port P --save ""
  --origin sqlite:///ABS/origin.db`, then `predis-replay KIND.csv --port P --mode read-through
  --origin-db /ABS/origin.db --size F --warmup 0.1 --label Predis`. The replay seeds that SQLite
  file (table `kv(key BLOB PRIMARY KEY, value BLOB)`) with every object, checks with one GET that
  the server reads it, and then only GETs; the server's misses are its origin reads. Its "hit
  ratio (client)" is blank there, since the server answers misses too. These tables do not
  include read-through rows.
"""


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _parse_server(spec: str) -> tuple[str, str, int]:
    """``LABEL=HOST:PORT`` -> (label, host, port)."""
    label, sep, addr = spec.rpartition("=")
    host, _, port = addr.rpartition(":")
    if not sep or not label or not host or not port.isdigit():
        raise SystemExit(f"--server {spec!r}: expected LABEL=HOST:PORT")
    return label, host, int(port)


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
    ap.add_argument("--server", action="append", default=[], metavar="LABEL=HOST:PORT",
                    help="replay against this server too (repeatable)")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--origin-latency-ms", type=float, default=0.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "workloads"))
    ap.add_argument("--render", action="store_true",
                    help="only rewrite the Markdown from the JSON already in --out (no generation, no replay)")
    args = ap.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    kinds = [k.strip() for k in args.workloads.split(",") if k.strip()]
    servers = [_parse_server(x) for x in args.server]
    if args.port is not None or args.host is not None:
        servers.insert(0, (args.label, args.host or "127.0.0.1", args.port or 6379))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.render:
        results = [json.loads((out / f"{kind}.json").read_text()) for kind in kinds]
        _write_markdown(out, results)
        return 0
    start_loadavg = _loadavg()
    prov = provenance([sys.executable, *sys.argv] if argv is None else ["bench/workloads_baselines.py", *argv])
    results: list[dict[str, Any]] = []
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
            replays = [{"label": label, "host": host, "port": port, "runs": []} for label, host, port in servers]
            replay_cmds: list[str] = []
            for size in sizes:
                for rep in replays:
                    cfg = ReplayConfig(trace=str(trace), fmt="csv", host=rep["host"], port=rep["port"], size=size,
                                       warmup=args.warmup, concurrency=args.concurrency,
                                       origin_latency_ms=args.origin_latency_ms)
                    res = replay(cfg)
                    res["label"] = rep["label"]
                    res["trace"] = f"{kind}.csv"
                    rep["runs"].append(res)
                    replay_cmds.append(shlex.join([
                        "predis-replay", f"{kind}.csv", "--host", rep["host"], "--port", str(rep["port"]),
                        "--mode", "cache-aside", "--size", size, "--warmup", str(args.warmup),
                        "--concurrency", str(args.concurrency), "--origin-latency-ms", str(args.origin_latency_ms),
                        "--label", rep["label"]]))
                    print(f"{kind} {rep['label']} replay {size}: server hit ratio {res['hit_ratio_server']:.4f}, "
                          f"load {res['load']}", flush=True)
            sim["trace"] = f"{kind}.csv"
            replays = [rep for rep in replays if rep["runs"]]
            result = {"workload": kind, "requests": args.requests, "seed": args.seed, "warmup": args.warmup,
                      "provenance": prov, "start_loadavg": start_loadavg,
                      "reproduce": {"generate": shlex.join(gen_cmd), "sim": shlex.join(sim_cmd),
                                    "replay": replay_cmds},
                      "sim": sim, "replays": replays, "seconds": time.time() - t0}
            write_json(result, out / f"{kind}.json")
            results.append(result)
            print(f"{kind}: done in {time.time() - t0:.1f}s", flush=True)
    _write_markdown(out, results)
    print((out / "README.md").read_text())
    return 0


def _workload_markdown(result: dict[str, Any]) -> str:
    sim, replays, repro = result["sim"], result.get("replays") or [], result["reproduce"]
    prov = result["provenance"]
    md = [f"## {result['workload']}\n",
          f"Run {prov['date']} (`{prov['command']}`), load average {result.get('start_loadavg', 'unknown')} at "
          "its start." + (f" Note: {result['resident_note']}." if result.get("resident_note") else "") + "\n",
          sim_markdown(sim, replays)]
    if replays:
        md.append("\nSide by side (hit ratio; in brackets the value bytes each server held at the end, as a share "
                  "of the nominal cache size):\n\n" + comparison_markdown(sim, replays))
    for rep in replays:
        md.append("\n" + replay_markdown(rep["runs"], rep["label"]))
    md.append("\nReproduce:\n\n```\n" + repro["generate"] + "\n" + repro["sim"] + "\n"
              + "".join(cmd + "\n" for cmd in repro["replay"]) + "```\n")
    return "\n".join(md)


def _write_markdown(out: Path, results: list[dict[str, Any]]) -> None:
    """``KIND.md`` for each workload and ``README.md`` with them all, from the results' JSON."""
    first = results[0]
    prov = first["provenance"]
    dates = sorted({res["provenance"]["date"] for res in results})
    rows = [run for res in results for rep in res.get("replays") or [] for run in rep["runs"]]
    busy = [run["load"]["cpu_busy"] for run in rows if run.get("load", {}).get("cpu_busy") is not None]
    load1 = [run["load"]["loadavg"][0] for run in rows if (run.get("load") or {}).get("loadavg")]
    starts = "; ".join(sorted({str(res.get("start_loadavg", "unknown")) for res in results}))
    load_line = (f"- machine load (shared with other engineers' jobs): load average at the start of each run {starts} "
                 f"on {prov['machine']['cores']} cores")
    if busy:
        load_line += (f"; during the replays' measured phases all CPUs were {min(busy):.0%}–{max(busy):.0%} busy "
                      f"and the 1-minute load average was {min(load1):.2f}–{max(load1):.2f} (each row gives its "
                      "own); latency and req/s are only comparable between rows run under similar load")
    summary = [
        "# Workload baselines\n",
        (f"- date: {', '.join(dates)} (each workload names its run)\n- machine: {prov['machine']['cpu_model']}, {prov['machine']['cores']} cores, "
         f"{prov['machine']['platform']}, Python {prov['machine']['python']}\n- command: `{prov['command']}`\n"
         f"- {first['requests']:,} requests per workload, seed {first['seed']}, warm-up "
         f"{first.get('warmup', first['sim']['warmup']):.0%} excluded; sizes are fractions of the trace "
         "footprint (sum of distinct objects' sizes), in bytes.\n" + load_line + ".\n"),
        METHOD,
    ]
    for res in results:
        text = _workload_markdown(res)
        (out / f"{res['workload']}.md").write_text(text)
        summary.append(text)
    (out / "README.md").write_text("\n".join(summary))


if __name__ == "__main__":
    sys.exit(main())
