"""Start real server processes (Predis and redis-server) on free ports for tests."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    port: int
    process: subprocess.Popen
    log_path: str
    kind: str

    @property
    def log(self) -> str:
        with open(self.log_path, errors="replace") as handle:
            return handle.read()


def wait_ready(port: int, process: subprocess.Popen, log_path: str | None = None,
               timeout: float = 60.0) -> None:
    """Until the server on ``port`` answers PING; raises with its log if it exits first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            text = ""
            if log_path:
                with open(log_path, errors="replace") as handle:
                    text = handle.read()
            raise RuntimeError(f"server exited with {process.returncode}:\n{text}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                if sock.recv(64):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start in {timeout}s")


@contextlib.contextmanager
def predis_process(*args: str, port: int | None = None, conf: str | None = None,
                   env: dict[str, str] | None = None, tree: str | None = None) -> Iterator[RunningServer]:
    """``python -m predis_server [conf] --port P args...`` as a real process; from another
    extracted tree of the repository if ``tree`` is given (bench/trees.py)."""
    port = free_port() if port is None else port
    log = tempfile.NamedTemporaryFile(prefix="predis-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "predis_server"]
    if conf:
        cmd.append(conf)
    cmd += ["--port", str(port), *args]
    env = {**os.environ, **(env or {})}
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.abspath(tree), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tree or ROOT, env=env)
    try:
        wait_ready(port, proc, log.name)
        yield RunningServer(port, proc, log.name, "predis")
    finally:
        stop(proc)


@contextlib.contextmanager
def redis_process(*args: str) -> Iterator[RunningServer]:
    """The real redis-server, for differential tests."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (make test installs it)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="redis-")
    log_path = os.path.join(workdir, "redis.log")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir, "--logfile", log_path, *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    open(log_path, "a").close()
    try:
        wait_ready(port, proc, log_path)
        yield RunningServer(port, proc, log_path, "redis")
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sqlite_origin(path, rows) -> str:
    """A SQLite origin database (table kv) holding ``rows`` of (key, value) bytes; its path."""
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB)")
    conn.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", rows)
    conn.commit()
    conn.close()
    return str(path)
