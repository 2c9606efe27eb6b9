"""Memory accounting is honest: INFO used_memory grows as the process's RSS grows.

200k keys with 100-byte values go into a fresh Predis; the growth of ``used_memory`` must
match the growth of the server's resident set within 25%. The tolerance covers what RSS
holds beside the data (pymalloc arena slack, the allocator's page rounding, request and
reply buffers that stay allocated after the pipeline) and what it lags (pages touched but
not yet counted); an accounting that forgot the index, the slot ints or the metadata
arrays (~40% of the total) or counted payload only (~30%) fails it.
"""
from __future__ import annotations

import time

import psutil
import redis
from servers import predis_process

KEYS = 200_000


def _fill(client, start: int, count: int) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(start, start + count):
        pipe.set(b"key:%012d" % i, b"v" * 100)
        if len(pipe) >= 5000:
            pipe.execute()
    pipe.execute()


def test_used_memory_tracks_rss_growth():
    with predis_process() as server:
        client = redis.Redis(port=server.port)
        process = psutil.Process(server.process.pid)
        _fill(client, 0, 5000)  # warm up buffers and code paths before the baseline
        client.delete(*[b"key:%012d" % i for i in range(5000)])
        used0, rss0 = client.info("memory")["used_memory"], process.memory_info().rss
        _fill(client, 10_000, KEYS)
        time.sleep(0.2)
        used1, rss1 = client.info("memory")["used_memory"], process.memory_info().rss
        data_growth, rss_growth = used1 - used0, rss1 - rss0
        assert client.dbsize() == KEYS
        print(f"used_memory +{data_growth} B, RSS +{rss_growth} B, ratio {data_growth / rss_growth:.3f}")
        assert 0.75 * rss_growth <= data_growth <= 1.25 * rss_growth, (data_growth, rss_growth)
        per_key = data_growth / KEYS
        assert 180 < per_key < 500  # 16-byte key + 100-byte value + index + metadata
