"""OriginLoader: single-flight reads, timeouts, failure counting and a circuit breaker.

Concurrent misses of one key share one origin read (``inflight``). Blocking adapters run
in a thread pool, never on the event loop. After ``breaker_threshold`` consecutive
failures the breaker opens: reads fail at once with ``OriginUnavailable`` for
``breaker_cooldown_s`` (doubling while the origin keeps failing, up to 30 s); then one
trial read is let through (half-open) and a success closes the breaker.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from .base import Origin, OriginError

log = logging.getLogger("predis.origin")


class OriginUnavailable(OriginError):
    """The circuit breaker is open: the origin is not asked."""


class OriginLoader:
    def __init__(self, origin: Origin, timeout_s: float = 1.0, threads: int = 16,
                 breaker_threshold: int = 5, breaker_cooldown_s: float = 1.0) -> None:
        self.origin = origin
        self.timeout_s = timeout_s
        self.breaker_threshold = breaker_threshold
        self.base_cooldown_s = breaker_cooldown_s
        self.cooldown_s = breaker_cooldown_s
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="predis-origin") \
            if origin.blocking else None
        self.inflight: dict[bytes, asyncio.Future] = {}
        self._tasks: set[asyncio.Task] = set()
        # counters shown in INFO
        self.reads = 0          # reads sent to the origin
        self.shared = 0         # loads served by another caller's in-flight read
        self.found = 0
        self.not_found = 0
        self.errors = 0
        self.timeouts = 0
        self.rejected = 0       # refused while the breaker was open
        self.breaker_trips = 0
        self.consecutive_failures = 0
        self.open_until = 0.0
        self.half_open_trial = False

    @property
    def breaker_state(self) -> str:
        if self.open_until == 0.0:
            return "closed"
        return "half-open" if time.monotonic() >= self.open_until else "open"

    def load(self, key: bytes) -> asyncio.Future:
        """A future for ``key``'s origin value (None when the origin has no such key).

        Fails with OriginError (timeouts and an open breaker included). Callers that
        share a key share the future, so they must not cancel it.
        """
        future = self.inflight.get(key)
        if future is not None:
            self.shared += 1
            return future
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self.open_until:
            if time.monotonic() < self.open_until or self.half_open_trial:
                self.rejected += 1
                future.set_exception(OriginUnavailable("circuit breaker open after repeated origin failures"))
                future.exception()  # mark retrieved: a refused prefetch need not be awaited
                return future
            self.half_open_trial = True
        self.inflight[key] = future
        self.reads += 1
        task = loop.create_task(self._read(key, future))
        # The loop holds tasks weakly: keep each read alive until it finishes.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return future

    async def _read(self, key: bytes, future: asyncio.Future) -> None:
        try:
            if self.pool is not None:
                loop = asyncio.get_running_loop()
                call = loop.run_in_executor(self.pool, self.origin.read, key)
            else:
                call = self.origin.aget(key)
            value = await asyncio.wait_for(call, self.timeout_s)
        except asyncio.TimeoutError:
            self.timeouts += 1
            self._failed(future, OriginError(f"timeout after {self.timeout_s * 1000:g} ms"))
        except OriginError as exc:
            self.errors += 1
            self._failed(future, exc)
        except Exception as exc:  # an adapter bug must reach the client as an error, not a hang
            self.errors += 1
            self._failed(future, OriginError(f"{type(exc).__name__}: {exc}"))
        else:
            if value is None:
                self.not_found += 1
            else:
                self.found += 1
            self.consecutive_failures = 0
            if self.open_until:
                log.warning("origin %s answers again: circuit breaker closed", self.origin.url)
            self.open_until = 0.0
            self.half_open_trial = False
            self.cooldown_s = self.base_cooldown_s
            if not future.done():
                future.set_result(value)
        finally:
            self.inflight.pop(key, None)

    def _failed(self, future: asyncio.Future, exc: OriginError) -> None:
        self.consecutive_failures += 1
        if self.half_open_trial or self.consecutive_failures >= self.breaker_threshold:
            if self.half_open_trial:
                self.cooldown_s = min(self.cooldown_s * 2, 30.0)
            if not self.open_until or self.half_open_trial:
                self.breaker_trips += 1
                log.warning("origin %s failing (%s): circuit breaker open for %.1fs",
                            self.origin.url, exc, self.cooldown_s)
            self.open_until = time.monotonic() + self.cooldown_s
            self.half_open_trial = False
        if not future.done():
            future.set_exception(exc)
            future.exception()  # prefetches may drop a failure; clients get it through resume()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.origin.close()
