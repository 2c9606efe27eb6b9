"""Channel and pattern subscriptions and message delivery (RESP2 arrays or RESP3 pushes)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .glob import glob_match
from .protocol.encoder import encode
from .replies import Push, Raw

if TYPE_CHECKING:
    from .client import Client
    from .server import Server


class PubSubHub:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.channels: dict[bytes, dict[int, Client]] = {}
        self.patterns: dict[bytes, dict[int, Client]] = {}

    def push(self, client: Client, items: list[object]) -> None:
        out: list[bytes] = []
        encode(Push(items), client.resp == 3, out)
        client.send(out[0] if len(out) == 1 else b"".join(out))

    def frames(self, client: Client, messages: list[list[object]]) -> Raw:
        """Several pub/sub frames as one reply (subscribe confirmations, one per channel)."""
        out: list[bytes] = []
        resp3 = client.resp == 3
        for items in messages:
            encode(Push(items), resp3, out)
        return Raw(b"".join(out))

    def subscribe(self, client: Client, channel: bytes) -> None:
        if channel not in client.channels:
            client.channels.add(channel)
            client.update_plain()
            self.channels.setdefault(channel, {})[client.id] = client

    def unsubscribe(self, client: Client, channel: bytes) -> bool:
        if channel not in client.channels:
            return False
        client.channels.discard(channel)
        client.update_plain()
        subscribers = self.channels.get(channel)
        if subscribers is not None:
            subscribers.pop(client.id, None)
            if not subscribers:
                del self.channels[channel]
        return True

    def psubscribe(self, client: Client, pattern: bytes) -> None:
        if pattern not in client.patterns:
            client.patterns.add(pattern)
            client.update_plain()
            self.patterns.setdefault(pattern, {})[client.id] = client

    def punsubscribe(self, client: Client, pattern: bytes) -> bool:
        if pattern not in client.patterns:
            return False
        client.patterns.discard(pattern)
        client.update_plain()
        subscribers = self.patterns.get(pattern)
        if subscribers is not None:
            subscribers.pop(client.id, None)
            if not subscribers:
                del self.patterns[pattern]
        return True

    def publish(self, channel: bytes, message: bytes) -> int:
        receivers = 0
        for client in list(self.channels.get(channel, {}).values()):
            self.push(client, [b"message", channel, message])
            receivers += 1
        for pattern, clients in list(self.patterns.items()):
            if glob_match(pattern, channel):
                for client in list(clients.values()):
                    self.push(client, [b"pmessage", pattern, channel, message])
                    receivers += 1
        self.server.stats.pubsub_messages += receivers
        return receivers

    def drop_client(self, client: Client) -> None:
        for channel in list(client.channels):
            self.unsubscribe(client, channel)
        for pattern in list(client.patterns):
            self.punsubscribe(client, pattern)
