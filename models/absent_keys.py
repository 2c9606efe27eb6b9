"""Keys the origin answered "not found" to a prefetch, not prefetched again for a while.

Stride candidates run past the ends of what the origin holds (database: 1.55x the origin reads
of no prefetching at 10% of the footprint, most of them such keys). The set is bounded (the
oldest forgotten first) and timed, as the origin may gain the key; client misses still read it.
"""
from __future__ import annotations

import time

ABSENT_KEYS = 16384
ABSENT_SECONDS = 60.0


class AbsentKeys:
    def __init__(self, capacity: int = ABSENT_KEYS, seconds: float = ABSENT_SECONDS) -> None:
        self.capacity = capacity
        self.seconds = seconds
        self._seen: dict[bytes, float] = {}  # key -> monotonic time it was found absent

    def __len__(self) -> int:
        return len(self._seen)

    def recent(self, key: bytes) -> bool:
        """Whether ``key`` was found absent less than ``seconds`` ago (an older note is dropped)."""
        if not self._seen:
            return False
        seen = self._seen.get(key)
        if seen is None:
            return False
        if time.monotonic() - seen < self.seconds:
            return True
        del self._seen[key]
        return False

    def add(self, key: bytes) -> None:
        seen = self._seen
        seen.pop(key, None)  # re-inserted: the dict's order stays oldest-first
        seen[key] = time.monotonic()
        if len(seen) > self.capacity:
            del seen[next(iter(seen))]
