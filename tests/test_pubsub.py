"""Pub/sub: raw frames against redis-server 7's byte for byte, and redis-py's PubSub (RESP2, RESP3)."""
from __future__ import annotations

import time

import pytest
import redis
from resp import RawConnection

PROTOCOLS = [2, 3]


def both(pair, *commands) -> list[bytes]:
    ours, theirs = pair
    replies = []
    for args in commands:
        mine, real = ours.call(*args), theirs.call(*args)
        assert mine == real, (args, mine, real)
        replies.append(mine)
    return replies


def both_read(pair) -> bytes:
    """The next frame each server sends unasked (a published message)."""
    mine, real = pair[0].read_reply(), pair[1].read_reply()
    assert mine == real, (mine, real)
    return mine


@pytest.fixture
def publisher_pair(predis_server, redis_server):
    conns = RawConnection(predis_server.port), RawConnection(redis_server.port)
    yield conns
    for conn in conns:
        conn.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_subscribe_frames_match(raw_pair, protocol):
    for conn in raw_pair:
        conn.call("HELLO", protocol)
    replies = both(raw_pair,
                   ["UNSUBSCRIBE"], ["PUNSUBSCRIBE"], ["SUBSCRIBE", "a"], ["PSUBSCRIBE", "n*"],
                   ["SUBSCRIBE", "a"], ["UNSUBSCRIBE", "zz"], ["PUNSUBSCRIBE", "zz*"],
                   ["UNSUBSCRIBE", "a"], ["PUNSUBSCRIBE", "n*"], ["UNSUBSCRIBE"],
                   ["SUBSCRIBE"], ["PSUBSCRIBE"], ["PUBLISH", "a"])
    marker = b">" if protocol == 3 else b"*"
    assert replies[0] == marker + b"3\r\n$11\r\nunsubscribe\r\n" + (
        b"_\r\n" if protocol == 3 else b"$-1\r\n") + b":0\r\n"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_multi_channel_subscribe_sends_one_frame_each(raw_pair, protocol):
    for conn in raw_pair:
        conn.call("HELLO", protocol)
    first = both(raw_pair, ["SUBSCRIBE", "c1", "c2", "c3"])[0]
    assert first.count(b"subscribe") == 1  # call() reads one frame; two more follow
    assert both_read(raw_pair).startswith((b"*3", b">3"))
    last = both_read(raw_pair)
    assert last.endswith(b":3\r\n")
    both(raw_pair, ["PSUBSCRIBE", "p1*", "p2*"])
    both_read(raw_pair)
    both(raw_pair, ["PUNSUBSCRIBE", "p2*", "p1*"])
    assert both_read(raw_pair).endswith(b":3\r\n")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_messages_and_interleaved_replies_match(raw_pair, publisher_pair, protocol):
    for conn in raw_pair:
        conn.call("HELLO", protocol)
    both(raw_pair, ["SUBSCRIBE", "news"], ["PSUBSCRIBE", "ne*"])
    assert both(publisher_pair, ["PUBLISH", "news", "hello"]) == [b":2\r\n"]
    both_read(raw_pair)  # message
    both_read(raw_pair)  # pmessage
    assert both(publisher_pair, ["PUBLISH", "nobody", "x"], ["PUBLISH", "nest", "y"]) == [
        b":0\r\n", b":1\r\n"]
    assert b"pmessage" in both_read(raw_pair)
    if protocol == 3:
        # RESP3 subscribers may run any command; pushes come before later replies.
        both(publisher_pair, ["SET", "k", "v"])
        both(raw_pair, ["GET", "k"])
        # Publishing to itself: the pushed message comes before PUBLISH's own reply.
        assert both(raw_pair, ["PUBLISH", "news", "to-self"])[0].startswith(b">3\r\n$7\r\nmessage")
        assert both_read(raw_pair).startswith(b">4\r\n$8\r\npmessage")
        assert both_read(raw_pair) == b":2\r\n"
    else:
        both(raw_pair, ["GET", "k"], ["PING"], ["PING", "hi"], ["MULTI"])


def test_pubsub_introspection_replies_match(raw_pair, publisher_pair):
    both(raw_pair, ["SUBSCRIBE", "only"])
    both(publisher_pair, ["PSUBSCRIBE", "p*"])
    both(raw_pair, ["RESET"], ["SUBSCRIBE", "only"])  # a second subscription keeps the count
    ours, theirs = raw_pair
    pair = RawConnection(ours.sock.getpeername()[1]), RawConnection(theirs.sock.getpeername()[1])
    try:
        both(pair,
             ["PUBSUB", "CHANNELS"], ["PUBSUB", "CHANNELS", "o*"], ["PUBSUB", "CHANNELS", "x*"],
             ["PUBSUB", "NUMSUB"], ["PUBSUB", "NUMSUB", "only", "none"], ["PUBSUB", "NUMPAT"],
             ["PUBSUB", "NUMPAT", "x"], ["PUBSUB"], ["PUBSUB", "NOPE"], ["PUBSUB", "HELP"],
             ["PUBSUB", "SHARDCHANNELS"], ["PUBSUB", "SHARDNUMSUB", "only"])
        for conn in pair:
            conn.call("HELLO", "3")
        both(pair, ["PUBSUB", "NUMSUB", "only"], ["PUBSUB", "CHANNELS"], ["PUBSUB", "NUMPAT"])
    finally:
        for conn in pair:
            conn.close()


