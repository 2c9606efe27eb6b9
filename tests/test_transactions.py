"""MULTI/EXEC/DISCARD/WATCH/UNWATCH: raw replies against redis-server 7's, byte for byte.

WATCH tests use a second connection to each server to make the conflicting writes.
"""
from __future__ import annotations

import time

import pytest
from resp import RawConnection


def both(pair, *commands) -> list[bytes]:
    ours, theirs = pair
    replies = []
    for args in commands:
        mine, real = ours.call(*args), theirs.call(*args)
        assert mine == real, (args, mine, real)
        replies.append(mine)
    return replies


@pytest.fixture
def other_pair(predis_server, redis_server):
    """Second connections to the same two servers: the 'other client' that breaks WATCHes."""
    conns = RawConnection(predis_server.port), RawConnection(redis_server.port)
    yield conns
    for conn in conns:
        conn.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_exec_runs_queued_commands_with_runtime_errors_inside(raw_pair, protocol):
    for conn in raw_pair:
        conn.call("HELLO", protocol)
    replies = both(raw_pair,
                   ["SET", "s", "text"], ["MULTI"], ["SET", "a", "1"], ["INCR", "a"],
                   ["INCR", "s"], ["HSET", "s", "f", "v"], ["GET", "a"], ["HGETALL", "none"],
                   ["EXEC"], ["GET", "a"], ["EXEC"], ["DISCARD"])
    assert replies[2] == b"+QUEUED\r\n"
    assert b"WRONGTYPE" in replies[8] and b"-ERR value is not an integer" in replies[8]


def test_queue_time_errors_abort_with_execabort(raw_pair):
    both(raw_pair,
         ["MULTI"], ["SET", "a", "1"], ["NOSUCHCOMMAND", "x"], ["SET", "b", "2"], ["EXEC"],
         ["EXISTS", "a", "b"],
         ["MULTI"], ["SET", "a", "1"], ["GET"], ["EXEC"], ["EXISTS", "a"],
         ["MULTI"], ["CONFIG"], ["INCR", "a"], ["EXEC"], ["EXISTS", "a"])


def test_misuse_errors_match(raw_pair):
    both(raw_pair,
         ["EXEC"], ["DISCARD"], ["MULTI", "extra"], ["EXEC", "extra"], ["WATCH"],
         ["UNWATCH", "x"], ["UNWATCH"],
         # nested MULTI and WATCH inside MULTI are errors that do not abort the transaction
         ["MULTI"], ["MULTI"], ["WATCH", "k"], ["SET", "k", "v"], ["EXEC"], ["GET", "k"],
         ["MULTI"], ["SET", "k", "w"], ["DISCARD"], ["GET", "k"], ["DISCARD"],
         ["MULTI"], ["EXEC"])


@pytest.mark.parametrize("protocol", [2, 3])
def test_watch_invalidated_by_another_connection(raw_pair, other_pair, protocol):
    for conn in raw_pair:
        conn.call("HELLO", protocol)
    both(raw_pair, ["SET", "k", "1"], ["WATCH", "k"])
    both(other_pair, ["SET", "k", "2"])
    replies = both(raw_pair, ["MULTI"], ["SET", "k", "mine"], ["EXEC"], ["GET", "k"])
    assert replies[2] == (b"_\r\n" if protocol == 3 else b"*-1\r\n")
    # Every kind of change counts: in-place hash writes, deletes, expiry changes.
    for change in (["HSET", "h", "f", "v"], ["DEL", "k"], ["EXPIRE", "k", "100"]):
        both(raw_pair, ["SET", "k", "1"], ["HSET", "h", "a", "b"], ["WATCH", "k", "h"])
        both(other_pair, change)
        both(raw_pair, ["MULTI"], ["INCR", "k"], ["EXEC"])


def test_watch_not_invalidated_without_changes(raw_pair, other_pair):
    both(raw_pair, ["SET", "k", "1"], ["WATCH", "k", "missing"])
    both(other_pair, ["GET", "k"], ["SET", "unrelated", "x"], ["HDEL", "missing", "f"],
         ["DEL", "missing"], ["SELECT", "1"], ["SET", "k", "other-db"], ["SELECT", "0"])
    replies = both(raw_pair, ["MULTI"], ["INCR", "k"], ["EXEC"])
    assert replies[2] == b"*1\r\n:2\r\n"


