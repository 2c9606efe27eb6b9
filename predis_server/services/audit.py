"""The audit log: security events as JSON lines, written by a background thread.

``server.audit(event, client, **fields)`` calls ``AuditLog.record`` on the event loop; record
only builds a dict and puts it on a queue, so a slow disk never stalls clients. The writer
thread appends (O_APPEND), rotates by size (file -> file.1 -> ... -> file.N) and fsyncs
per the policy: ``always`` after every entry, ``everysec`` at most once a second, ``no``
never (the OS decides). Secrets never reach the file: see ``redact_argv``.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import queue
import threading
import time
from typing import Any

log = logging.getLogger("predis.audit")

ROTATED_FILES_KEPT = 5
# Arguments after these (lower-cased) words are secrets.
_SECRET_AFTER = {b"auth", b"requirepass", b"masterauth", b"tls-key-file-pass", b"pass"}
_STOP = object()


def redact_argv(argv: list[bytes]) -> list[str]:
    """The command line with passwords replaced by '***' (AUTH, HELLO AUTH, CONFIG SET, ACL)."""
    out: list[str] = []
    if not argv:
        return out
    name = argv[0].lower()
    hide_rest = name == b"auth"
    for i, arg in enumerate(argv):
        text = arg.decode("utf-8", "replace")
        previous = argv[i - 1].lower() if i else b""
        if i and (hide_rest or previous in _SECRET_AFTER):
            text = "***"
        elif name == b"hello" and i >= 2 and argv[i - 2].lower() == b"auth":
            text = "***"  # HELLO 3 AUTH user pass
        elif name == b"acl" and i >= 3 and arg[:1] in (b">", b"<", b"#", b"!"):
            text = arg[:1].decode() + "***"
        out.append(text)
    return out


class AuditLog:
    def __init__(self, path: str, max_bytes: int = 0, fsync: str = "everysec") -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.written = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="predis-audit", daemon=True)
        self._fd = -1
        self._size = 0
        self._last_sync = 0.0
        self._dirty = False

    # -- the event loop's side ----------------------------------------------------------
    def start(self) -> None:
        self._open()
        self._thread.start()

    def record(self, event: str, client: Any, fields: dict[str, Any]) -> None:
        entry: dict[str, Any] = {"time": datetime.datetime.now(datetime.timezone.utc)
                                 .isoformat(timespec="milliseconds"), "event": event}
        if client is not None:
            entry["client"] = client.addr
            entry["user"] = client.user
            entry["client_id"] = client.id
        for key, value in fields.items():
            if key == "argv" and isinstance(value, list):
                key, value = "command", redact_argv(value)
            entry[key] = value
        self.queue.put(entry)

    def close(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self.queue.put(_STOP)
            self._thread.join(timeout)

    # -- the writer thread --------------------------------------------------------------
    def _open(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size

    def _run(self) -> None:
        while True:
            try:
                item = self.queue.get(timeout=1.0)
            except queue.Empty:
                self._sync_if_due()
                continue
            if item is _STOP:
                break
            try:
                self._write(item)
            except Exception:  # the audit thread must outlive a bad entry or a full disk
                self.dropped += 1
                log.exception("audit log write failed")
        self._sync(force=True)
        os.close(self._fd)

    def _write(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, default=_json_default, ensure_ascii=False) + "\n").encode()
        if self.max_bytes and self._size and self._size + len(line) > self.max_bytes:
            self._rotate()
        os.write(self._fd, line)
        self._size += len(line)
        self.written += 1
        self._dirty = True
        if self.fsync == "always":
            self._sync(force=True)
        else:
            self._sync_if_due()

    def _sync_if_due(self) -> None:
        if self.fsync == "everysec" and time.monotonic() - self._last_sync >= 1.0:
            self._sync(force=True)

    def _sync(self, force: bool) -> None:
        if self._dirty and force and self._fd >= 0 and self.fsync != "no":
            os.fsync(self._fd)
            self._dirty = False
        self._last_sync = time.monotonic()

    def _rotate(self) -> None:
        self._sync(force=True)
        os.close(self._fd)
        for index in range(ROTATED_FILES_KEPT - 1, 0, -1):
            older = f"{self.path}.{index}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{index + 1}")
        os.replace(self.path, f"{self.path}.1")
        self._open()


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
