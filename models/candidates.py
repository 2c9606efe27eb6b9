"""Candidate generation from the access stream: which keys may be read soon after this one.

Three sources, all learned online from the past only:

* followers (successor/transition statistics): for each key, the keys read within the next
  ``window`` accesses after it, with counts (``followers`` slots per key, the weakest
  replaced, so memory stays bounded); window 1 is the plain transition table, a wider
  window also captures keys read together (co-access);
* strides in numeric key suffixes: per key prefix (``user:``), the last suffix and the
  last step; when the same step repeats, ``prefix + (suffix + k*step)`` for k = 1..depth;
* per-key frequency and recency, which the ranker uses to tell hot from one-off keys.

Keys are identified by their 64-bit hash (``models.keycodes``), so the same code runs when
training from collector segments (which hold only hashes) and when serving (where the
prefetcher keeps the hash -> key bytes map for the keys it may fetch).
"""
from __future__ import annotations

from collections import deque

import numpy as np

#: raw candidate columns, in order; ``models.features.candidate_features`` turns them into features
RAW_COLUMNS = ("follow_count", "trigger_total", "rank", "is_stride", "stride_confidence",
               "stride_distance", "candidate_frequency", "candidate_age")
_NEVER = 1 << 30


class CandidateGenerator:
    def __init__(self, followers: int = 4, window: int = 2, stride_depth: int = 2,
                 max_keys: int = 500_000) -> None:
        self.followers = followers
        self.window = window
        self.stride_depth = stride_depth
        self.max_keys = max_keys
        self.follow: dict[int, dict[int, int]] = {}
        self.total: dict[int, int] = {}
        self.freq: dict[int, int] = {}
        self.last_seen: dict[int, int] = {}
        self.recent: deque[int] = deque(maxlen=window)
        # prefix hash -> [last suffix, step, confidence]
        self.strides: dict[int, list[int]] = {}
        self.position = 0

    def observe(self, key_id: int, prefix_id: int, suffix: int) -> None:
        """Learn from one access (no candidates)."""
        freq = self.freq
        freq[key_id] = freq.get(key_id, 0) + 1
        follow = self.follow
        limit = self.followers
        for earlier in self.recent:
            if earlier == key_id:
                continue
            table = follow.get(earlier)
            if table is None:
                table = follow[earlier] = {}
            count = table.get(key_id)
            if count is not None:
                table[key_id] = count + 1
            elif len(table) < limit:
                table[key_id] = 1
            else:
                # Space-saving: the newcomer takes the weakest slot (and decays it).
                weakest = min(table, key=table.__getitem__)
                table[key_id] = max(1, table.pop(weakest) // 2)
            self.total[earlier] = self.total.get(earlier, 0) + 1
        self.recent.append(key_id)
        if suffix >= 0:
            state = self.strides.get(prefix_id)
            if state is None:
                self.strides[prefix_id] = [suffix, 0, 0]
            else:
                step = suffix - state[0]
                if step != 0:
                    if step == state[1]:
                        state[2] = min(state[2] + 1, 1000)
                    else:
                        state[1], state[2] = step, 0
                    state[0] = suffix
        self.last_seen[key_id] = self.position
        self.position += 1
        if len(freq) > self.max_keys:
            self._forget()

    def _forget(self) -> None:
        """Drop the statistics of the half of the keys seen longest ago (bounded memory)."""
        cutoff = sorted(self.last_seen.values())[len(self.last_seen) // 2]
        for key_id in [k for k, p in self.last_seen.items() if p < cutoff]:
            del self.last_seen[key_id]
            self.freq.pop(key_id, None)
            self.follow.pop(key_id, None)
            self.total.pop(key_id, None)
        if len(self.strides) > self.max_keys:
            self.strides.clear()

    def candidates(self, key_id: int, prefix_id: int, suffix: int,
                   out: list[tuple[int, int, int, tuple]]) -> None:
        """Append (candidate id or -1, stride suffix or -1, prefix id, raw columns) for a trigger.

        Follower candidates carry their hash; stride candidates carry the suffix to build
        (their hash is computed by the caller from the key text when serving, or from
        ``stride_id`` when training).
        """
        total = self.total.get(key_id, 0)
        table = self.follow.get(key_id)
        position = self.position
        freq = self.freq
        last_seen = self.last_seen
        if table:
            ranked = sorted(table.items(), key=lambda kv: -kv[1])
            for rank, (cand, count) in enumerate(ranked):
                seen = last_seen.get(cand)
                out.append((cand, -1, prefix_id, (count, total, rank, 0, 0, 0, freq.get(cand, 0),
                                                  position - seen if seen is not None else _NEVER)))
        if suffix >= 0:
            state = self.strides.get(prefix_id)
            if state is not None and state[1] and state[2] >= 1 and state[0] == suffix:
                for k in range(1, self.stride_depth + 1):
                    target = suffix + k * state[1]
                    if target >= 0:
                        out.append((-1, target, prefix_id, (0, total, self.followers, 1, state[2], k, 0, _NEVER)))


def stride_id(prefix_id: int, suffix: int) -> int:
    """The id a stride candidate has in hashed training data: looked up via (prefix, suffix)."""
    return (prefix_id * 1_000_003 + suffix) & 0xFFFFFFFFFFFFFFFF


def raw_matrix(rows: list[tuple]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(RAW_COLUMNS))
