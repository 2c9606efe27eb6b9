#!/usr/bin/env python3
"""Predictive prefetching against the live server: hit ratio, latency, precision, origin reads.

For each workload (``predis-workload KIND --requests N --seed 1``) the trace is cut in two:
the first ``--train-fraction`` (the prefix) is what the server may learn from, the rest (the
suffix) is what is measured. No oracle: the model never sees the suffix.

1. train: a server with ``collector-sampling 1`` and an export directory is replayed the
   prefix (read-through, prefetch off); its NPZ segments go to ``predis-train``;
2. for each size (fraction of the suffix's footprint), on the suffix, read-through mode with a
   SQLite origin delayed by ``--origin-delay-ms`` (server ``--origin sqlite:///db?delay_ms=2``):
   * ``lru``: prefetch off, allkeys-lru (Predis with LRU);
   * ``prefetch-lru`` / ``prefetch-predictive``: prefetch on with the trained model (PREDIS.MODEL
     LOAD), policy allkeys-lru / allkeys-predictive. The prefetching server first replays the
     prefix (its online candidate statistics learn from the past, as a server in service would),
     then the suffix is measured from a flushed cache;
3. libCacheSim baselines (predis-sim) on the same suffix file, same sizes, same warm-up.

Writes bench/results/prefetch/prefetch.{json,md}.

    python bench/prefetch_bench.py [--requests 60000] [--workloads ml-training,gaming,hft,database,web]
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from servers import predis_process

from workloads.readers import read_trace
from workloads.replay import ReplayConfig, replay
from workloads.report import provenance
from workloads.sim import DEFAULT_POLICIES, SimConfig, simulate
from workloads.trace import concat, write_trace

OUT = ROOT / "bench" / "results" / "prefetch"
BIN = Path(sys.executable).parent
ARMS = ("lru", "prefetch-lru", "prefetch-predictive")
TARGET_KINDS = ("ml-training", "gaming", "hft", "database")


def sh(cmd: list[str], log: list[str]) -> str:
    log.append(shlex.join(cmd))
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def split_trace(path: Path, fraction: float, prefix: Path, suffix: Path) -> tuple[int, int]:
    whole = concat(read_trace(str(path)))
    cut = int(len(whole) * fraction)
    write_trace([whole[:cut]], prefix, "csv")
    write_trace([whole[cut:]], suffix, "csv")
    return cut, len(whole) - cut


def prediction_stats(r: redis.Redis) -> dict[str, str]:
    raw = r.execute_command("PREDIS.PREFETCH", "STATS")
    if isinstance(raw, dict):
        items = raw.items()
    else:
        items = zip(raw[::2], raw[1::2])
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in items}


def tree_commit() -> str:
    """The commit the servers run (``python -m predis_server`` from ROOT), "+changes" when tracked
    files differ from it."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def settle_prefix(r: redis.Redis, timeout_s: float = 5.0) -> None:
    """Flush what the prefix replay left and wait until the prefetcher has counted its unread
    prefetched entries out (its reconcile runs about once a second), so that those, emptied by
    the measured replay's own FLUSHALL, are not counted as the measured part's waste."""
    r.flushall()
    deadline = time.monotonic() + timeout_s
    while int(prediction_stats(r).get("prefetches_unread", 0)) and time.monotonic() < deadline:
        time.sleep(0.1)


def replay_cfg(trace: Path, port: int, size: str, policy: str, origin_db: Path, warmup: float) -> ReplayConfig:
    return ReplayConfig(trace=str(trace), port=port, mode="read-through", size=size, policy=policy,
                        origin_db=str(origin_db), warmup=warmup, concurrency=1)


def replay_cmd(trace: Path, size: str, policy: str, origin_db: Path, warmup: float) -> str:
    return shlex.join(["predis-replay", str(trace), "--port", "PORT", "--mode", "read-through", "--size", size,
                       "--policy", policy, "--origin-db", str(origin_db), "--warmup", str(warmup)])


def train(kind: str, prefix: Path, work: Path, size: str, origin_db: Path, delay_ms: float,
          log: list[str]) -> dict[str, Any]:
    segments = work / f"{kind}-segments"
    models = work / f"{kind}-models"
    server_args = ["--origin", f"sqlite:///{origin_db}?delay_ms={delay_ms:g}", "--collector-sampling", "1",
                   "--collector-export-dir", str(segments)]
    log.append("predis-server " + shlex.join(server_args))
    with predis_process(*server_args) as server:
        replay(replay_cfg(prefix, server.port, size, "allkeys-lru", origin_db, 0.0))
        log.append(replay_cmd(prefix, size, "allkeys-lru", origin_db, 0.0))
    out = sh([sys.executable, "-m", "models.train", str(segments), "--out", str(models), "--version", kind], log)
    return json.loads(out.strip().splitlines()[-1])


