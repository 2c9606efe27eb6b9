"""Cache sizes given as a fraction of a trace's footprint or as bytes with a unit suffix."""

from __future__ import annotations

import re

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_cache_size(text: str, footprint_bytes: int) -> int:
    """``"0.05"`` → 5% of ``footprint_bytes``; ``"64MB"``/``"64MiB"``/``"1000B"`` → bytes.

    A bare number up to 1 is a fraction; a bare number above 1 is a byte count.
    """
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError(f"bad cache size {text!r}: use a fraction like 0.05 or bytes like 64MB")
    number, unit = float(m.group(1)), m.group(2).lower()
    if unit not in _UNITS:
        raise ValueError(f"bad unit {m.group(2)!r} in cache size {text!r}")
    if unit == "" and number <= 1.0:
        if number <= 0:
            raise ValueError(f"cache size fraction must be > 0, got {text!r}")
        return max(1, int(number * footprint_bytes))
    return max(1, int(number * _UNITS[unit]))


def parse_size_list(text: str) -> list[str]:
    """``"0.01,0.05,64MB"`` → ``["0.01", "0.05", "64MB"]``."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise ValueError("no cache sizes given")
    return items


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
