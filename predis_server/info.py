"""INFO: the server's state as Redis 7's INFO sections, with Redis's section and field names.

Every value is read from the objects that hold it (``server.stats``, the keyspace, each
``Command``'s counters, the config); nothing is counted twice, so the Prometheus endpoint can
read the same objects. Other packages add sections with ``register_section``::

    register_section("prediction", build_prediction_lines, default=True)

A builder takes the server and returns ``[(field, value), ...]``.
"""
from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import Server

REDIS_VERSION = "7.2.4"  # what clients see; connection.COMPAT_VERSION says the same
Lines = list[tuple[str, Any]]


@dataclass
class Section:
    title: str
    build: Callable[[Server], Lines]
    default: bool


SECTIONS: dict[str, Section] = {}


def register_section(name: str, build: Callable[[Server], Lines], default: bool = True,
                     title: str | None = None) -> None:
    """Add (or replace) an INFO section; ``default`` sections appear in a bare INFO."""
    SECTIONS[name.lower()] = Section(title or name.capitalize(), build, default)


def render(server: Server, requested: Iterable[str] = ()) -> str:
    """The INFO text for the requested section names (none = the default set), as Redis joins it."""
    names = [n.lower() for n in requested] or ["default"]
    chosen: set[str] = set()
    for name in names:
        if name in ("all", "everything"):
            chosen.update(SECTIONS)
        elif name == "default":
            chosen.update(n for n, s in SECTIONS.items() if s.default)
        elif name in SECTIONS:
            chosen.add(name)
    parts = []
    for name, section in SECTIONS.items():  # Redis's order, whatever order was asked
        if name in chosen:
            body = "".join(f"{key}:{_fmt(value)}\r\n" for key, value in section.build(server))
            parts.append(f"# {section.title}\r\n{body}")
    return "\r\n".join(parts)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def human_bytes(n: int) -> str:
    """bytesToHuman: 1.18M, 200B."""
    value = float(n)
    for unit in ("B", "K", "M", "G", "T", "P"):
        if unit == "B" and value < 1024:
            return f"{int(value)}B"
        if value < 1024 or unit == "P":
            return f"{value:.2f}{unit}"
        value /= 1024
    return f"{n}B"


# -- sampling (instantaneous_ops_per_sec and friends, as Redis's trackInstantaneousMetric) ---
class InstantaneousMetrics:
    """Samples counters every cron tick (at most every 100 ms) and averages the last 16 rates."""

    SAMPLES = 16

    def __init__(self, server: Server) -> None:
        self.server = server
        self.last: dict[str, tuple[float, int]] = {}
        self.rates: dict[str, deque[float]] = {}
        server.hooks.setdefault("cron", []).append(self.sample)
        self.sample()

    def sample(self) -> None:
        now = time.monotonic()
        stats = self.server.stats
        for name, value in (("ops", stats.total_commands_processed),
                            ("in", stats.total_net_input_bytes),
                            ("out", stats.total_net_output_bytes)):
            last = self.last.get(name)
            if last is not None and now - last[0] < 0.1:
                continue
            if last is not None:
                rate = max(0, value - last[1]) / (now - last[0])
                self.rates.setdefault(name, deque(maxlen=self.SAMPLES)).append(rate)
            self.last[name] = (now, value)

    def rate(self, name: str) -> float:
        samples = self.rates.get(name)
        return sum(samples) / len(samples) if samples else 0.0


def metrics_of(server: Server) -> InstantaneousMetrics:
    metrics = getattr(server, "instantaneous_metrics", None)
    if metrics is None:
        metrics = InstantaneousMetrics(server)
        server.instantaneous_metrics = metrics  # type: ignore[attr-defined]
    return metrics


def used_memory(server: Server) -> int:
    """Data bytes (what maxmemory is compared with) and the peak seen so far."""
    used = server.keyspace.used_memory()
    if used > getattr(server, "used_memory_peak", 0):
        server.used_memory_peak = used  # type: ignore[attr-defined]
    return used


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def total_system_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def all_commands(server: Server):
    for cmd in server.executor.table.values():
        yield cmd
        yield from cmd.subcommands.values()


