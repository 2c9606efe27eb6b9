"""Origins: where a read-through miss loads a key (SQLite, one file per key, a Redis server).

``open_origin(url)`` maps a URL scheme to an adapter; ``OriginLoader`` adds single-flight,
timeouts, failure counting and a circuit breaker on top of any adapter.
"""
from __future__ import annotations

from .base import Origin, OriginError, open_origin
from .loader import OriginLoader, OriginUnavailable

__all__ = ["Origin", "OriginError", "OriginLoader", "OriginUnavailable", "open_origin"]
