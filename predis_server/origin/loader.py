"""OriginLoader: single-flight reads, demand before prefetch, timeouts and a circuit breaker.

Concurrent loads of one key share one origin read (``inflight``: key -> future), whether a
client's miss or a prefetch started it. Blocking adapters run in the loader's own worker
threads, never on the event loop; asyncio-native adapters run as tasks.

Two classes of read, one queue each:

* **demand** reads (a client waits on them) are always started first;
* **prefetch** reads (``load(key, prefetch=True)``) start only when no demand read is
  queued and fewer than ``prefetch_slots`` prefetches are running, so at least
  ``threads - prefetch_slots`` workers are always left to clients. A demand miss on a key
  whose prefetch is still queued promotes that read to the demand queue (``promoted``); on
  one already running, it waits for the rest of that read (``shared``).

A finished read is handed to the loop with one ``call_soon_threadsafe``; callbacks given as
``load(..., then=fn)`` or ``then(key, fn)`` run right there (``fn(value, error)``, in the
order given), one loop iteration before the future's done-callbacks. ``when_demand_started(fn)`` runs ``fn`` on the loop once every
queued demand read has been taken by a worker (the read access hook defers learning to then,
so it does not hold the interpreter while a client's read waits to start).

Timeouts: a demand read fails after ``timeout_s`` from its request; a prefetch read after
``timeout_s`` of running (time queued behind clients is not the origin's fault). After
``breaker_threshold`` consecutive failures the breaker opens: reads fail at once with
``OriginUnavailable`` for ``breaker_cooldown_s`` (doubling while the origin keeps failing,
up to 30 s); then one trial read is let through (half-open) and a success closes it.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .base import Origin, OriginError

log = logging.getLogger("predis.origin")

QUEUED, RUNNING, DONE = 0, 1, 2


class OriginUnavailable(OriginError):
    """The circuit breaker is open: the origin is not asked."""


class _Read:
    __slots__ = ("asked", "demand", "future", "key", "ran_demand", "started", "state", "task", "then", "timer")

    def __init__(self, key: bytes, future: asyncio.Future, demand: bool) -> None:
        self.key = key
        self.future = future
        self.demand = demand
        self.ran_demand = demand  # the class it was started as (which running count it is in)
        self.state = QUEUED
        self.asked = time.monotonic()
        self.started = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.then: list[Callable[[Any, BaseException | None], None]] = []
        self.task: asyncio.Task | None = None


class OriginLoader:
    def __init__(self, origin: Origin, timeout_s: float = 1.0, threads: int = 16,
                 breaker_threshold: int = 5, breaker_cooldown_s: float = 1.0,
                 prefetch_slots: int | None = None) -> None:
        self.origin = origin
        self.timeout_s = timeout_s
        self.breaker_threshold = breaker_threshold
        self.base_cooldown_s = breaker_cooldown_s
        self.cooldown_s = breaker_cooldown_s
        self.threads = max(1, threads)
        self.prefetch_slots = max(1, self.threads // 2 if prefetch_slots is None else prefetch_slots)
        self.inflight: dict[bytes, asyncio.Future] = {}
        self._reads: dict[bytes, _Read] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # queues and worker state, shared with the worker threads under _cond
        self._cond = threading.Condition(threading.Lock())
        self._demand: deque[_Read] = deque()
        self._prefetch: deque[_Read] = deque()
        self._workers: list[threading.Thread] = []
        self._idle = 0                # workers waiting for work and not yet woken
        self._closed = False
        self.demand_queued = 0        # demand reads not yet taken by a worker
        self.demand_running = 0
        self.prefetch_running = 0
        self._started_waiters: list[Callable[[], None]] = []
        # counters shown in INFO
        self.reads = 0          # reads sent to the origin
        self.demand_reads = 0   # of which started by a client's miss
        self.prefetch_reads = 0
        self.shared = 0         # loads served by another caller's in-flight read
        self.promoted = 0       # queued prefetch reads moved ahead because a client needs them
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

    @property
    def pool(self) -> bool:
        """Whether reads run in worker threads (a blocking adapter)."""
        return self.origin.blocking

    # -- requests (event loop) --------------------------------------------------------------
    def load(self, key: bytes, prefetch: bool = False,
             then: Callable[[Any, BaseException | None], None] | None = None) -> asyncio.Future:
        """A future for ``key``'s origin value (None when the origin has no such key).

        Fails with OriginError (timeouts and an open breaker included). Callers that share
        a key share the future, so they must not cancel it. ``then(value, error)`` is
        called on the loop when the read ends, before the future's callbacks.
        """
        read = self._reads.get(key)
        if read is not None:
            self.shared += 1
            if then is not None:
                read.then.append(then)
            if not prefetch and not read.demand:
                self._promote(read)
            return read.future
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self.open_until:
            if time.monotonic() < self.open_until or self.half_open_trial:
                self.rejected += 1
                error = OriginUnavailable("circuit breaker open after repeated origin failures")
                future.set_exception(error)
                future.exception()  # mark retrieved: a refused prefetch need not be awaited
                if then is not None:
                    loop.call_soon(then, None, error)
                return future
            self.half_open_trial = True
        read = _Read(key, future, not prefetch)
        if then is not None:
            read.then.append(then)
        self._reads[key] = read
        self.inflight[key] = future
        self.reads += 1
        if prefetch:
            self.prefetch_reads += 1
        else:
            self.demand_reads += 1
        read.timer = loop.call_later(self.timeout_s, self._expire, read)
        if self.origin.blocking:
            self._enqueue(read)
        elif read.demand or self.prefetch_running < self.prefetch_slots:
            self._start_task(read)
        else:
            self._prefetch.append(read)
        return future

    def then(self, key: bytes, callback: Callable[[Any, BaseException | None], None]) -> bool:
        """Add ``callback(value, error)`` to ``key``'s in-flight read (after those given
        before); False when none is in flight."""
        read = self._reads.get(key)
        if read is None:
            return False
        read.then.append(callback)
        return True

    def when_demand_started(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop once no demand read waits for a worker (soon, if none does)."""
        loop = self._loop or asyncio.get_running_loop()
        with self._cond:
            if self.demand_queued:
                self._started_waiters.append(callback)
                return
        loop.call_soon(callback)

    def _promote(self, read: _Read) -> None:
        read.demand = True
        read.asked = time.monotonic()  # a client's timeout runs from now
        self.promoted += 1
        if not self.origin.blocking:
            if read.state == QUEUED:
                self._start_task(read)
            return
        with self._cond:
            if read.state == QUEUED:  # its entry in the prefetch queue is skipped when reached
                self._demand.append(read)
                self.demand_queued += 1
                self._wake()

    def _enqueue(self, read: _Read) -> None:
        with self._cond:
            if read.demand:
                self._demand.append(read)
                self.demand_queued += 1
            else:
                self._prefetch.append(read)
                if self.prefetch_running >= self.prefetch_slots:
                    return  # a finishing prefetch worker takes it
            self._wake()

    def _wake(self) -> None:
        """Under _cond: wake an idle worker, or start one while fewer than ``threads`` run."""
        if self._idle:
            self._idle -= 1
            self._cond.notify()
        elif len(self._workers) < self.threads and not self._closed:
            worker = threading.Thread(target=self._work, name=f"predis-origin-{len(self._workers)}",
                                      daemon=True)
            self._workers.append(worker)
            worker.start()

    # -- worker threads ---------------------------------------------------------------------
    def _take(self) -> _Read | None:
        """Under _cond: the next read to run, demand reads first."""
        demand = self._demand
        while demand:
            read = demand.popleft()
            if read.state == QUEUED:
                read.ran_demand = True
                self.demand_queued -= 1
                self.demand_running += 1
                if not self.demand_queued and self._started_waiters:
                    waiters, self._started_waiters = self._started_waiters, []
                    self._call_on_loop(self._run_waiters, waiters)
                return read
        if self.prefetch_running < self.prefetch_slots:
            prefetch = self._prefetch
            while prefetch:
                read = prefetch.popleft()
                if read.state == QUEUED:  # else promoted (and taken) or expired
                    read.ran_demand = False
                    self.prefetch_running += 1
                    return read
        return None

    def _work(self) -> None:
        read_origin = self.origin.read
        cond = self._cond
        done: _Read | None = None
        while True:
            with cond:
                if done is not None:
                    if done.ran_demand:
                        self.demand_running -= 1
                    else:
                        self.prefetch_running -= 1
                    done = None
                while True:
                    if self._closed:
                        return
                    read = self._take()
                    if read is not None:
                        break
                    self._idle += 1
                    cond.wait()
                read.state = RUNNING
                read.started = time.monotonic()
            value = error = None
            try:
                value = read_origin(read.key)
            except BaseException as exc:  # noqa: BLE001 - handed to the loop as the read's error
                error = exc
            done = read  # counted out of the running reads at the next lock
            if not self._call_on_loop(self._finish, read, value, error):
                return

    def _call_on_loop(self, fn: Callable[..., None], *args: Any) -> bool:
        try:
            self._loop.call_soon_threadsafe(fn, *args)  # type: ignore[union-attr]
        except RuntimeError:  # the loop is closed: the server is gone
            return False
        return True

    @staticmethod
    def _run_waiters(waiters: list[Callable[[], None]]) -> None:
        for fn in waiters:
            try:
                fn()
            except Exception:
                log.exception("origin start callback failed")

    # -- asyncio-native adapters ------------------------------------------------------------
    def _start_task(self, read: _Read) -> None:
        read.state = RUNNING
        read.started = time.monotonic()
        read.ran_demand = read.demand
        if read.demand:
            self.demand_running += 1
        else:
            self.prefetch_running += 1
        assert self._loop is not None
        read.task = self._loop.create_task(self._run_task(read))

    async def _run_task(self, read: _Read) -> None:
        value = error = None
        try:
            value = await self.origin.aget(read.key)
        except asyncio.CancelledError:
            error = OriginError(f"timeout after {self.timeout_s * 1000:g} ms")
        except BaseException as exc:  # noqa: BLE001
            error = exc
        if read.ran_demand:
            self.demand_running -= 1
        else:
            self.prefetch_running -= 1
            while self._prefetch and self.prefetch_running < self.prefetch_slots:
                queued = self._prefetch.popleft()
                if queued.state == QUEUED:
                    self._start_task(queued)
        self._finish(read, value, error)

    # -- completion (event loop) ------------------------------------------------------------
    def _finish(self, read: _Read, value: Any, error: BaseException | None) -> None:
        if read.state == DONE:
            return  # timed out meanwhile: the late answer is dropped
        read.state = DONE
        if read.timer is not None:
            read.timer.cancel()
        self._forget(read)
        if error is not None:
            self.errors += 1
            if not isinstance(error, OriginError):  # an adapter bug reaches the client as an error
                error = OriginError(f"{type(error).__name__}: {error}")
            self._failed(read, error)
            return
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
        self._answer(read, value, None)

    def _answer(self, read: _Read, value: Any, error: OriginError | None) -> None:
        future = read.future
        if not future.done():  # first: then-callbacks may read the future
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)
                future.exception()  # prefetches may drop a failure; clients get it through then/resume
        for fn in read.then:  # in the order they were given: the read's starter first
            try:
                fn(value, error)
            except Exception:
                log.exception("origin load callback failed")

    def _forget(self, read: _Read) -> None:
        if self._reads.get(read.key) is read:
            del self._reads[read.key]
            self.inflight.pop(read.key, None)

    def _expire(self, read: _Read) -> None:
        if read.state == DONE:
            return
        loop = self._loop
        assert loop is not None
        if read.state == QUEUED and not read.demand:
            read.timer = loop.call_later(self.timeout_s, self._expire, read)
            return  # a prefetch waiting behind clients: its time starts when it runs
        left = self.timeout_s - (time.monotonic() - (read.asked if read.demand else read.started))
        if left > 1e-4:  # promoted, or a prefetch that started late
            read.timer = loop.call_later(left, self._expire, read)
            return
        if read.state == QUEUED:  # a demand read no worker took in time
            with self._cond:
                if read.state == QUEUED:
                    self.demand_queued -= 1
                    if not self.demand_queued and self._started_waiters:
                        waiters, self._started_waiters = self._started_waiters, []
                        loop.call_soon(self._run_waiters, waiters)
                read.state = DONE
        read.state = DONE
        self._forget(read)
        if read.task is not None:
            read.task.cancel()
        self.timeouts += 1
        self._failed(read, OriginError(f"timeout after {self.timeout_s * 1000:g} ms"))

    def _failed(self, read: _Read, exc: OriginError) -> None:
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
        self._answer(read, None, exc)

    def close(self) -> None:
        """Stop the workers; reads not started fail (running ones still answer)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            queued = [r for r in self._reads.values() if r.state == QUEUED]
            for read in queued:
                read.state = DONE
            self.demand_queued = 0
            waiters, self._started_waiters = self._started_waiters, []
        if waiters and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon(self._run_waiters, waiters)
        for read in queued:
            if read.timer is not None:
                read.timer.cancel()
            self._forget(read)
            self._answer(read, None, OriginError("origin closed"))
        self.origin.close()
