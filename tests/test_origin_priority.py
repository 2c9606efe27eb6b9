"""Demand reads before prefetch reads in the origin loader, and learning deferred until a
client's origin read is on its way (predis_server.origin.loader, predis_server.readthrough).

The origin is a real SQLite file read with an injected delay; a gate in front of each read
holds the worker threads where a test needs the queue to fill, so every check is about order
and state, never about how long something took.
"""
from __future__ import annotations

import asyncio
import sqlite3
import threading
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest

from predis_server.origin import OriginError, OriginLoader
from predis_server.origin.sqlite import SqliteOrigin
from predis_server.readthrough import AccessHook, PrefetchLoads
from predis_server.replies import Deferred


class GatedSqlite(SqliteOrigin):
    """SqliteOrigin (delay 2 ms) whose reads record their start, then wait for the gate."""

    def __init__(self, path: str) -> None:
        super().__init__(urlsplit(f"sqlite://{path}"))
        self.url = f"sqlite://{path}?delay_ms=2"
        self.delay_s = 0.002
        self.started: list[bytes] = []
        self.gate = threading.Event()
        self.lock = threading.Lock()

    def read(self, key: bytes) -> bytes | None:
        with self.lock:
            self.started.append(key)
        self.gate.wait(10)
        return super().read(key)


@pytest.fixture
def origin(tmp_path):
    path = tmp_path / "origin.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB)")
    conn.executemany("INSERT INTO kv VALUES (?, ?)", [(b"k%d" % i, b"v%d" % i) for i in range(20)])
    conn.commit()
    conn.close()
    o = GatedSqlite(str(path))
    yield o
    o.gate.set()


async def until(predicate, what: str) -> None:
    """Let the loop run until ``predicate()`` holds (a liveness wait, not a timing check)."""
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def one_running_one_queued(origin) -> tuple[OriginLoader, asyncio.Future, asyncio.Future]:
    """A one-worker loader whose worker holds k1 at the origin's gate, and k2 queued behind it."""
    loader = OriginLoader(origin, threads=1)
    running = loader.load(b"k1")
    await until(lambda: origin.started == [b"k1"], "k1 runs")
    return loader, running, loader.load(b"k2")


def test_demand_read_starts_before_queued_prefetch_reads(origin):
    async def main():
        loader = OriginLoader(origin, threads=2, prefetch_slots=1)
        prefetches = [loader.load(b"k%d" % i, prefetch=True) for i in range(1, 5)]
        await until(lambda: origin.started == [b"k1"], "the first prefetch runs")
        demand = loader.load(b"k9")
        # one prefetch slot: k2..k4 wait; the second worker is left to the client
        await until(lambda: b"k9" in origin.started, "the demand read starts")
        assert origin.started == [b"k1", b"k9"]
        assert loader.demand_reads == 1 and loader.prefetch_reads == 4
        origin.gate.set()
        assert await demand == b"v9"
        assert await asyncio.gather(*prefetches) == [b"v1", b"v2", b"v3", b"v4"]
        assert origin.started[2:] == [b"k2", b"k3", b"k4"]  # prefetches in their own order
        loader.close()

    asyncio.run(main())


def test_queued_demand_reads_go_ahead_of_queued_prefetches(origin):
    async def main():
        loader = OriginLoader(origin, threads=1, prefetch_slots=1)
        futures = [loader.load(b"k%d" % i, prefetch=True) for i in (1, 2, 3)]
        await until(lambda: origin.started == [b"k1"], "the first prefetch runs")
        demand = loader.load(b"k5")  # the only worker is busy: queued, but first in line
        origin.gate.set()
        assert await demand == b"v5"
        await asyncio.gather(*futures)
        assert origin.started == [b"k1", b"k5", b"k2", b"k3"]
        loader.close()

    asyncio.run(main())


def test_a_miss_on_a_queued_prefetch_promotes_it_and_shares_the_read(origin):
    async def main():
        loader = OriginLoader(origin, threads=1, prefetch_slots=1)
        p1, p2, p3 = (loader.load(b"k%d" % i, prefetch=True) for i in (1, 2, 3))
        await until(lambda: origin.started == [b"k1"], "the first prefetch runs")
        answers = []
        demand = loader.load(b"k3", then=lambda v, e: answers.append((v, e)))
        assert demand is p3  # single flight: the client joins the prefetch's read
        other = loader.load(b"k6")
        origin.gate.set()
        assert await demand == b"v3" and await other == b"v6"
        await asyncio.gather(p1, p2)
        # k3 was promoted ahead of k2 and of the later demand read k6; one origin read each
        assert origin.started == [b"k1", b"k3", b"k6", b"k2"]
        assert loader.promoted == 1 and loader.shared == 1 and loader.reads == 4
        assert answers == [(b"v3", None)]
        loader.close()

    asyncio.run(main())


