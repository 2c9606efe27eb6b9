"""Server counters: the single source for INFO and the Prometheus endpoint."""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Stats:
    start_time: float = field(default_factory=time.time)
    total_connections_received: int = 0
    total_commands_processed: int = 0
    total_net_input_bytes: int = 0
    total_net_output_bytes: int = 0
    rejected_connections: int = 0
    expired_keys: int = 0
    evicted_keys: int = 0
    keyspace_hits: int = 0
    keyspace_misses: int = 0
    pubsub_messages: int = 0
    total_error_replies: int = 0
    unexpected_error_replies: int = 0
    total_reads_processed: int = 0
    total_writes_processed: int = 0
    client_query_buffer_limit_disconnections: int = 0
    client_output_buffer_limit_disconnections: int = 0
    acl_access_denied_auth: int = 0
    acl_access_denied_cmd: int = 0
    acl_access_denied_key: int = 0
    acl_access_denied_channel: int = 0
    errorstats: dict[str, int] = field(default_factory=dict)

    def count_error(self, message: str) -> None:
        prefix = message.split(" ", 1)[0]
        self.errorstats[prefix] = self.errorstats.get(prefix, 0) + 1
        self.total_error_replies += 1

    def reset(self) -> None:
        """CONFIG RESETSTAT."""
        keep_start = self.start_time
        self.__init__()  # type: ignore[misc]
        self.start_time = keep_start


@dataclass
class SlowlogEntry:
    id: int
    timestamp: int
    duration_us: int
    argv: list[bytes]
    addr: str
    name: bytes


class Slowlog:
    MAX_ARGS = 32
    MAX_ARG_LEN = 128

    def __init__(self) -> None:
        self.entries: deque[SlowlogEntry] = deque()
        self.next_id = 0

    def add(self, argv: list[bytes], duration_us: int, addr: str, name: bytes, max_len: int) -> None:
        shown = []
        for i, arg in enumerate(argv):
            if i == self.MAX_ARGS - 1 and len(argv) > self.MAX_ARGS:
                shown.append(b"... (%d more arguments)" % (len(argv) - self.MAX_ARGS + 1))
                break
            if len(arg) > self.MAX_ARG_LEN:
                arg = arg[: self.MAX_ARG_LEN] + b"... (%d more bytes)" % (len(arg) - self.MAX_ARG_LEN)
            shown.append(arg)
        self.entries.appendleft(SlowlogEntry(self.next_id, int(time.time()), duration_us, shown, addr, name))
        self.next_id += 1
        while len(self.entries) > max_len:
            self.entries.pop()


@dataclass
class LatencyEvent:
    latest_time: int
    latest_ms: int
    max_ms: int


class LatencyMonitor:
    def __init__(self) -> None:
        self.events: dict[str, LatencyEvent] = {}

    def record(self, event: str, ms: int) -> None:
        now = int(time.time())
        current = self.events.get(event)
        if current is None:
            self.events[event] = LatencyEvent(now, ms, ms)
        else:
            current.latest_time, current.latest_ms = now, ms
            current.max_ms = max(current.max_ms, ms)
