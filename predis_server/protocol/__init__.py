"""Bytes to argv lists and replies to bytes; knows nothing of the keyspace."""