def test_a_miss_on_a_running_prefetch_waits_for_that_read(origin):
    async def main():
        loader = OriginLoader(origin, threads=4)
        prefetch = loader.load(b"k4", prefetch=True)
        await until(lambda: origin.started == [b"k4"], "the prefetch runs")
        demand = loader.load(b"k4")
        assert demand is prefetch and loader.promoted == 1
        origin.gate.set()
        assert await demand == b"v4"
        assert origin.started == [b"k4"] and loader.reads == 1
        loader.close()

    asyncio.run(main())


def test_when_demand_started_waits_for_queued_demand_reads(origin):
    async def main():
        loader = OriginLoader(origin, threads=1)
        seen = []
        loader.when_demand_started(lambda: seen.append("idle"))
        await until(lambda: seen == ["idle"], "runs at once with nothing queued")
        blocker = loader.load(b"k1", prefetch=True)
        await until(lambda: origin.started == [b"k1"], "the prefetch runs")
        demand = loader.load(b"k2")
        loader.when_demand_started(lambda: seen.append((loader.demand_queued, loader.demand_running)))
        await asyncio.sleep(0.02)
        assert seen == ["idle"]  # k2 still waits for the worker
        origin.gate.set()
        assert await demand == b"v2"
        await blocker
        assert seen == ["idle", (0, 1)]  # called once the worker took k2, before it ended
        loader.close()

    asyncio.run(main())


def test_a_queued_prefetch_does_not_time_out_behind_clients(origin):
    async def main():
        loader = OriginLoader(origin, threads=1, prefetch_slots=1, timeout_s=0.05)
        running = loader.load(b"k1", prefetch=True)
        queued = loader.load(b"k2", prefetch=True)
        with pytest.raises(OriginError, match="timeout"):
            await running  # k1 ran past the timeout
        assert not queued.done()  # k2 never started: not the origin's fault
        origin.gate.set()
        assert await queued == b"v2"
        assert loader.timeouts == 1
        loader.close()

    asyncio.run(main())


def test_close_fails_reads_that_never_started(origin):
    async def main():
        loader, running, queued = await one_running_one_queued(origin)
        loader.close()
        with pytest.raises(OriginError, match="closed"):
            await queued
        origin.gate.set()
        assert await running == b"v1"

    asyncio.run(main())


# -- the access hook -------------------------------------------------------------------------
class _Db:
    id = 0

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.keyspace = SimpleNamespace(maxmemory=0)

    def peek(self, key):
        return self.data.get(key)

    def set(self, key, value, expire_at):
        self.data[key] = value

    def clock(self):
        return 0


class _Prefetcher:
    """Records when it learns: the origin reads started by then."""

    evict_owed = 0  # no prefetched store owes an eviction

    def __init__(self, origin) -> None:
        self.origin = origin
        self.unread: dict = {}
        self.order: list = []
        self.learned: list[tuple[list[bytes], list[bytes]]] = []

    def observe(self, events):
        self.learned.append(([e[0] for e in events], list(self.origin.started)))

    def admits(self, db, key):
        return True

    def on_stored(self, db, key):
        pass

    def on_demand_load(self, db, key):
        self.order.append(("late", key))


def _hook(loader, origin):
    loop = asyncio.get_running_loop()
    services = SimpleNamespace(server=SimpleNamespace(loop=loop), error_reply="error", ttl_ms=0,
                               collector=None)
    hook = AccessHook(services)
    hook.loader = loader
    hook.prefetcher = _Prefetcher(origin)
    hook.observing = True
    return hook


