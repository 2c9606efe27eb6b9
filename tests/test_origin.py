"""Origin adapters and the OriginLoader (single-flight, timeouts, circuit breaker), in process."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from predis_server.origin import OriginError, OriginLoader, OriginUnavailable, open_origin
from predis_server.origin.base import Origin
from predis_server.origin.files import key_to_filename


def _sqlite(path, rows):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB)")
    conn.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", rows)
    conn.commit()
    conn.close()


def test_sqlite_origin_reads_values_and_missing_keys(tmp_path):
    path = tmp_path / "o.db"
    _sqlite(path, [(b"a", b"1"), (b"\x00bin", b"\xff\x00"), (b"t", "text")])
    origin = open_origin(f"sqlite://{path}")
    assert origin.get(b"a") == b"1"
    assert origin.get(b"\x00bin") == b"\xff\x00"
    assert origin.get(b"t") == b"text"
    assert origin.get(b"missing") is None
    origin.close()


def test_file_origin_names_cannot_escape_the_directory(tmp_path):
    for key in (b"../etc/passwd", b"..", b".", b"a/b", b"\x00", b"", b"x" * 500):
        name = key_to_filename(key)
        assert "/" not in name and name not in (".", "..", "") and len(name) <= 200
    assert key_to_filename(b"a/b") != key_to_filename(b"a%2Fb")
    origin = open_origin(f"file://{tmp_path}")
    (tmp_path / key_to_filename(b"user:1")).write_bytes(b"alice")
    assert origin.get(b"user:1") == b"alice"
    assert origin.get(b"../user:1") is None


def test_redis_origin_against_real_redis(redis_server):
    import redis

    real = redis.Redis(port=redis_server.port)
    real.flushall()
    real.set(b"k", b"v")
    real.hset(b"h", b"f", b"v")

    async def main():
        origin = open_origin(f"redis://127.0.0.1:{redis_server.port}/0")
        assert await origin.aget(b"k") == b"v"
        assert await origin.aget(b"nope") is None
        with pytest.raises(OriginError):
            await origin.aget(b"h")  # WRONGTYPE from the origin is an origin error
        origin.close()

    asyncio.run(main())


class _SlowOrigin(Origin):
    def __init__(self, delay=0.05, fail=False):
        self.delay, self.fail, self.calls = delay, fail, 0
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            self.calls += 1
        time.sleep(self.delay)
        if self.fail:
            raise OriginError("boom")
        return b"value-" + key


def test_single_flight_shares_one_read_and_stays_off_the_loop():
    origin = _SlowOrigin(0.1)

    async def main():
        loader = OriginLoader(origin, timeout_s=2)
        start = time.perf_counter()
        ticks = 0

        async def ticker():
            nonlocal ticks
            while time.perf_counter() - start < 0.08:
                ticks += 1
                await asyncio.sleep(0.005)

        futures = [loader.load(b"k") for _ in range(20)]
        await ticker()
        values = await asyncio.gather(*futures)
        assert values == [b"value-k"] * 20
        assert loader.reads == 1 and loader.shared == 19 and origin.calls == 1
        assert ticks >= 5  # the loop kept running while the origin slept in a thread
        loader.close()

    asyncio.run(main())


def test_timeout_and_circuit_breaker():
    origin = _SlowOrigin(0.3)

    async def main():
        loader = OriginLoader(origin, timeout_s=0.02, breaker_threshold=3, breaker_cooldown_s=0.2)
        for i in range(3):
            with pytest.raises(OriginError, match="timeout"):
                await loader.load(b"k%d" % i)
        assert loader.timeouts == 3 and loader.breaker_state == "open"
        with pytest.raises(OriginUnavailable):
            await loader.load(b"other")
        assert loader.rejected == 1 and origin.calls == 3
        origin.delay = 0.0
        await asyncio.sleep(0.25)  # cooldown over: one trial read closes the breaker
        assert await loader.load(b"x") == b"value-x"
        assert loader.breaker_state == "closed"
        loader.close()

    asyncio.run(main())


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError):
        open_origin("ftp://x/y")