def test_exec_and_discard_unwatch(raw_pair, other_pair):
    both(raw_pair, ["WATCH", "k"], ["MULTI"], ["PING"], ["EXEC"])
    both(other_pair, ["SET", "k", "changed after exec"])
    both(raw_pair, ["MULTI"], ["GET", "k"], ["EXEC"])
    both(raw_pair, ["WATCH", "k"], ["MULTI"], ["DISCARD"])
    both(other_pair, ["SET", "k", "changed after discard"])
    both(raw_pair, ["MULTI"], ["GET", "k"], ["EXEC"])
    both(raw_pair, ["WATCH", "k"], ["UNWATCH"])
    both(other_pair, ["SET", "k", "changed after unwatch"])
    both(raw_pair, ["MULTI"], ["GET", "k"], ["EXEC"])
    # UNWATCH inside MULTI is queued and too late to save the transaction.
    both(raw_pair, ["WATCH", "k"])
    both(other_pair, ["SET", "k", "again"])
    both(raw_pair, ["MULTI"], ["UNWATCH"], ["GET", "k"], ["EXEC"])


def test_rejected_exec_discards_the_transaction_and_unwatches(raw_pair, other_pair):
    both(raw_pair, ["MULTI"], ["SET", "a", "1"], ["EXEC", "extra"], ["EXEC"], ["GET", "a"])
    both(raw_pair, ["WATCH", "k"])
    both(other_pair, ["SET", "k", "changed"])
    both(raw_pair, ["EXEC", "x"], ["MULTI"], ["GET", "k"], ["EXEC"])
    # In RESP2 subscribed context EXEC is refused with the pub/sub context error as reason.
    both(raw_pair, ["SUBSCRIBE", "ch"], ["EXEC"], ["MULTI"], ["UNSUBSCRIBE"], ["PING"])


def test_own_writes_before_multi_invalidate(raw_pair):
    both(raw_pair, ["WATCH", "k"], ["SET", "k", "self"], ["MULTI"], ["GET", "k"], ["EXEC"])


def test_flushall_invalidates_watch_on_existing_key_only(raw_pair, other_pair):
    both(raw_pair, ["SET", "k", "1"], ["WATCH", "k"])
    both(other_pair, ["FLUSHALL"])
    both(raw_pair, ["MULTI"], ["PING"], ["EXEC"])
    both(raw_pair, ["WATCH", "missing"])
    both(other_pair, ["FLUSHALL"])
    both(raw_pair, ["MULTI"], ["PING"], ["EXEC"])


def test_watched_key_expiring_before_exec_aborts(raw_pair):
    both(raw_pair, ["SET", "k", "v", "PX", "60"], ["WATCH", "k"])
    time.sleep(0.15)
    both(raw_pair, ["MULTI"], ["PING"], ["EXEC"])


def test_key_already_expired_at_watch_time_is_no_change(raw_pair):
    both(raw_pair, ["SET", "k", "v", "PX", "20"])
    time.sleep(0.1)
    both(raw_pair, ["WATCH", "k"], ["MULTI"], ["PING"], ["EXEC"])


def test_exec_inside_multi_state_and_queued_write_visible_after(raw_pair):
    both(raw_pair,
         ["MULTI"], ["HSET", "h", "a", "1"], ["HINCRBY", "h", "a", "5"], ["HGETALL", "h"],
         ["DEL", "h"], ["EXISTS", "h"], ["EXEC"],
         ["MULTI"], ["SELECT", "1"], ["SET", "in1", "x"], ["EXEC"], ["GET", "in1"], ["SELECT", "0"],
         ["GET", "in1"])


def test_command_table_rows_match(raw_pair):
    for name in ("multi", "exec", "discard", "watch", "unwatch"):
        assert raw_pair[0].call("COMMAND", "INFO", name) == raw_pair[1].call("COMMAND", "INFO", name), name


@pytest.fixture
def lazy_expiry_predis(predis_server):
    """The session Predis with active expiry off, so only EXEC's own check can see expiries."""
    conn = RawConnection(predis_server.port)
    assert conn.call("CONFIG", "SET", "active-expire-enabled", "no") == b"+OK\r\n"
    conn.call("FLUSHALL")
    yield conn
    conn.call("CONFIG", "SET", "active-expire-enabled", "yes")
    conn.close()


def test_exec_itself_notices_a_watched_key_that_expired(lazy_expiry_predis, predis_server):
    conn = lazy_expiry_predis
    conn.call("SET", "k", "v", "PX", "50")
    conn.call("WATCH", "k")
    time.sleep(0.12)
    conn.call("MULTI")
    conn.call("PING")
    assert conn.call("EXEC") == b"*-1\r\n"
    # Expired before WATCH: not a change...
    conn.call("SET", "k", "v", "PX", "20")
    time.sleep(0.06)
    assert conn.call("WATCH", "k") == b"+OK\r\n"
    conn.call("MULTI")
    conn.call("PING")
    assert conn.call("EXEC") == b"*1\r\n+PONG\r\n"
    # ...but writing it afterwards is.
    conn.call("SET", "k", "v", "PX", "20")
    time.sleep(0.06)
    conn.call("WATCH", "k")
    other = RawConnection(predis_server.port)
    other.call("SET", "k", "new")
    other.close()
    conn.call("MULTI")
    conn.call("PING")
    assert conn.call("EXEC") == b"*-1\r\n"
