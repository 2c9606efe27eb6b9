"""The audit log: JSON lines from a background writer, secrets redacted, size rotation."""
from __future__ import annotations

import json
import time

import redis
from resp import RawConnection
from servers import predis_process

from predis_server.services.audit import AuditLog, redact_argv


def _entries(path, want, timeout=5.0):
    deadline = time.time() + timeout
    while True:
        try:
            lines = [json.loads(line) for line in open(path)]
        except FileNotFoundError:
            lines = []
        if len(lines) >= want or time.time() > deadline:
            return lines
        time.sleep(0.05)


def test_security_events_are_audited(tmp_path):
    path = tmp_path / "audit.log"
    with predis_process("--audit-log-file", str(path), "--audit-log-fsync", "always") as server:
        admin = RawConnection(server.port)
        assert admin.call("AUTH", "nobody", "hunter2").startswith(b"-WRONGPASS")
        admin.call("ACL", "SETUSER", "eve", "on", ">topsecret", "+@read")
        assert admin.call("AUTH", "eve", "topsecret") == b"+OK\r\n"
        other = redis.Redis(port=server.port)
        other.flushall()
        other.close()
        entries = _entries(path, 4)
        events = [e["event"] for e in entries]
        assert events[:4] == ["auth-failure", "acl-setuser", "auth-success", "flushall"], events
        assert entries[0]["user"] == "nobody" and entries[0]["client"].startswith("127.0.0.1:")
        assert entries[1]["rules"] == ["on", ">***", "+@read"]
        assert all("time" in e for e in entries)
        text = path.read_text()
        assert "hunter2" not in text and "topsecret" not in text
        admin.close()


def test_rotation_by_size(tmp_path):
    path = tmp_path / "a.log"
    audit = AuditLog(str(path), max_bytes=400, fsync="no")
    audit.start()
    for i in range(20):
        audit.record("config-set", None, {"name": "maxmemory", "value": str(i)})
    audit.close()
    assert (tmp_path / "a.log.1").exists()
    total = sum(1 for p in tmp_path.iterdir() for _ in open(p))
    assert total == 20
    assert path.stat().st_size <= 400


def test_record_does_not_wait_for_disk(tmp_path):
    """record() only enqueues: with the writer thread not yet running nothing reaches the file."""
    log_path = tmp_path / "b.log"
    audit = AuditLog(str(log_path), fsync="always")
    for _ in range(2000):
        audit.record("auth-failure", None, {"user": "x"})
    assert audit.written == 0
    assert not log_path.exists() or log_path.stat().st_size == 0
    audit.start()
    audit.close(timeout=120)
    assert audit.written == 2000
    assert len(log_path.read_text().splitlines()) == 2000


def test_redaction():
    assert redact_argv([b"AUTH", b"u", b"p"]) == ["AUTH", "***", "***"]
    assert redact_argv([b"CONFIG", b"SET", b"requirepass", b"x"]) == ["CONFIG", "SET", "requirepass", "***"]
    assert redact_argv([b"HELLO", b"3", b"AUTH", b"u", b"p"]) == ["HELLO", "3", "AUTH", "***", "***"]
    assert redact_argv([b"ACL", b"SETUSER", b"u", b">pw", b"+get"]) == ["ACL", "SETUSER", "u", ">***", "+get"]


def test_config_changes_and_shutdown_are_audited(tmp_path):
    path = tmp_path / "audit.log"
    conf = tmp_path / "predis.conf"
    conf.write_text("maxmemory 0\n")
    with predis_process("--audit-log-file", str(path), "--audit-log-fsync", "always",
                        conf=str(conf)) as server:
        admin = RawConnection(server.port)
        assert admin.call("CONFIG", "SET", "maxmemory", "10mb") == b"+OK\r\n"
        assert admin.call("CONFIG", "REWRITE") == b"+OK\r\n"
        entries = _entries(path, 2)
        events = [e["event"] for e in entries]
        assert events[:2] == ["config-set", "config-rewrite"], events
        assert entries[1]["path"] == str(conf)
        admin.send(b"*1\r\n$8\r\nSHUTDOWN\r\n")
        server.process.wait(20)
        assert "shutdown" in [e["event"] for e in _entries(path, 3)]
