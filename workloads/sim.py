"""Baseline cache policies on a trace, through libCacheSim's Python package (pip ``libcachesim``).

Nothing here implements a policy: every policy is libCacheSim's own. Traces in txt/csv are
first converted to a temporary ``oracleGeneral`` file (which carries next-access times, so
Belady is exact); an ``oracleGeneral`` input is used as is. A policy the installed package
lacks, or one that fails, is reported as such with its reason, never substituted.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workloads.readers import CsvSpec, read_trace
from workloads.trace import format_from_path, write_trace
from workloads.units import parse_cache_size

# Display name -> libcachesim class name. The list, in its order.
DEFAULT_POLICIES: dict[str, str] = {
    "LRU": "LRU", "LFU": "LFU", "ARC": "ARC", "S3-FIFO": "S3FIFO", "SIEVE": "Sieve", "W-TinyLFU": "WTinyLFU",
    "LeCaR": "LeCaR", "Cacheus": "Cacheus", "LRB": "LRB", "GLCache": "GLCache", "Belady": "Belady",
}
_ALIASES = {name.lower().replace("-", "").replace("_", ""): cls for name, cls in DEFAULT_POLICIES.items()}


def resolve_policy(name: str) -> tuple[str, str]:
    """``"s3fifo"``/``"S3-FIFO"`` → ``("S3-FIFO", "S3FIFO")``; other libcachesim class names
    (``FIFO``, ``BeladySize``, ``TwoQ``, ``ThreeLCache``...) pass through."""
    norm = name.lower().replace("-", "").replace("_", "")
    if norm in _ALIASES:
        cls = _ALIASES[norm]
        display = next(d for d, c in DEFAULT_POLICIES.items() if c == cls)
        return display, cls
    return name, name


@dataclass
class SimConfig:
    trace: str
    fmt: str | None = None
    sizes: Sequence[str] = ("0.01", "0.05", "0.1", "0.2")
    policies: Sequence[str] = tuple(DEFAULT_POLICIES)
    warmup: float = 0.0
    ignore_obj_size: bool = False
    csv_spec: CsvSpec | None = field(default=None, repr=False)
    default_size: int = 1


def _libcachesim() -> Any:
    try:
        import libcachesim
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError("predis-sim needs libCacheSim's Python package: pip install 'predis[workloads]' "
                           "(or pip install libcachesim)") from e
    return libcachesim


def _as_oracle_general(cfg: SimConfig, tmpdir: str) -> tuple[Path, bool]:
    fmt = cfg.fmt or format_from_path(cfg.trace)
    if fmt == "oracleGeneral":
        return Path(cfg.trace), False
    out = Path(tmpdir) / "trace.oracleGeneral"
    write_trace(read_trace(cfg.trace, fmt, csv_spec=cfg.csv_spec, default_size=cfg.default_size), out, "oracleGeneral")
    return out, True


def simulate(cfg: SimConfig) -> dict[str, Any]:
    """Run every policy at every size; returns the result dictionary (see :mod:`workloads.report`)."""
    lcs = _libcachesim()
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="predis-sim-") as tmp:
        path, converted = _as_oracle_general(cfg, tmp)

        def reader() -> Any:
            params = lcs.ReaderInitParam(ignore_obj_size=cfg.ignore_obj_size)
            return lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE, params)

        r0 = reader()
        n_req = int(r0.get_num_of_req())
        n_obj, footprint = (int(x) for x in r0.get_working_set_size())
        warm_n = int(cfg.warmup * n_req)
        rows: list[dict[str, Any]] = []
        for display, cls_name in (resolve_policy(p) for p in cfg.policies):
            cls = getattr(lcs, cls_name, None)
            base = {"policy": display, "libcachesim_class": cls_name}
            if cls is None or not isinstance(cls, type) or not issubclass(cls, lcs.CacheBase):
                rows.append({**base, "status": f"missing: libcachesim {lcs.__version__} has no policy {cls_name!r}",
                             "results": {}})
                continue
            results: dict[str, Any] = {}
            status = "ok"
            for size in cfg.sizes:
                cache_bytes = parse_cache_size(size, footprint)
                t0 = time.perf_counter()
                try:
                    cache = cls(cache_size=cache_bytes)
                    rd = reader()
                    if warm_n:
                        cache.process_trace(rd, 0, warm_n)
                        miss, byte_miss = cache.process_trace(rd, warm_n, -1)
                    else:
                        miss, byte_miss = cache.process_trace(rd)
                except ImportError as e:
                    status = f"missing: {e}"
                    break
                except Exception as e:  # noqa: BLE001 - a failing policy is reported, not hidden
                    results[size] = {"error": repr(e)}
                    status = "error"
                    continue
                results[size] = {"cache_bytes": cache_bytes, "hit_ratio": 1.0 - float(miss),
                                 "byte_hit_ratio": 1.0 - float(byte_miss), "seconds": time.perf_counter() - t0}
            rows.append({**base, "status": status, "results": results})
        _flag_lru_clones(rows, cfg.sizes)
    return {
        "kind": "sim",
        "trace": str(cfg.trace),
        "format": cfg.fmt or format_from_path(cfg.trace),
        "converted_to_oracleGeneral": converted,
        "libcachesim_version": getattr(lcs, "__version__", "?"),
        "n_requests": n_req,
        "n_objects": n_obj,
        "footprint_bytes": footprint,
        "ignore_obj_size": cfg.ignore_obj_size,
        "warmup": cfg.warmup,
        "warmup_requests": warm_n,
        "sizes": list(cfg.sizes),
        "policies": rows,
        "total_seconds": time.time() - t_start,
    }


def _flag_lru_clones(rows: list[dict[str, Any]], sizes: Sequence[str]) -> None:
    """Learned policies (LRB, ThreeLCache) fall back to LRU until they have trained; say so when a
    policy's figures equal LRU's exactly at every size, rather than let it pass as a result."""
    lru = next((r for r in rows if r["libcachesim_class"] == "LRU" and r["status"] == "ok"), None)
    if lru is None:
        return
    for row in rows:
        if row is lru or row["status"] != "ok" or not row["results"]:
            continue
        same = all(
            s in row["results"] and s in lru["results"]
            and row["results"][s].get("hit_ratio") == lru["results"][s].get("hit_ratio")
            and row["results"][s].get("byte_hit_ratio") == lru["results"][s].get("byte_hit_ratio")
            for s in sizes
        )
        if same:
            row["note"] = "identical to LRU at every size (a learned policy that has not left its LRU warm-up?)"