def measure(arm: str, kind: str, prefix: Path, suffix: Path, size: str, origin_db: Path, delay_ms: float,
            model_dir: str, warmup: float, log: list[str]) -> dict[str, Any]:
    policy = "allkeys-predictive" if arm == "prefetch-predictive" else "allkeys-lru"
    server_args = ["--origin", f"sqlite:///{origin_db}?delay_ms={delay_ms:g}", "--collector-sampling", "0"]
    if arm != "lru":
        server_args += ["--prefetch-enabled", "yes", "--prefetch-stream-floor", str(args_floor())]
    log.append(f"# {kind} {size} {arm}: predis-server " + shlex.join(server_args))
    with predis_process(*server_args) as server:
        r = redis.Redis(port=server.port)
        if arm != "lru":
            r.execute_command("PREDIS.MODEL", "LOAD", model_dir)
            log.append(f"redis-cli -p PORT PREDIS.MODEL LOAD {model_dir}")
            replay(replay_cfg(prefix, server.port, size, policy, origin_db, 0.0))  # the past, unmeasured
            log.append(replay_cmd(prefix, size, policy, origin_db, 0.0) + "   # learning from the prefix")
            settle_prefix(r)
            log.append("redis-cli -p PORT FLUSHALL   # then PREDIS.PREFETCH STATS until prefetches_unread is 0")
        before = prediction_stats(r)
        result = replay(replay_cfg(suffix, server.port, size, policy, origin_db, warmup))
        log.append(replay_cmd(suffix, size, policy, origin_db, warmup))
        after = prediction_stats(r)
        r.close()
    delta = {k: int(after[k]) - int(before.get(k, 0)) for k in
             ("origin_reads", "origin_shared_reads", "prefetches_issued", "prefetches_stored", "prefetches_used",
              "prefetches_wasted", "prefetches_late", "prefetch_skipped_inflight", "prefetch_skipped_memory",
              "inference_batches", "inference_dropped_batches")}
    decided = delta["prefetches_used"] + delta["prefetches_wasted"]
    unread = int(after.get("prefetches_unread", 0))
    return {"arm": arm, "policy": result["maxmemory_policy"], "hit_ratio": result["hit_ratio_server"],
            "latency_us": result["latency_us"], "throughput_rps": result["throughput_rps"],
            "maxmemory": result["maxmemory"], "cache_bytes": result["cache_bytes"],
            "measured_requests": result["measured_requests"], "evicted_keys": result["evicted_keys"],
            "prefetch": delta, "prefetches_unread_at_end": unread,
            # unread-at-end entries are neither used nor wasted yet: counted as wasted (conservative)
            "precision": delta["prefetches_used"] / (decided + unread) if decided + unread else None,
            "inference_p50_us": float(after.get("inference_p50_us", 0)),
            "inference_p99_us": float(after.get("inference_p99_us", 0))}


_FLOOR = [4]


def args_floor() -> int:
    return _FLOOR[0]


def bench_workload(kind: str, args: argparse.Namespace, work: Path, log: list[str]) -> dict[str, Any]:
    trace = work / f"{kind}.csv"
    sh([str(BIN / "predis-workload"), kind, "--requests", str(args.requests), "--seed", str(args.seed),
        "--out", str(trace)], log)
    prefix, suffix = work / f"{kind}-prefix.csv", work / f"{kind}-suffix.csv"
    n_prefix, n_suffix = split_trace(trace, args.train_fraction, prefix, suffix)
    log.append(f"# split {trace.name}: first {n_prefix} requests -> {prefix.name}, last {n_suffix} -> {suffix.name}")
    origin_db = work / f"{kind}-origin.db"
    sizes = [s.strip() for s in args.sizes.split(",")]
    sim = simulate(SimConfig(trace=str(suffix), sizes=sizes, policies=list(DEFAULT_POLICIES), warmup=args.warmup))
    log.append(shlex.join(["predis-sim", str(suffix), "--sizes", args.sizes, "--warmup", str(args.warmup)]))
    baselines: dict[str, dict[str, float]] = {s: {} for s in sizes}
    for row in sim["rows"] if "rows" in sim else sim.get("policies", []):
        for s in sizes:
            res = row.get("results", {}).get(s)
            if isinstance(res, dict) and res.get("hit_ratio") is not None:
                baselines[s][row["policy"]] = float(res["hit_ratio"])
    t0 = time.perf_counter()
    trained = train(kind, prefix, work, sizes[-1], origin_db, args.origin_delay_ms, log)
    train_s = time.perf_counter() - t0
    out: dict[str, Any] = {"kind": kind, "prefix_requests": n_prefix, "suffix_requests": n_suffix,
                           "model": trained, "train_seconds": round(train_s, 1), "sizes": {}}
    for size in sizes:
        arms = {}
        for arm in args.arms.split(","):
            arms[arm] = measure(arm, kind, prefix, suffix, size, origin_db, args.origin_delay_ms,
                                trained["model_dir"], args.warmup, log)
            print(f"{kind} {size} {arm}: hit {arms[arm]['hit_ratio']:.4f} mean "
                  f"{arms[arm]['latency_us']['mean']:.0f}us prec {arms[arm]['precision']}", flush=True)
        real = {p: v for p, v in baselines[size].items() if p != "Belady"}
        best = max(real, key=real.get) if real else None
        out["sizes"][size] = {"arms": arms, "baselines": baselines[size], "best_baseline": best,
                              "best_baseline_hit_ratio": real.get(best) if best else None}
    return out