def _messages(pubsub, count: int, timeout: float = 5.0) -> list[dict]:
    received = []
    deadline = time.time() + timeout
    while len(received) < count and time.time() < deadline:
        message = pubsub.get_message(timeout=0.2)
        if message is not None:
            received.append(message)
    return received


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_redis_py_pubsub_channels_and_patterns(predis_server, protocol):
    sub = redis.Redis(port=predis_server.port, protocol=protocol)
    pub = redis.Redis(port=predis_server.port, protocol=protocol)
    ps = sub.pubsub()
    ps.subscribe("orders")
    ps.psubscribe("events.*")
    confirmations = _messages(ps, 2)
    assert [(m["type"], m["channel"], m["data"]) for m in confirmations] == [
        ("subscribe", b"orders", 1), ("psubscribe", b"events.*", 2)]
    assert pub.publish("orders", "o1") == 1
    assert pub.publish("events.login", "e1") == 1
    assert pub.publish("ignored", "x") == 0
    got = _messages(ps, 2)
    assert got[0] == {"type": "message", "pattern": None, "channel": b"orders", "data": b"o1"}
    assert got[1] == {"type": "pmessage", "pattern": b"events.*", "channel": b"events.login",
                      "data": b"e1"}
    assert pub.pubsub_channels() == [b"orders"]
    assert pub.pubsub_numsub("orders", "ignored") == [(b"orders", 1), (b"ignored", 0)]
    assert pub.pubsub_numpat() == 1
    ps.unsubscribe("orders")
    ps.punsubscribe()
    assert [m["type"] for m in _messages(ps, 2)] == ["unsubscribe", "punsubscribe"]
    assert pub.pubsub_channels() == [] and pub.pubsub_numpat() == 0
    ps.close()
    sub.close()
    pub.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_message_order_is_preserved(predis_server, protocol):
    sub = redis.Redis(port=predis_server.port, protocol=protocol)
    pub = redis.Redis(port=predis_server.port)
    ps = sub.pubsub(ignore_subscribe_messages=True)
    ps.subscribe("seq")
    ps.psubscribe("s*")
    _messages(ps, 1, timeout=0.5)  # let the confirmations through
    with pub.pipeline(transaction=False) as pipe:
        for i in range(300):
            pipe.publish("seq", str(i))
        assert pipe.execute() == [2] * 300
    got = _messages(ps, 600)
    # Each publish delivers the channel message, then the pattern message, before the next.
    expected = [(kind, str(i).encode()) for i in range(300) for kind in ("message", "pmessage")]
    assert [(m["type"], m["data"]) for m in got] == expected
    ps.close()
    sub.close()
    pub.close()


def test_subscribers_of_many_clients_and_disconnect_cleanup(predis_server):
    pub = redis.Redis(port=predis_server.port)
    subs = [redis.Redis(port=predis_server.port).pubsub(ignore_subscribe_messages=True)
            for _ in range(5)]
    for ps in subs:
        ps.subscribe("fanout")
    deadline = time.time() + 5
    while pub.pubsub_numsub("fanout")[0][1] != 5 and time.time() < deadline:
        time.sleep(0.02)
    assert pub.publish("fanout", "all") == 5
    for ps in subs:
        assert _messages(ps, 1)[0]["data"] == b"all"
    for ps in subs[:3]:
        ps.close()  # disconnect without unsubscribing
    deadline = time.time() + 5
    while pub.pubsub_numsub("fanout")[0][1] != 2 and time.time() < deadline:
        time.sleep(0.02)
    assert pub.publish("fanout", "rest") == 2
    for ps in subs[3:]:
        ps.close()
    pub.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_subscribed_resp2_client_is_restricted_resp3_is_not(predis_server, protocol):
    conn = RawConnection(predis_server.port)
    conn.call("HELLO", protocol)
    conn.call("SUBSCRIBE", "ch")
    reply = conn.call("SET", "k", "v")
    if protocol == 2:
        assert reply.startswith(b"-ERR Can't execute 'set'")
    else:
        assert reply == b"+OK\r\n"
    conn.call("RESET")
    assert conn.call("PUBSUB", "NUMSUB", "ch") == b"*2\r\n$2\r\nch\r\n:0\r\n"
    conn.close()


def test_command_table_rows_match(raw_pair):
    for name in ("subscribe", "unsubscribe", "psubscribe", "punsubscribe", "publish",
                 # (not the parent "pubsub": Redis lists subcommands in its seeded dict's order)
                 "pubsub|channels", "pubsub|numsub", "pubsub|numpat", "pubsub|help",
                 "pubsub|shardchannels", "pubsub|shardnumsub"):
        assert raw_pair[0].call("COMMAND", "INFO", name) == raw_pair[1].call("COMMAND", "INFO", name), name
