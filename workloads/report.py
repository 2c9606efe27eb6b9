"""Results as JSON and as Markdown tables; the machine and command that produced them."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workloads.units import human_bytes


def machine_info() -> dict[str, Any]:
    """CPU model and core count (from /proc/cpuinfo where there is one), OS and Python."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_model": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Date, machine and the exact command line."""
    argv = list(sys.argv if argv is None else argv)
    return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(), "command": shlex.join(argv)}


def _clean(obj: Any) -> Any:
    """NaN is not JSON: write null."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(_clean(result), indent=2, sort_keys=False) + "\n")


def _pct(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def sim_markdown(result: dict[str, Any], replays: Sequence[dict[str, Any]] = (), metric: str = "hit_ratio") -> str:
    """Policies down, cache sizes across; replayed Predis/Redis figures as extra rows."""
    sizes = result["sizes"]
    head = ["policy"] + [f"{s} ({human_bytes(_size_bytes(result, s))})" for s in sizes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for row in result["policies"]:
        cells = [row["policy"]]
        for s in sizes:
            r = row["results"].get(s)
            cells.append("n/a" if r is None else ("error" if "error" in r else _pct(r.get(metric))))
        lines.append("| " + " | ".join(cells) + " |")
        if row["status"] != "ok":
            notes.append(f"- {row['policy']}: {row['status']}")
        if row.get("note"):
            notes.append(f"- {row['policy']}: {row['note']}")
    for rep in replays:
        by_size = {x["size_arg"]: x for x in rep["runs"]} if "runs" in rep else {rep["size_arg"]: rep}
        label = rep.get("label") or "replay"
        cells = [f"**{label}** (replay, server INFO)"] + [
            _pct(by_size[s]["hit_ratio_server"]) if s in by_size else "—" for s in sizes]
        lines.append("| " + " | ".join(cells) + " |")
    what = "object hit ratio" if metric == "hit_ratio" else "byte hit ratio"
    text = (f"{what}; trace `{result['trace']}`: {result['n_requests']:,} requests, {result['n_objects']:,} objects, "
            f"footprint {human_bytes(result['footprint_bytes'])}; warm-up {result['warmup']:.0%} excluded; "
            f"libCacheSim {result['libcachesim_version']}\n\n" + "\n".join(lines) + "\n")
    if notes:
        text += "\n" + "\n".join(notes) + "\n"
    return text


def _size_bytes(result: dict[str, Any], size: str) -> int:
    for row in result["policies"]:
        r = row["results"].get(size)
        if r and "cache_bytes" in r:
            return int(r["cache_bytes"])
    return 0


def replay_markdown(runs: Sequence[dict[str, Any]], label: str = "") -> str:
    """One row per replay run."""
    head = ["size", "cache", "hit ratio (server)", "hit ratio (client)", "origin reads", "bytes moved",
            "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "mean µs", "req/s", "evicted", "SETs refused (OOM)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        lat = r["latency_us"]
        lines.append("| " + " | ".join([
            str(r["size_arg"]), human_bytes(r["cache_bytes"]), _pct(r["hit_ratio_server"]), _pct(r["hit_ratio_client"]),
            f"{r['counters']['origin_reads']:,}", human_bytes(r["bytes_moved"]),
            *(f"{lat[k]:.0f}" if lat[k] is not None else "—" for k in ("p50", "p90", "p99", "p999", "mean")),
            f"{r['throughput_rps']:.0f}", f"{r['evicted_keys']:,}", f"{r['counters']['set_errors']:,}",
        ]) + " |")
    first = runs[0] if runs else {}
    srv = first.get("server", {})
    title = (f"{label + ': ' if label else ''}{first.get('mode', '')} replay of `{first.get('trace', '')}` against "
             f"{srv.get('host')}:{srv.get('port')} (redis_version {srv.get('redis_version', '?')}), "
             f"policy {first.get('maxmemory_policy', '?')}, origin latency "
             f"{first.get('config', {}).get('origin_latency_ms', 0)} ms, concurrency "
             f"{first.get('config', {}).get('concurrency', 1)}, warm-up {first.get('config', {}).get('warmup', 0):.0%} "
             f"excluded\n\n")
    return title + "\n".join(lines) + "\n"
