"""The stock Redis tools against Predis: redis-cli (plain, -3, --pipe, interactive hints from
COMMAND DOCS) and redis-benchmark."""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import termios
import time

import pytest

pytestmark = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli not installed")


def cli(port: int, *args: str, stdin: bytes | None = None, timeout: float = 30) -> str:
    result = subprocess.run(["redis-cli", "-p", str(port), *args], input=stdin,
                            capture_output=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def test_plain_commands(predis_server, r):
    port = predis_server.port
    assert cli(port, "SET", "greeting", "hello world") == "OK\n"
    assert cli(port, "GET", "greeting") == "hello world\n"
    assert cli(port, "INCR", "counter") == "1\n"
    assert cli(port, "GET", "missing") == "\n"
    assert cli(port, "DBSIZE") == "2\n"
    assert "ERR unknown command 'NOPE'" in cli(port, "NOPE")
    assert "redis_version:7.2.4" in cli(port, "INFO", "server")


def test_resp3_output(predis_server, redis_server, r):
    """redis-cli -3 shows maps as ``1# "k" => "v"``: Predis must send a RESP3 map, as Redis does."""
    for args in (["CONFIG", "GET", "maxmemory-policy"], ["GET", "missing"],
                 ["COMMAND", "INFO", "get"], ["ROLE"], ["COMMAND", "GETKEYS", "mset", "a", "1"]):
        ours = cli(predis_server.port, "-3", "--no-raw", *args)
        assert ours == cli(redis_server.port, "-3", "--no-raw", *args), args
    assert cli(predis_server.port, "-3", "--no-raw", "CONFIG", "GET", "maxmemory-policy") == \
        '1# "maxmemory-policy" => "noeviction"\n'
    hello = cli(predis_server.port, "-3", "--no-raw", "HELLO", "3")
    assert '"proto" => (integer) 3' in hello and '"version" => "7.2.4"' in hello


def test_pipe_mass_insertion(predis_server, r):
    payload = b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\nkey:%d\r\n$%d\r\nval:%d\r\n"
                       % (len(b"key:%d" % i), i, len(b"val:%d" % i), i) for i in range(10_000))
    out = cli(predis_server.port, "--pipe", stdin=payload, timeout=60)
    assert "errors: 0, replies: 10000" in out
    assert r.dbsize() == 10_000
    assert r.get("key:9999") == b"val:9999"


def _read_pty(fd: int, seconds: float, until: bytes | None = None) -> bytes:
    out = b""
    deadline = time.time() + seconds
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if until is not None and until in out:
                break
    return out


def test_interactive_hints_come_from_command_docs(predis_server, r):
    r.config_resetstat()
    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal with a size, so linenoise does not query the cursor
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        os.execvp("redis-cli", ["redis-cli", "-p", str(predis_server.port)])
    try:
        prompt = f"127.0.0.1:{predis_server.port}> ".encode()
        assert prompt in _read_pty(fd, 10, until=prompt)
        os.write(fd, b"SET ")
        screen = re.sub(rb"\x1b\[[0-9;]*[A-Za-z]", b"", _read_pty(fd, 5, until=b"NX|XX"))
        assert b"key value [NX|XX] [GET]" in screen
        os.write(fd, b"\x15PING\r")  # clear the line, then run a command
        assert b"PONG" in _read_pty(fd, 10, until=b"PONG")
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)
    # redis-cli built its hints from our COMMAND DOCS (its fallback is a table compiled into it)
    assert r.info("commandstats")["cmdstat_command|docs"]["calls"] >= 1


@pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="redis-benchmark not installed")
def test_redis_benchmark_runs_clean(predis_server, r):
    r.config_resetstat()
    result = subprocess.run(
        ["redis-benchmark", "-p", str(predis_server.port), "-q", "-n", "2000",
         "-t", "ping,set,get,incr,hset,mset"],
        capture_output=True, timeout=120, check=False)
    out = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, out
    for test in ("PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "HSET", "MSET (10 keys)"):
        assert re.search(rf"(?:^|\r){re.escape(test)}: [\d.]+ requests per second", out, re.MULTILINE), out
    assert "ERR" not in out and "rror" not in out
    stats = r.info("everything")
    assert stats["total_error_replies"] == 0, {k: v for k, v in stats.items() if "errorstat" in k}
    assert stats["cmdstat_mset"]["calls"] >= 2000