def verdicts(kind: str, size_result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    arms = size_result["arms"]
    lru = arms.get("lru")
    best = size_result["best_baseline_hit_ratio"]
    rows = {}
    for name, a in arms.items():
        if name == "lru" or lru is None:
            continue
        vs_lru = a["hit_ratio"] / lru["hit_ratio"] if lru["hit_ratio"] else float("inf")
        vs_best = a["hit_ratio"] / best if best else float("inf")
        origin_ratio = a["prefetch"]["origin_reads"] / lru["prefetch"]["origin_reads"] \
            if lru["prefetch"]["origin_reads"] else float("nan")
        mean_ratio = a["latency_us"]["mean"] / lru["latency_us"]["mean"]
        p99_ratio = a["latency_us"]["p99"] / lru["latency_us"]["p99"]
        if kind in TARGET_KINDS:
            hit_ok = vs_lru >= 1.2 and vs_best >= 1.0
        else:
            hit_ok = vs_best >= 0.98
        precision = a["precision"] or 0.0
        rows[name] = {"vs_lru": vs_lru, "vs_best": vs_best, "origin_reads_ratio": origin_ratio,
                      "mean_latency_ratio": mean_ratio, "p99_ratio": p99_ratio,
                      "hit_target": hit_ok, "latency_target": mean_ratio <= 0.5 and p99_ratio <= 1.0,
                      "precision_target": precision >= 0.5, "origin_target": origin_ratio <= 1.5}
    return rows


def markdown(result: dict[str, Any]) -> str:
    prov = result["provenance"]
    m = prov["machine"]
    lines = ["# Predictive prefetching: live replay results\n",
             (f"- date: {prov['date']}\n- machine: {m.get('cpu_model')}, {m.get('cores')} cores, {m.get('platform')}, "
             f"Python {m.get('python')} (the server, the replay client and the origin share these cores: latencies include that; the notes say what else ran)\n"
             f"- command: `{prov['command']}`\n"
             f"- commit: {prov.get('commit', 'not recorded')}\n"
             f"- {result['requests']:,} requests per workload (seed {result['seed']}); the first "
             f"{result['train_fraction']:.0%} is the training prefix, the rest is measured (warm-up "
             f"{result['warmup']:.0%} of it excluded); read-through with a SQLite origin delayed "
             f"{result['origin_delay_ms']:g} ms; sizes are fractions of the suffix's footprint; one client.\n"
             "- hit ratio: server INFO keyspace hits/(hits+misses) over the measured part; baselines: libCacheSim "
             "(predis-sim) on the same suffix, same sizes and warm-up, Belady excluded from 'best'.\n"
             "- precision = prefetches read / (read + evicted unread + still unread at the end) in the measured "
             "replay (what the unmeasured prefix replay left unread is flushed and counted before it); origin reads = "
             "the server's origin reads (client misses + prefetches) over the whole suffix replay, vs LRU's.\n"
             "- targets: ml-training/gaming/hft/database hit >= 1.2x LRU and >= best baseline; web >= 0.98x "
             "best; mean latency <= 0.5x LRU, p99 <= LRU; precision >= 0.5; origin reads <= 1.5x.\n"),
             ("| workload | size | arm | hit ratio | vs LRU | best baseline | vs best | precision | origin reads "
              "vs LRU | mean µs (vs LRU) | p99 µs (vs LRU) | targets met |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in result["workloads"]:
        for size, sr in w["sizes"].items():
            v = verdicts(w["kind"], sr)
            for name, a in sr["arms"].items():
                lat = a["latency_us"]
                if name == "lru":
                    sim_lru = sr["baselines"].get("LRU")
                    sim_lru = f" (libCacheSim LRU {sim_lru:.2%})" if sim_lru is not None else ""
                    lines.append(f"| {w['kind']} | {size} | Predis LRU, no prefetch{sim_lru} | {a['hit_ratio']:.2%} | 1.00 | "
                                 f"{sr['best_baseline']} {sr['best_baseline_hit_ratio']:.2%} | "
                                 f"{a['hit_ratio'] / sr['best_baseline_hit_ratio']:.2f} | – | 1.00 | "
                                 f"{lat['mean']:.0f} | {lat['p99']:.0f} | |")
                    continue
                x = v[name]
                met = [t for t in ("hit", "latency", "precision", "origin") if x[f"{t}_target"]]
                missed = [t for t in ("hit", "latency", "precision", "origin") if not x[f"{t}_target"]]
                lines.append(
                    f"| {w['kind']} | {size} | {name} | {a['hit_ratio']:.2%} | {x['vs_lru']:.2f} | "
                    f"{sr['best_baseline']} {sr['best_baseline_hit_ratio']:.2%} | {x['vs_best']:.2f} | "
                    f"{(a['precision'] or 0):.2f} | {x['origin_reads_ratio']:.2f} | {lat['mean']:.0f} "
                    f"({x['mean_latency_ratio']:.2f}) | {lat['p99']:.0f} ({x['p99_ratio']:.2f}) | "
                    f"met: {', '.join(met) or '–'}; missed: {', '.join(missed) or '–'} |")
    if "merged_from" in result:
        # parts may come from different dates (and code): each workload's own run is listed
        lines.append("\nOne bench process per workload (the header shows the first); each part's date and command:\n")
        for part in result["merged_from"]:
            kinds = ", ".join(part.get("workloads", [])) or "?"
            lines.append(f"- {kinds}: {part['date']}, commit {part.get('commit', 'not recorded')}, `{part['command']}`")
        lines.append("")
    lines.append("\n## Models (trained on each prefix only)\n")
    lines.append("| workload | events | holdout AUC | holdout precision@0.5 | train s |")
    lines.append("|---|---|---|---|---|")
    for w in result["workloads"]:
        h = w["model"].get("holdout", {})
        lines.append(f"| {w['kind']} | {w['model'].get('events')} | {h.get('auc')} | "
                     f"{h.get('precision_at_threshold')} | {w['train_seconds']} |")
    if result.get("notes"):
        lines.append("\n" + result["notes"].strip() + "\n")
    lines.append("\n## Exact commands\n\n```")
    lines.extend(result["commands"])
    lines.append("```\n")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=60_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workloads", default="ml-training,gaming,hft,database,web")
    ap.add_argument("--sizes", default="0.05,0.1")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--train-fraction", type=float, default=0.3)
    ap.add_argument("--warmup", type=float, default=0.1)
    ap.add_argument("--origin-delay-ms", type=float, default=2.0)
    ap.add_argument("--stream-floor", type=int, default=4,
                    help="prefetch-stream-floor of the prefetching servers (0: the model alone decides)")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--name", default="prefetch", help="output file stem")
    ap.add_argument("--notes", default=None, help="Markdown file appended to the report (observations)")
    ap.add_argument("--merge", nargs="+", default=None,
                    help="only merge these result JSONs (runs of one workload each) into --name")
    ap.add_argument("--commit", default=None,
                    help="with --merge: the commit the parts ran at, for parts whose JSON does not record it")
    args = ap.parse_args(argv)
    if args.merge:
        parts = [json.loads(Path(p).read_text()) for p in args.merge]
        if args.commit:
            for p in parts:
                p["provenance"].setdefault("commit", args.commit)
        result = {**parts[0], "workloads": [w for p in parts for w in p["workloads"]],
                  "verdicts": {k: v for p in parts for k, v in p["verdicts"].items()},
                  "commands": [c for p in parts for c in p["commands"]],
                  "merged_from": [{**p["provenance"], "workloads": [w["kind"] for w in p["workloads"]]}
                                  for p in parts]}
        if args.notes:
            result["notes"] = Path(args.notes).read_text()
        out = Path(args.out)
        (out / f"{args.name}.json").write_text(json.dumps(result, indent=2, default=str))
        (out / f"{args.name}.md").write_text(markdown(result))
        print(markdown(result))
        return 0
    _FLOOR[0] = args.stream_floor
    prov = provenance([sys.executable, *sys.argv] if argv is None else ["bench/prefetch_bench.py", *argv])
    prov["commit"] = tree_commit()
    log: list[str] = []
    workloads = []
    with tempfile.TemporaryDirectory(prefix="predis-prefetch-bench-") as tmp:
        for kind in args.workloads.split(","):
            workloads.append(bench_workload(kind.strip(), args, Path(tmp), log))
    result = {"provenance": prov, "requests": args.requests, "seed": args.seed, "train_fraction": args.train_fraction,
              "warmup": args.warmup, "origin_delay_ms": args.origin_delay_ms, "workloads": workloads,
              "verdicts": {w["kind"]: {s: verdicts(w["kind"], sr) for s, sr in w["sizes"].items()} for w in workloads},
              "commands": log}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2, default=str))
    md = markdown(result)
    (out / f"{args.name}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
