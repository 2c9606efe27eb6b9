"""The lone commands of one event-loop tick, from many connections, in one C call.

At redis-benchmark -P 1 each connection sends one command and waits for its reply, so a tick
holds one command from each of many connections. Run one by one through
``Executor.execute`` (execute -> call -> handler -> Database -> store, with the stats
bookkeeping of each call) they cost the server more Python than the store's work.
``LoneBatch.run`` takes the tick's leading lone plain GET, SET key value, INCR and MGET
commands (of one database and protocol version) and runs them with one ``native.run`` call
(predis_server/_fastpath.c) that appends every reply to its own connection's output;
commandstats, keyspace hits and misses and error stats are counted once for all of them.
This is the store batch made of all connections ready in one tick that the store's design
asks for, in arrival order: the batch ends at the first command that is not such a lone
command, or that C refuses (an expired key, a non-integer INCR, a write under WATCH or
maxmemory...), and ``run_batch``'s normal path runs it and everything after it.

It applies where ``FastRuns`` runs do (see pipeline.py: nothing may need one command's own
path) and, further, only without CLIENT NO-TOUCH and without an access hook, or with one that
only records (an open collector window, no origin, no prefetcher): C then writes the GET and
MGET events into the collector's ring, as a pipeline's run does, and a batch keeps to one ACL
user (its tenant id). Origin loads and the prefetcher's events stay on the paths that do them.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .fastpath import native, net
from .pipeline import _WRONGTYPE, SLOWLOG_FLOOR_US, FastRuns
from .protocol.encoder import NULL3, NULL_BULK

if TYPE_CHECKING:
    from .protocol.connection import Connection

_perf_ns = time.perf_counter_ns
_TOUCH, _TOUCH_WRITES = (native.OPT_TOUCH, native.OPT_TOUCH | native.OPT_WRITES) if native else (0, 0)
MIN_LONE = 2  # fewer lone commands in a tick: the normal path (a C call's setup would not pay)


class LoneBatch:
    def __init__(self, fast: FastRuns) -> None:
        self.fast = fast
        self.server = fast.server
        self.keyspace = fast.keyspace
        self.stats = fast.stats
        self.kinds = fast.kinds

    def run(self, pending: list[tuple[Connection, list[Any]]]) -> list[tuple[Connection, list[Any]]]:
        """Run the leading lone plain commands of ``pending``; return the entries left (in order)."""
        fast = self.fast
        hook = self.server.access_hook
        if native is None or not fast.allowed_globally():
            return pending
        kinds = fast.kinds
        argvs, outs, conns = [], [], []
        db = resp = ring = None  # the batch's database, protocol version and event sink (its first command's)
        user = None  # with the ring and other ACL users than default: the batch's user (its tenant)
        for conn, commands in pending:
            client = conn.client
            # FastRuns.client_allowed and no CLIENT NO-TOUCH in one flag (Client.update_plain):
            # this loop runs once per request at -P 1
            if client is None or not client.plain or len(commands) != 1 or client.closing \
                    or client.paused_backlog is not None or conn.backlog is not None:
                break
            argv = commands[0]
            if type(argv) is not list:
                break
            kind = kinds.get(argv[0])
            if kind is None:
                kind = fast.kind_of(argv[0])
            if not kind:
                break
            if db is None:
                if hook is not None:
                    ring = fast.lone_ring(hook, client)
                    if ring is None:
                        return pending
                    if self.server.acl.has_users():  # else every client is default (one tenant)
                        user = client.user
                db, resp = client.db, client.resp
            elif client.db is not db or client.resp != resp or (user is not None and client.user != user):
                break
            argvs.append(argv)
            outs.append(client.output)
            conns.append(conn)
        if len(argvs) < MIN_LONE:
            return pending
        return pending[self._run(db.store, resp == 3, argvs, outs, conns, ring):]

    def _run(self, store: Any, resp3: bool, argvs: list, outs: list, conns: list, ring: Any) -> int:
        """One C call for the batch; how many of its commands ran (the first refused one and
        those after it are left to the normal path). Its per-tick Python is kept short: at
        -P 1 most ticks hold one or a few commands."""
        view = store.native_view()
        if view is None:  # LFU counters: their random increments stay in Python
            return 0
        ks = self.keyspace
        began = _perf_ns()
        result = native.run(argvs, 0, len(argvs), self.kinds, view, ks.source_clock(),
                            _TOUCH if ks.maxmemory or ks.watchers else _TOUCH_WRITES,
                            NULL3 if resp3 else NULL_BULK, _WRONGTYPE, ring, store, outs)
        elapsed_ns = _perf_ns() - began
        ran = result[0]
        if not ran:
            return 0
        now_s = time.time()
        transports = []
        for i in range(ran):
            conn = conns[i]
            client = conn.client
            client.last_command = argvs[i][0]
            client.last_interaction = now_s
            transports.append(conn.transport)
        if net is not None:  # the replies go out now, one write a connection (no later flush)
            written, writes = net.write_outputs(outs[:ran], transports)
            stats = self.stats
            stats.total_net_output_bytes += written
            stats.total_writes_processed += writes
        else:
            self.server.dirty.update(conns[:ran])
        average_us = self.fast.count_native(result, elapsed_ns)
        if average_us >= SLOWLOG_FLOOR_US:  # batches run only with no finer slow-log threshold
            self.fast.slow_log(average_us, [(conns[i].client, argvs[i]) for i in range(ran)])
        return ran
