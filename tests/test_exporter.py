"""Debian's prometheus-redis-exporter reads Predis like Redis (INFO, COMMANDSTATS, keyspace)."""
from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request

import pytest
import redis
from servers import free_port

EXPORTER = shutil.which("prometheus-redis-exporter")
pytestmark = pytest.mark.skipif(EXPORTER is None, reason="prometheus-redis-exporter not installed")


def test_redis_exporter_reads_predis(predis_server):
    client = redis.Redis(port=predis_server.port)
    client.flushall()
    for i in range(5):
        client.set(f"exp:{i}", i)
    client.get("exp:1")
    client.get("exp:missing")
    port = free_port()
    proc = subprocess.Popen([EXPORTER, "--redis.addr", f"redis://127.0.0.1:{predis_server.port}",
                             "--web.listen-address", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        text = ""
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
                break
            except OSError:
                time.sleep(0.2)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0].decode(errors="replace")
    lines = text.splitlines()
    assert "redis_up 1" in lines, output[-2000:]
    assert any(line.startswith("redis_keyspace_hits_total ") and float(line.split()[1]) >= 1 for line in lines)
    assert any(line.startswith("redis_keyspace_misses_total ") and float(line.split()[1]) >= 1
               for line in lines)
    assert 'redis_db_keys{db="db0"} 5' in lines
    assert any(line.startswith('redis_commands_total{cmd="set"}') for line in lines)
    assert any(line.startswith("redis_commands_processed_total ") for line in lines)
    client.close()
