"""The three commands: ``predis-workload``, ``predis-sim`` and ``predis-replay``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workloads.generators import GENERATORS
from workloads.generators.base import param_fields, rank_frequency_slope
from workloads.readers import CsvSpec
from workloads.trace import FORMATS, concat, rechunk, write_trace
from workloads.units import parse_size_list


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _add_trace_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("trace", help="trace file")
    p.add_argument("--format", dest="fmt", choices=FORMATS, default=None,
                   help="trace format (default: from the file name: .csv, .txt, .oracleGeneral/.bin)")
    p.add_argument("--csv-key-col", default=None, help="CSV: key column (0-based index or header name)")
    p.add_argument("--csv-time-col", default=None, help="CSV: time column (index or name; 'none' = row number)")
    p.add_argument("--csv-size-col", default=None, help="CSV: size column (index or name; 'none' = --default-size)")
    p.add_argument("--csv-op-col", default=None, help="CSV: op column (index or name; 'none' = all GETs)")
    p.add_argument("--csv-no-header", action="store_true", help="CSV: the file has no header line")
    p.add_argument("--csv-delimiter", default=",", help="CSV: field delimiter")
    p.add_argument("--default-size", type=int, default=1, help="value size for traces without sizes (txt)")


def _csv_spec(args: argparse.Namespace) -> CsvSpec | None:
    given = [args.csv_key_col, args.csv_time_col, args.csv_size_col, args.csv_op_col]
    if all(g is None for g in given) and not args.csv_no_header and args.csv_delimiter == ",":
        return None

    def col(v: str | None, default: Any) -> Any:
        if v is None:
            return default
        if v.lower() == "none":
            return None
        return int(v) if v.isdigit() else v

    base = CsvSpec()
    return CsvSpec(time_col=col(args.csv_time_col, base.time_col if not args.csv_no_header else None),
                   key_col=col(args.csv_key_col, base.key_col if not args.csv_no_header else 0),
                   size_col=col(args.csv_size_col, base.size_col if not args.csv_no_header else None),
                   op_col=col(args.csv_op_col, base.op_col if not args.csv_no_header else None),
                   tenant_col=None if args.csv_no_header else base.tenant_col,
                   has_header=not args.csv_no_header, delimiter=args.csv_delimiter,
                   default_size=args.default_size)


# -- predis-workload -----------------------------------------------------------------------------
def _workload_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="predis-workload", description="Write a seeded synthetic access trace for one workload.")
    sub = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, gen in GENERATORS.items():
        p = sub.add_parser(kind, help=gen.describe().splitlines()[0], description=gen.describe(),
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("--requests", type=int, required=True, help="number of requests to write")
        p.add_argument("--out", required=True, help="output trace file ('-' for stdout, txt/csv only)")
        p.add_argument("--format", dest="fmt", choices=FORMATS, default=None,
                       help="output format (default: from --out's suffix, else txt)")
        p.add_argument("--stats", action="store_true",
                       help="also print the trace's statistics (distinct keys, read/write mix, skew) as JSON")
        for f in param_fields(gen.Params):
            typ = _bool if f.type in (bool, "bool") else {"int": int, "float": float, "str": str}.get(
                str(f.type), type(f.default))
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=typ, default=f.default,
                           help=f.metadata.get("help", ""))
    return parser


def trace_stats(chunk: np.ndarray) -> dict[str, Any]:
    """Summary statistics of a (small enough) trace, as printed by ``--stats``."""
    keys = chunk["key"]
    sizes = dict(zip(keys.tolist(), chunk["size"].tolist()))
    return {
        "requests": len(chunk),
        "distinct_keys": len(sizes),
        "footprint_bytes": int(sum(sizes.values())),
        "write_fraction": float(np.mean(chunk["op"] == 1)) if len(chunk) else 0.0,
        "sequential_fraction": float(np.mean(np.diff(keys.astype(np.int64)) == 1)) if len(chunk) > 1 else 0.0,
        "rank_frequency_slope_top1000": rank_frequency_slope(keys) if len(chunk) > 10 else None,
        "duration_seconds": float(chunk["ts"][-1] - chunk["ts"][0]) if len(chunk) else 0.0,
    }


def workload_main(argv: Sequence[str] | None = None) -> int:
    args = _workload_parser().parse_args(argv)
    gen_cls = GENERATORS[args.kind]
    params = gen_cls.Params(**{f.name: getattr(args, f.name) for f in param_fields(gen_cls.Params)})
    try:
        gen = gen_cls(params)
    except ValueError as e:
        print(f"predis-workload: {e}", file=sys.stderr)
        return 2
    fmt = args.fmt or ("csv" if args.out.endswith(".csv") else
                       "oracleGeneral" if args.out.endswith((".oracleGeneral", ".bin")) else "txt")
    out = "/dev/stdout" if args.out == "-" else args.out
    if out == "/dev/stdout" and fmt == "oracleGeneral":
        print("predis-workload: oracleGeneral needs a real file (it is rewritten in place)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    if args.stats:
        trace = concat(gen.chunks(args.requests))
        n = write_trace(rechunk([trace], 65536), out, fmt)
        stats = trace_stats(trace)
    else:
        n = write_trace(gen.chunks(args.requests), out, fmt)
        stats = None
    if args.out != "-":
        info = {"kind": args.kind, "requests": n, "out": args.out, "format": fmt,
                "seconds": round(time.perf_counter() - t0, 3), "params": dataclasses.asdict(params)}
        if stats:
            info["stats"] = stats
        print(json.dumps(info, indent=2 if stats else None))
    return 0


# -- predis-sim ----------------------------------------------------------------------------------
def sim_main(argv: Sequence[str] | None = None) -> int:
    from workloads.report import provenance, sim_markdown, write_json
    from workloads.sim import DEFAULT_POLICIES, SimConfig, simulate

    parser = argparse.ArgumentParser(
        prog="predis-sim", description="Hit ratios of well-known cache policies on a trace, via libCacheSim.")
    _add_trace_args(parser)
    parser.add_argument("--sizes", default="0.01,0.05,0.1,0.2",
                        help="cache sizes: fractions of the trace footprint (sum of distinct objects' sizes) "
                             "or bytes with a unit (64MB, 1GiB), comma-separated")
    parser.add_argument("--policies", default=",".join(DEFAULT_POLICIES),
                        help="comma-separated policies (any libcachesim cache class name also works)")
    parser.add_argument("--warmup", type=float, default=0.0,
                        help="fraction of requests that warm the cache and are excluded from the figures")
    parser.add_argument("--ignore-obj-size", action="store_true",
                        help="count objects, not bytes (every object size 1)")
    parser.add_argument("--replay-json", action="append", default=[],
                        help="a predis-replay/bench JSON whose server hit ratios to print beside the policies "
                             "(repeatable)")
    parser.add_argument("--byte-hit-ratio", action="store_true", help="print byte hit ratios instead")
    parser.add_argument("--json", dest="json_out", default=None, help="write the full result as JSON here")
    parser.add_argument("--markdown", default=None, help="write the Markdown table here")
    args = parser.parse_args(argv)
    cfg = SimConfig(trace=args.trace, fmt=args.fmt, sizes=parse_size_list(args.sizes),
                    policies=[p.strip() for p in args.policies.split(",") if p.strip()], warmup=args.warmup,
                    ignore_obj_size=args.ignore_obj_size, csv_spec=_csv_spec(args), default_size=args.default_size)
    try:
        result = simulate(cfg)
    except (RuntimeError, ValueError, OSError) as e:
        print(f"predis-sim: {e}", file=sys.stderr)
        return 2
    result["provenance"] = provenance(["predis-sim", *(argv if argv is not None else sys.argv[1:])])
    replays = [json.loads(Path(p).read_text()) for p in args.replay_json]
    md = sim_markdown(result, replays, "byte_hit_ratio" if args.byte_hit_ratio else "hit_ratio")
    print(md)
    if args.json_out:
        write_json(result, args.json_out)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
    return 0 if all(r["status"] != "error" for r in result["policies"]) else 1


# -- predis-replay -------------------------------------------------------------------------------
def replay_main(argv: Sequence[str] | None = None) -> int:
    from workloads.replay import MODES, ReadThroughUnavailable, ReplayConfig, ReplayError, replay
    from workloads.report import provenance, replay_markdown, write_json

    parser = argparse.ArgumentParser(
        prog="predis-replay", description="Replay a trace against a live Predis or Redis as an application would.")
    _add_trace_args(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--password", default=None)
    parser.add_argument("--mode", choices=MODES, default="cache-aside")
    parser.add_argument("--size", default="0.05",
                        help="cache size: fraction of the trace footprint or bytes with a unit (64MB); "
                             "set with CONFIG SET maxmemory (plus the server's empty used_memory unless "
                             "--no-baseline-memory)")
    parser.add_argument("--policy", default="allkeys-lru",
                        help="maxmemory-policy to CONFIG SET ('keep' leaves the server's own)")
    parser.add_argument("--origin-db", default=None,
                        help="SQLite origin file (table kv(key BLOB PRIMARY KEY, value BLOB)); seeded with the "
                             "trace's keys. Default: a temporary file. Read-through: the file the server reads")
    parser.add_argument("--origin-latency-ms", type=float, default=0.0, help="injected delay per origin access")
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of requests excluded from the figures")
    parser.add_argument("--concurrency", type=int, default=1, help="client threads, one connection each")
    parser.add_argument("--key-prefix", default="", help="prefix of every key")
    parser.add_argument("--write-policy", choices=("update", "invalidate"), default="update",
                        help="on a trace write: SET the new value in the cache, or DEL it")
    parser.add_argument("--no-baseline-memory", action="store_true",
                        help="maxmemory = cache size exactly (Redis then counts its own overhead in it)")
    parser.add_argument("--max-requests", type=int, default=None, help="replay only the first N requests")
    parser.add_argument("--label", default="", help="name for the server in the report (e.g. Redis, Predis)")
    parser.add_argument("--json", dest="json_out", default=None, help="write the full result as JSON here")
    args = parser.parse_args(argv)
    cfg = ReplayConfig(trace=args.trace, fmt=args.fmt, host=args.host, port=args.port, password=args.password,
                       mode=args.mode, size=args.size, policy=None if args.policy == "keep" else args.policy,
                       origin_db=args.origin_db, origin_latency_ms=args.origin_latency_ms, warmup=args.warmup,
                       concurrency=args.concurrency, key_prefix=args.key_prefix, write_policy=args.write_policy,
                       add_baseline_memory=not args.no_baseline_memory, max_requests=args.max_requests,
                       csv_spec=_csv_spec(args), default_size=args.default_size)
    try:
        result = replay(cfg)
    except ReadThroughUnavailable as e:
        print(f"predis-replay: {e}", file=sys.stderr)
        return 3
    except (ReplayError, ValueError, OSError) as e:
        print(f"predis-replay: {e}", file=sys.stderr)
        return 2
    result["label"] = args.label
    result["provenance"] = provenance(["predis-replay", *(argv if argv is not None else sys.argv[1:])])
    print(replay_markdown([result], args.label))
    if result["counters"]["set_errors"]:
        print(f"predis-replay: warning: {result['counters']['set_errors']} SETs were refused (OOM): the cache is "
              "smaller than the server's own per-connection overhead or than single values", file=sys.stderr)
    if args.json_out:
        write_json(result, args.json_out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(workload_main())
