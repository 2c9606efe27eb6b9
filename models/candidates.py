"""Candidate generation from the access stream: which keys may be read soon after this one.

Three sources, all learned online from the past only:

* followers (successor/transition statistics): for each key, the keys read within the next
  ``window`` accesses after it, with counts (``followers`` slots per key, the weakest
  replaced, so memory stays bounded); window 1 is the plain transition table, a wider
  window also captures keys read together (co-access);
* strided streams in numeric key suffixes: per key prefix (``user:``) up to ``streams``
  concurrent streams (last suffix, step, confidence), like a CPU's stream prefetcher, so a
  scan interleaved with other clients' reads still shows up: an access continuing a stream
  (``last + step``) raises its confidence, one within ``max_step`` of a young stream sets its
  step, any other starts a stream (the least recently advanced one is replaced). A stream
  whose step repeated yields ``prefix + (suffix + k*step)`` for k = 1..depth, the depth
  growing with confidence up to ``stride_depth`` (the origin's latency is hidden only when
  the prefetch runs several accesses ahead);
* per-key frequency and recency, which the ranker uses to tell hot from one-off keys.

Keys are identified by their 64-bit hash (``models.keycodes``), so the same code runs when
training from collector segments (which hold only hashes) and when serving (where the
prefetcher keeps the hash -> key bytes map for the keys it may fetch).
"""
from __future__ import annotations

from collections import deque
from operator import itemgetter

import numpy as np

#: raw candidate columns, in order; ``models.features.candidate_features`` turns them into features
RAW_COLUMNS = ("follow_count", "trigger_total", "rank", "is_stride", "stride_confidence",
               "stride_distance", "candidate_frequency", "candidate_age")
_NEVER = 1 << 30
_count = itemgetter(1)


class CandidateGenerator:
    # window 6 (was 4): hft reads a symbol's 7 keys back to back, and only a prefetch started at
    # the first key's miss (the client then waits ~2 ms for the origin) is in time for the keys
    # after it; with 4 the last two book levels were left to the strides and mostly missed
    # (exploratory replays: groups read as MMPPPMM, M a miss, P a prefetched hit)
    def __init__(self, followers: int = 6, window: int = 6, stride_depth: int = 16,
                 max_keys: int = 500_000, streams: int = 16, max_step: int = 16) -> None:
        self.followers = followers
        self.window = window
        self.stride_depth = stride_depth
        self.max_streams = streams
        self.max_step = max_step
        self.max_keys = max_keys
        self.follow: dict[int, dict[int, int]] = {}
        self.total: dict[int, int] = {}
        self.freq: dict[int, int] = {}
        self.last_seen: dict[int, int] = {}
        self.recent: deque[int] = deque(maxlen=window)
        # prefix hash -> streams, each [last suffix, step, confidence, position last advanced,
        # furthest suffix already offered as a candidate]
        self.strides: dict[int, list[list[int]]] = {}
        self.current_stream: list[int] | None = None  # the stream the last access advanced
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
        self.current_stream = self._advance_stream(prefix_id, suffix) if suffix >= 0 else None
        self.last_seen[key_id] = self.position
        self.position += 1
        if len(freq) > self.max_keys:
            self._forget()

    def _advance_stream(self, prefix_id: int, suffix: int) -> list[int] | None:
        streams = self.strides.get(prefix_id)
        if streams is None:
            streams = self.strides[prefix_id] = []
        position = self.position
        young = None
        young_distance = self.max_step + 1
        for st in streams:
            distance = suffix - st[0]
            if distance == 0:
                st[3] = position
                return st  # a re-read: the stream neither advances nor breaks
            if distance == st[1]:  # continues the stream (a step is never 0 here)
                st[0] = suffix
                confidence = st[2] + 1
                st[2] = min(1000, confidence)
                st[3] = position
                return st
            if st[2] == 0:
                if distance < 0:
                    distance = -distance
                if distance < young_distance:
                    young, young_distance = st, distance
        if young is not None:
            young[1] = suffix - young[0]
            young[0] = suffix
            young[3] = position
            young[4] = suffix
            return young  # confidence 0: one step seen, not yet repeated
        stream = [suffix, 0, 0, position, suffix]
        if len(streams) < self.max_streams:
            streams.append(stream)
        else:
            advanced = [st[3] for st in streams]
            streams[advanced.index(min(advanced))] = stream  # the least recently advanced
        return stream

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
            ranked = sorted(table.items(), key=_count, reverse=True)  # stable: ties keep their order
            for rank, (cand, count) in enumerate(ranked):
                seen = last_seen.get(cand)
                out.append((cand, -1, prefix_id, (count, total, rank, 0, 0, 0, freq.get(cand, 0),
                                                  position - seen if seen is not None else _NEVER)))
        state = self.current_stream
        if suffix >= 0 and state is not None and state[1] and state[2] >= 1 and state[0] == suffix:
            step, confidence = state[1], state[2]
            depth = min(self.stride_depth, 1 + 2 * confidence)
            # the next step always (its score rises as it nears), further ones once: the
            # frontier; earlier offers were either fetched already or scored too low then
            done = (state[4] - suffix) // step if (state[4] - suffix) * step > 0 else 0
            for k in range(1, depth + 1):
                if 1 < k <= done:
                    continue
                target = suffix + k * step
                if target >= 0:
                    out.append((-1, target, prefix_id, (0, total, self.followers, 1, confidence, k, 0, _NEVER)))
            state[4] = suffix + depth * step


def stride_id(prefix_id: int, suffix: int) -> int:
    """The id a stride candidate has in hashed training data: looked up via (prefix, suffix)."""
    return (prefix_id * 1_000_003 + suffix) & 0xFFFFFFFFFFFFFFFF


def raw_matrix(rows: list[tuple]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(RAW_COLUMNS))
