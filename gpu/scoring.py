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
        prefetched = (meta["flags"] & FLAG_PREFETCHED).astype(xp.float64)
        # Reuse first, recency breaks ties among keys the model scored alike (never scored).
        score = (meta["reuse"].astype(xp.float64) - 2.0 * prefetched) * 1e13 \
            + meta["last_access"].astype(xp.float64) / 1e3
    else:
        score = meta["last_access"].astype(xp.float64)
    return xp.where(eligible, score, xp.inf)


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