def test_learning_waits_until_the_clients_origin_read_has_started(origin, monkeypatch):
    from predis_server import readthrough

    monkeypatch.setattr(readthrough, "LEARN_DEFER_S", 60.0)  # the bound out of the way

    async def main():
        loader = OriginLoader(origin, threads=1)
        hook = _hook(loader, origin)
        client = SimpleNamespace(db=_Db(), user=None)
        busy = PrefetchLoads(loader).load(b"k1")  # the only worker: held at the gate
        await until(lambda: origin.started == [b"k1"], "the prefetch runs")
        reply = hook.on_get(client, b"k2", None)
        assert type(reply) is Deferred and loader.demand_queued == 1
        await asyncio.sleep(0.02)
        assert hook.prefetcher.learned == []  # learning now would hold up k2's worker
        origin.gate.set()
        assert await reply.future == b"v2" and client.db.data[b"k2"] == b"v2"
        await busy
        assert hook.prefetcher.learned[0] == ([b"k2"], [b"k1", b"k2"])  # learned once k2 began
        loader.close()

    asyncio.run(main())


def test_hits_are_learned_at_the_next_miss_or_within_the_deferral(origin, monkeypatch):
    from predis_server import readthrough

    monkeypatch.setattr(readthrough, "LEARN_DEFER_S", 60.0)

    async def main():
        origin.gate.set()
        loader = OriginLoader(origin)
        hook = _hook(loader, origin)
        client = SimpleNamespace(db=_Db(), user=None)
        assert hook.on_get(client, b"a", b"1") == b"1"
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert hook.prefetcher.learned == []  # a hit alone: not learned right after the reply
        assert hook.on_get(client, b"b", b"2") == b"2"
        reply = hook.on_get(client, b"k3", None)  # a miss: learned as its read starts
        assert await reply.future == b"v3"
        await until(lambda: hook.prefetcher.learned, "the batch is learned")
        assert hook.prefetcher.learned[0][0] == [b"a", b"b", b"k3"]
        monkeypatch.setattr(readthrough, "LEARN_DEFER_S", 0.002)
        assert hook.on_get(client, b"c", b"3") == b"3"
        await until(lambda: len(hook.prefetcher.learned) == 2, "a lone hit is learned later")
        assert hook.prefetcher.learned[1][0] == [b"c"]
        loader.close()

    asyncio.run(main())


def test_a_prefetch_stores_its_value_before_a_client_that_joined_its_read(origin):
    async def main():
        loader = OriginLoader(origin, threads=2)
        hook = _hook(loader, origin)
        prefetcher = hook.prefetcher
        client = SimpleNamespace(db=_Db(), user=None)

        def loaded(future):  # as Prefetcher._loaded: store the value unless a client did
            if client.db.peek(b"k5") is None:
                client.db.set(b"k5", future.result(), 0)
                prefetcher.order.append(("prefetch stored", b"k5"))

        PrefetchLoads(loader).load(b"k5").add_done_callback(loaded)
        await until(lambda: origin.started == [b"k5"], "the prefetch runs")
        reply = hook.on_get(client, b"k5", None)  # joins the prefetch's read
        origin.gate.set()
        assert await reply.future == b"v5"
        # the prefetch stored first; the client's load found it (a late prefetch), as with
        # future callbacks in the order they were added
        assert prefetcher.order == [("prefetch stored", b"k5"), ("late", b"k5")]
        assert loader.reads == 1 and loader.shared == 1
        loader.close()

    asyncio.run(main())


def test_close_runs_start_waiters_of_reads_that_will_never_start(origin):
    async def main():
        loader, running, queued = await one_running_one_queued(origin)
        seen = []
        loader.when_demand_started(lambda: seen.append("started"))
        loader.close()
        await until(lambda: seen == ["started"], "the waiter runs")  # nothing left to wait for
        with pytest.raises(OriginError, match="closed"):
            await queued
        origin.gate.set()
        assert await running == b"v1"

    asyncio.run(main())


def test_learning_waits_at_most_the_deferral_for_a_read_stuck_in_the_queue(origin, monkeypatch):
    from predis_server import readthrough

    monkeypatch.setattr(readthrough, "LEARN_DEFER_S", 0.002)

    async def main():
        loader = OriginLoader(origin, threads=1)
        hook = _hook(loader, origin)
        client = SimpleNamespace(db=_Db(), user=None)
        busy = PrefetchLoads(loader).load(b"k1")  # the only worker, held at the gate
        await until(lambda: origin.started == [b"k1"], "the prefetch runs")
        reply = hook.on_get(client, b"k2", None)
        # k2 cannot start while the gate holds the worker: learning goes ahead after the bound
        await until(lambda: hook.prefetcher.learned, "learned without k2 starting")
        assert hook.prefetcher.learned[0] == ([b"k2"], [b"k1"])
        origin.gate.set()
        assert await reply.future == b"v2"
        await busy
        loader.close()

    asyncio.run(main())
