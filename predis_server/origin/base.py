"""The origin adapter interface and the URL -> adapter table.

An adapter either is ``blocking`` (its ``get`` runs in the loader's thread pool: SQLite,
files) or is asyncio-native (``aget`` runs on the event loop: the Redis-protocol client).
Every URL accepts ``?delay_ms=N``: an injected latency per read, to model a slow database
in benchmarks (the sleep happens in the worker thread or as an asyncio sleep, never
blocking the event loop).
"""
from __future__ import annotations

import asyncio
import importlib
import time
from urllib.parse import parse_qs, urlsplit


class OriginError(Exception):
    """An origin read failed; the message goes to the client after ``ERR origin``."""


class Origin:
    """One origin. Subclasses implement ``get`` (blocking) or ``aget`` (asyncio)."""

    blocking = True
    url = ""
    delay_s = 0.0

    def get(self, key: bytes) -> bytes | None:
        raise NotImplementedError

    async def aget(self, key: bytes) -> bytes | None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return await self._aget(key)

    async def _aget(self, key: bytes) -> bytes | None:
        raise NotImplementedError

    def read(self, key: bytes) -> bytes | None:
        """Blocking read with the injected delay (called in a worker thread)."""
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.get(key)

    def close(self) -> None:
        """Release connections and files."""


_SCHEMES = {
    "sqlite": "predis_server.origin.sqlite:SqliteOrigin",
    "file": "predis_server.origin.files:FileOrigin",
    "redis": "predis_server.origin.redis_origin:RedisOrigin",
}


def open_origin(url: str) -> Origin:
    """``sqlite:///path/origin.db``, ``file:///dir``, ``redis://host:port[/db]`` (+ ``?delay_ms=``)."""
    parts = urlsplit(url)
    target = _SCHEMES.get(parts.scheme)
    if target is None:
        raise ValueError(f"unsupported origin scheme {parts.scheme!r} (use sqlite://, file:// or redis://)")
    module_name, attr = target.split(":")
    cls = getattr(importlib.import_module(module_name), attr)
    query = parse_qs(parts.query)
    origin: Origin = cls(parts)
    origin.url = url
    if "delay_ms" in query:
        origin.delay_s = float(query["delay_ms"][0]) / 1000.0
    return origin