def dirty_changes(server: Server) -> int:
    """Writes since start-up (Predis never saves, so 'since the last save' is since start)."""
    return sum(cmd.calls - cmd.failed_calls for cmd in all_commands(server) if cmd.is_write)


# -- the sections, in Redis's order ---------------------------------------------------------
def server_section(server: Server) -> Lines:
    from .cli import VERSION

    now = time.time()
    uptime = int(now - server.started)
    config = server.config
    return [
        ("redis_version", REDIS_VERSION), ("redis_git_sha1", "00000000"), ("redis_git_dirty", 0),
        ("redis_build_id", "0"), ("redis_mode", "standalone"),
        ("os", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("arch_bits", 64 if sys.maxsize > 2**32 else 32),
        ("monotonic_clock", "POSIX clock_gettime"),
        ("multiplexing_api", "epoll" if sys.platform.startswith("linux") else "kqueue"),
        ("atomicvar_api", "c11-builtin"), ("gcc_version", "0.0.0"),
        ("process_id", os.getpid()), ("process_supervised", "no"), ("run_id", server.run_id),
        ("tcp_port", config.port), ("server_time_usec", time.time_ns() // 1000),
        ("uptime_in_seconds", uptime), ("uptime_in_days", uptime // 86400),
        ("hz", config.hz), ("configured_hz", config.hz),
        ("lru_clock", int(now) & ((1 << 24) - 1)),
        ("executable", os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else sys.executable),
        ("config_file", config.path or ""), ("io_threads_active", 0),
        ("predis_version", VERSION), ("store_backend", server.backend.name),
        ("event_loop", getattr(server, "loop_name", "asyncio")),
    ]


def clients_section(server: Server) -> Lines:
    clients = [conn.client for conn in server.connections.values() if conn.client is not None]
    return [
        ("connected_clients", len(clients)), ("cluster_connections", 0),
        ("maxclients", server.config.maxclients),
        ("client_recent_max_input_buffer", 0), ("client_recent_max_output_buffer", 0),
        ("blocked_clients", 0), ("tracking_clients", 0),
        ("pubsub_clients", sum(1 for c in clients if c.in_pubsub)),
        ("watching_clients", sum(1 for c in clients if c.watched)),
        ("clients_in_timeout_table", 0),
        ("total_watched_keys", len(server.keyspace.watchers)),
        ("total_blocking_keys", 0), ("total_blocking_keys_on_nokey", 0),
    ]


def memory_section(server: Server) -> Lines:
    used = used_memory(server)
    peak = max(getattr(server, "used_memory_peak", 0), used)
    rss = rss_bytes()
    system = total_system_memory()
    maxmemory = server.config.maxmemory
    return [
        ("used_memory", used), ("used_memory_human", human_bytes(used)),
        ("used_memory_rss", rss), ("used_memory_rss_human", human_bytes(rss)),
        ("used_memory_peak", peak), ("used_memory_peak_human", human_bytes(peak)),
        ("used_memory_peak_perc", f"{100.0 * used / peak if peak else 100.0:.2f}%"),
        ("used_memory_overhead", 0), ("used_memory_startup", 0),
        ("used_memory_dataset", used), ("used_memory_dataset_perc", "100.00%"),
        ("allocator_allocated", used), ("allocator_active", used), ("allocator_resident", rss),
        ("total_system_memory", system), ("total_system_memory_human", human_bytes(system)),
        ("used_memory_lua", 0), ("used_memory_vm_eval", 0), ("used_memory_lua_human", "0B"),
        ("used_memory_scripts_eval", 0), ("number_of_cached_scripts", 0),
        ("number_of_functions", 0), ("number_of_libraries", 0),
        ("used_memory_vm_functions", 0), ("used_memory_vm_total", 0),
        ("used_memory_vm_total_human", "0B"), ("used_memory_functions", 0),
        ("used_memory_scripts", 0), ("used_memory_scripts_human", "0B"),
        ("maxmemory", maxmemory), ("maxmemory_human", human_bytes(maxmemory)),
        ("maxmemory_policy", server.config.maxmemory_policy),
        ("allocator_frag_ratio", 1.0), ("allocator_frag_bytes", 0),
        ("allocator_rss_ratio", 1.0), ("allocator_rss_bytes", 0),
        ("rss_overhead_ratio", 1.0), ("rss_overhead_bytes", 0),
        ("mem_fragmentation_ratio", rss / used if used else 0.0),
        ("mem_fragmentation_bytes", rss - used),
        ("mem_not_counted_for_evict", 0), ("mem_replication_backlog", 0),
        ("mem_total_replication_buffers", 0), ("mem_clients_slaves", 0),
        ("mem_clients_normal", 0), ("mem_cluster_links", 0), ("mem_aof_buffer", 0),
        ("mem_allocator", "libc"), ("active_defrag_running", 0),
        ("lazyfree_pending_objects", 0), ("lazyfreed_objects", 0),
    ]


def persistence_section(server: Server) -> Lines:
    return [
        ("loading", 0), ("async_loading", 0), ("current_cow_peak", 0), ("current_cow_size", 0),
        ("current_cow_size_age", 0), ("current_fork_perc", 0.0),
        ("current_save_keys_processed", 0), ("current_save_keys_total", 0),
        ("rdb_changes_since_last_save", dirty_changes(server)), ("rdb_bgsave_in_progress", 0),
        ("rdb_last_save_time", int(server.started)), ("rdb_last_bgsave_status", "ok"),
        ("rdb_last_bgsave_time_sec", -1), ("rdb_current_bgsave_time_sec", -1), ("rdb_saves", 0),
        ("rdb_last_cow_size", 0), ("rdb_last_load_keys_expired", 0),
        ("rdb_last_load_keys_loaded", 0),
        ("aof_enabled", 0), ("aof_rewrite_in_progress", 0), ("aof_rewrite_scheduled", 0),
        ("aof_last_rewrite_time_sec", -1), ("aof_current_rewrite_time_sec", -1),
        ("aof_last_bgrewrite_status", "ok"), ("aof_rewrites", 0),
        ("aof_rewrites_consecutive_failures", 0), ("aof_last_write_status", "ok"),
        ("aof_last_cow_size", 0), ("module_fork_in_progress", 0), ("module_fork_last_cow_size", 0),
    ]


def stats_section(server: Server) -> Lines:
    s = server.stats
    metrics = metrics_of(server)
    return [
        ("total_connections_received", s.total_connections_received),
        ("total_commands_processed", s.total_commands_processed),
        ("instantaneous_ops_per_sec", int(metrics.rate("ops"))),
        ("total_net_input_bytes", s.total_net_input_bytes),
        ("total_net_output_bytes", s.total_net_output_bytes),
        ("total_net_repl_input_bytes", 0), ("total_net_repl_output_bytes", 0),
        ("instantaneous_input_kbps", metrics.rate("in") / 1024),
        ("instantaneous_output_kbps", metrics.rate("out") / 1024),
        ("instantaneous_input_repl_kbps", 0.0), ("instantaneous_output_repl_kbps", 0.0),
        ("rejected_connections", s.rejected_connections),
        ("sync_full", 0), ("sync_partial_ok", 0), ("sync_partial_err", 0),
        ("expired_keys", s.expired_keys), ("expired_stale_perc", 0.0),
        ("expired_time_cap_reached_count", 0), ("expire_cycle_cpu_milliseconds", 0),
        ("evicted_keys", s.evicted_keys), ("evicted_clients", 0),
        ("total_eviction_exceeded_time", 0), ("current_eviction_exceeded_time", 0),
        ("keyspace_hits", s.keyspace_hits), ("keyspace_misses", s.keyspace_misses),
        ("pubsub_channels", len(server.pubsub.channels)),
        ("pubsub_patterns", len(server.pubsub.patterns)),
        ("pubsubshard_channels", 0), ("latest_fork_usec", 0), ("total_forks", 0),
        ("migrate_cached_sockets", 0), ("slave_expires_tracked_keys", 0),
        ("active_defrag_hits", 0), ("active_defrag_misses", 0),
        ("active_defrag_key_hits", 0), ("active_defrag_key_misses", 0),
        ("total_active_defrag_time", 0), ("current_active_defrag_time", 0),
        ("tracking_total_keys", 0), ("tracking_total_items", 0), ("tracking_total_prefixes", 0),
        ("unexpected_error_replies", s.unexpected_error_replies),
        ("total_error_replies", s.total_error_replies), ("dump_payload_sanitizations", 0),
        ("total_reads_processed", s.total_reads_processed),
        ("total_writes_processed", s.total_writes_processed),
        ("io_threaded_reads_processed", 0), ("io_threaded_writes_processed", 0),
        ("client_query_buffer_limit_disconnections", s.client_query_buffer_limit_disconnections),
        ("client_output_buffer_limit_disconnections", s.client_output_buffer_limit_disconnections),
        ("reply_buffer_shrinks", 0), ("reply_buffer_expands", 0),
        ("eventloop_cycles", 0), ("eventloop_duration_sum", 0), ("eventloop_duration_cmd_sum", 0),
        ("instantaneous_eventloop_cycles_per_sec", 0),
        ("instantaneous_eventloop_duration_usec", 0),
        ("acl_access_denied_auth", s.acl_access_denied_auth),
        ("acl_access_denied_cmd", s.acl_access_denied_cmd),
        ("acl_access_denied_key", s.acl_access_denied_key),
        ("acl_access_denied_channel", s.acl_access_denied_channel),
    ]


def replication_section(server: Server) -> Lines:
    return [
        ("role", "master"), ("connected_slaves", 0), ("master_failover_state", "no-failover"),
        ("master_replid", server.run_id), ("master_replid2", "0" * 40),
        ("master_repl_offset", 0), ("second_repl_offset", -1), ("repl_backlog_active", 0),
        ("repl_backlog_size", 1048576), ("repl_backlog_first_byte_offset", 0),
        ("repl_backlog_histlen", 0),
    ]


def cpu_section(server: Server) -> Lines:
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    thread = resource.getrusage(getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF))
    return [
        ("used_cpu_sys", f"{me.ru_stime:.6f}"), ("used_cpu_user", f"{me.ru_utime:.6f}"),
        ("used_cpu_sys_children", f"{children.ru_stime:.6f}"),
        ("used_cpu_user_children", f"{children.ru_utime:.6f}"),
        ("used_cpu_sys_main_thread", f"{thread.ru_stime:.6f}"),
        ("used_cpu_user_main_thread", f"{thread.ru_utime:.6f}"),
    ]


def modules_section(server: Server) -> Lines:
    return []


def commandstats_section(server: Server) -> Lines:
    lines: Lines = []
    for cmd in all_commands(server):
        if cmd.calls or cmd.rejected_calls or cmd.failed_calls:
            per_call = cmd.usec / cmd.calls if cmd.calls else 0.0
            lines.append((f"cmdstat_{cmd.full_name}",
                          (f"calls={cmd.calls},usec={cmd.usec},usec_per_call={per_call:.2f},"
                           f"rejected_calls={cmd.rejected_calls},failed_calls={cmd.failed_calls}")))
    return lines


def errorstats_section(server: Server) -> Lines:
    # Redis keeps error stats in a radix tree, so INFO lists them in byte order
    return [(f"errorstat_{prefix}", f"count={count}")
            for prefix, count in sorted(server.stats.errorstats.items())]


def latencystats_section(server: Server) -> Lines:
    # Per-command latency histograms are not kept; the section exists so parsers find it.
    return []


def cluster_section(server: Server) -> Lines:
    return [("cluster_enabled", 0)]


def keyspace_section(server: Server) -> Lines:
    return [(f"db{db.id}", f"keys={len(db.store)},expires={db.store.volatile_count},avg_ttl=0")
            for db in server.keyspace.dbs if len(db.store)]


for _name, _build, _default in (
    ("server", server_section, True), ("clients", clients_section, True),
    ("memory", memory_section, True), ("persistence", persistence_section, True),
    ("stats", stats_section, True), ("replication", replication_section, True),
    ("cpu", cpu_section, True), ("modules", modules_section, True),
    ("commandstats", commandstats_section, False), ("errorstats", errorstats_section, True),
    ("latencystats", latencystats_section, False), ("cluster", cluster_section, True),
    ("keyspace", keyspace_section, True),
):
    register_section(_name, _build, _default, "CPU" if _name == "cpu" else None)
