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
            "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "mean µs", "req/s", "evicted", "SETs refused (OOM)",
            "resident data (of cache)", "CPU busy / load 1m"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        lat = r["latency_us"]
        lines.append("| " + " | ".join([
            str(r["size_arg"]), human_bytes(r["cache_bytes"]), _pct(r["hit_ratio_server"]), _pct(r["hit_ratio_client"]),
            f"{r['counters']['origin_reads']:,}", human_bytes(r["bytes_moved"]),
            *(f"{lat[k]:.0f}" if lat[k] is not None else "—" for k in ("p50", "p90", "p99", "p999", "mean")),
            f"{r['throughput_rps']:.0f}", f"{r['evicted_keys']:,}", f"{r['counters']['set_errors']:,}",
            _resident_cell(r), _load_cell(r),
        ]) + " |")
    first = runs[0] if runs else {}
    srv = first.get("server", {})
    title = (f"{label + ': ' if label else ''}{first.get('mode', '')} replay of `{first.get('trace', '')}` against "
             f"{srv.get('host')}:{srv.get('port')} (redis_version {srv.get('redis_version', '?')}"
             f"{', predis_version ' + srv['predis_version'] if srv.get('predis_version') else ''}), "
             f"policy {first.get('maxmemory_policy', '?')}, origin latency "
             f"{first.get('config', {}).get('origin_latency_ms', 0)} ms, concurrency "
             f"{first.get('config', {}).get('concurrency', 1)}, warm-up {first.get('config', {}).get('warmup', 0):.0%} "
             f"excluded\n\n")
    return title + "\n".join(lines) + "\n"


def _resident_cell(r: dict[str, Any]) -> str:
    """Value bytes the server held at the end, and their share of the nominal cache size."""
    if r.get("resident_value_bytes") is None:
        return "—"
    return f"{human_bytes(r['resident_value_bytes'])} ({_pct(r.get('resident_fraction_of_cache'))})"


def _load_cell(r: dict[str, Any]) -> str:
    load = r.get("load") or {}
    busy = load.get("cpu_busy")
    avg = load.get("loadavg")
    if busy is None and not avg:
        return "—"
    return f"{_pct(busy)} / {avg[0]:.2f}" if avg else _pct(busy)


def comparison_markdown(sim: dict[str, Any], replays: Sequence[dict[str, Any]]) -> str:
    """Sizes down; LRU, the best simulated policy, Belady and each replayed server across, each
    server's hit ratio with the share of the nominal cache its data really used."""
    rows = {row["policy"]: row for row in sim["policies"]}
    labels = [rep["label"] for rep in replays]
    head = ["size", "cache", "LRU (sim)", "best sim policy", "Belady"] + [
        f"{label} (resident data)" for label in labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    def ratio(policy: str, size: str) -> float | None:
        r = rows.get(policy, {}).get("results", {}).get(size) or {}
        return r.get("hit_ratio")

    for size in sim["sizes"]:
        online = [(ratio(p, size), p) for p in rows if p != "Belady" and ratio(p, size) is not None]
        best = max(online) if online else (None, "—")
        cells = [size, human_bytes(_size_bytes(sim, size)), _pct(ratio("LRU", size)), f"{best[1]} {_pct(best[0])}",
                 _pct(ratio("Belady", size))]
        for rep in replays:
            run = next((x for x in rep["runs"] if x["size_arg"] == size), None)
            cells.append("—" if run is None else
                         f"{_pct(run['hit_ratio_server'])} ({_pct(run.get('resident_fraction_of_cache'))})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
