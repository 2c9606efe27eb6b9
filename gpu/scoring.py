"""Vectorised eviction scoring and expiry sweeps over whole metadata arrays.

Written once against an array namespace ``xp`` (NumPy or CuPy), so the same code scores
the CPU store's arrays on the host and the GPU store's on the device. Lower score = evict
first; ineligible slots (dead, or without TTL under a volatile policy) score +inf.
"""
from __future__ import annotations

from .interface import FLAG_PREFETCHED, EvictionPolicy


def lfu_decayed(xp, lfu_count, lfu_time, now_ms: int, decay_time: int):
    """Redis's LFUDecrAndReturn over arrays: counters minus elapsed decay periods."""
    counter = lfu_count.astype(xp.int64)
    if not decay_time:
        return counter
    elapsed = ((now_ms // 60000) - lfu_time.astype(xp.int64)) & 0xFFFF
    return xp.maximum(counter - elapsed // decay_time, 0)


def victim_scores(xp, meta: dict, policy: EvictionPolicy, now_ms: int, decay_time: int, seed: int = 0):
    """One float64 score per slot; ``meta`` maps metadata array names to arrays of one length."""
    live = meta["live"]
    eligible = live & (meta["expire_at"] > 0) if policy.volatile_only else live
    if policy in (EvictionPolicy.ALLKEYS_RANDOM, EvictionPolicy.VOLATILE_RANDOM):
        score = xp.random.default_rng(seed).random(live.size) if xp.__name__ == "numpy" \
            else xp.random.random(live.size)
    elif policy is EvictionPolicy.VOLATILE_TTL:
        score = meta["expire_at"].astype(xp.float64)
    elif policy.uses_lfu:
        # Counter first, idle time breaks ties (older = lower).
        counter = lfu_decayed(xp, meta["lfu_count"], meta["lfu_time"], now_ms, decay_time)
        score = counter.astype(xp.float64) * 1e13 + meta["last_access"].astype(xp.float64) / 1e3
    elif policy is EvictionPolicy.ALLKEYS_PREDICTIVE:
        score = predictive_scores(xp, meta, now_ms)
    else:
        score = meta["last_access"].astype(xp.float64)
    return xp.where(eligible, score, xp.inf)


# Predicted reuse is an access count (models.frequency) plus the model's probability; an
# unread prefetched entry sits below every reuse level, so it goes first.
PREFETCHED_UNREAD_PENALTY = float(1 << 20)
# Reuse levels are this many milliseconds of idle time apart: recency only orders keys of one
# level (an LFU ordered by history, LRU among equals), as ages stay below 2**30 ms (12 days).
_AGE_SPAN_MS = float(1 << 30)


def predictive_scores(xp, meta: dict, now_ms: int):
    """allkeys-predictive: lowest predicted reuse first, the longest idle among equals.

    ``reuse`` is written by the prefetcher: the key's aged access count (a sketch that remembers
    keys after eviction, so a returning popular key is not treated as new) plus the model's
    probability of an access soon. A key nobody scored has reuse 0: pure LRU among those.
    """
    prefetched = (meta["flags"] & FLAG_PREFETCHED) != 0
    level = meta["reuse"].astype(xp.float64) - xp.where(prefetched, PREFETCHED_UNREAD_PENALTY, 0.0)
    age = xp.clip(now_ms - meta["last_access"].astype(xp.float64), 0.0, _AGE_SPAN_MS - 1.0)
    return level * _AGE_SPAN_MS - age


def best_victims(xp, scores, count: int):
    """Slots of the ``count`` lowest finite scores (unordered)."""
    finite = int((scores < xp.inf).sum())
    count = min(count, finite)
    if count <= 0:
        return xp.zeros(0, dtype=xp.int64)
    if count >= scores.size:
        return xp.flatnonzero(scores < xp.inf)
    return xp.argpartition(scores, count - 1)[:count].astype(xp.int64)


def expired_slots(xp, expire_at, live, now_ms: int):
    """Slots whose expiry time has passed."""
    return xp.flatnonzero(live & (expire_at > 0) & (expire_at <= now_ms))
