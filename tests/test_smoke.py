"""First contact: redis-py and raw RESP against a real Predis process."""
from __future__ import annotations


def test_set_get_roundtrip(r):
    assert r.set("greeting", "hello") is True
    assert r.get("greeting") == b"hello"
    assert r.get("missing") is None


def test_raw_replies_match_redis(raw_pair):
    ours, theirs = raw_pair
    for args in (["SET", "k", "v"], ["GET", "k"], ["INCR", "k"], ["APPEND", "k", "w"],
                 ["GETRANGE", "k", "0", "-1"], ["NOSUCHCOMMAND", "a"], ["GET"]):
        assert ours.call(*args) == theirs.call(*args), args
