"""Pub/sub: SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE PUNSUBSCRIBE PUBLISH PUBSUB.

https://redis.io/commands/?group=pubsub

(Un)subscribe commands answer one confirmation per channel, so their reply is several
frames: ``PubSubHub.frames`` encodes them (RESP2 arrays, RESP3 pushes) as one ``Raw``
reply that keeps its place among the connection's other replies.
"""
from __future__ import annotations

from ..glob import glob_match
from ..replies import Status
from .table import command


def _subscribe_generic(client, argv, kind: bytes, add) -> object:
    frames = []
    for name in argv[1:]:
        add(client, name)
        frames.append([kind, name, client.subscriptions])
    return client.server.pubsub.frames(client, frames)


def subscribe(client, argv):
    """https://redis.io/commands/subscribe"""
    return _subscribe_generic(client, argv, b"subscribe", client.server.pubsub.subscribe)


def psubscribe(client, argv):
    """https://redis.io/commands/psubscribe"""
    return _subscribe_generic(client, argv, b"psubscribe", client.server.pubsub.psubscribe)


def _unsubscribe_generic(client, argv, kind: bytes, subscribed: set[bytes], drop):
    hub = client.server.pubsub
    targets = argv[1:] if len(argv) > 1 else list(subscribed)
    frames = []
    for name in targets:
        drop(client, name)
        frames.append([kind, name, client.subscriptions])
    if not frames:
        frames.append([kind, None, client.subscriptions])
    return hub.frames(client, frames)


def unsubscribe(client, argv):
    """https://redis.io/commands/unsubscribe"""
    hub = client.server.pubsub
    return _unsubscribe_generic(client, argv, b"unsubscribe", client.channels, hub.unsubscribe)


def punsubscribe(client, argv):
    """https://redis.io/commands/punsubscribe"""
    hub = client.server.pubsub
    return _unsubscribe_generic(client, argv, b"punsubscribe", client.patterns, hub.punsubscribe)


def publish(client, argv):
    """https://redis.io/commands/publish"""
    return client.server.pubsub.publish(argv[1], argv[2])


def pubsub_channels(client, argv):
    """https://redis.io/commands/pubsub-channels"""
    pattern = argv[2] if len(argv) > 2 else None
    return [channel for channel in client.server.pubsub.channels
            if pattern is None or glob_match(pattern, channel)]


def pubsub_numsub(client, argv):
    """https://redis.io/commands/pubsub-numsub (an array, not a map, in RESP3 too)"""
    channels = client.server.pubsub.channels
    out: list[object] = []
    for channel in argv[2:]:
        out += (channel, len(channels.get(channel, ())))
    return out


def pubsub_numpat(client, argv):
    """https://redis.io/commands/pubsub-numpat: distinct patterns with a subscriber"""
    return len(client.server.pubsub.patterns)


def pubsub_shardchannels(client, argv):
    return []  # no cluster mode: no shard channels


def pubsub_shardnumsub(client, argv):
    out: list[object] = []
    for channel in argv[2:]:
        out += (channel, 0)
    return out


_HELP = [
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
]


def pubsub_help(client, argv):
    return [Status(line.encode()) for line in _HELP]


_SUB = "pubsub noscript loading stale"
_INTROSPECT = "pubsub loading stale"
_ACL = "@pubsub @slow"

COMMANDS = [
    command("subscribe", subscribe, -2, _SUB, acl=_ACL, group="pubsub"),
    command("unsubscribe", unsubscribe, -1, _SUB, acl=_ACL, group="pubsub"),
    command("psubscribe", psubscribe, -2, _SUB, acl=_ACL, group="pubsub"),
    command("punsubscribe", punsubscribe, -1, _SUB, acl=_ACL, group="pubsub"),
    command("publish", publish, 3, "pubsub loading stale fast may_replicate",
            acl="@pubsub @fast", group="pubsub"),
    command("pubsub", None, -2, "", acl="@slow", group="pubsub", subcommands=[
        command("help", pubsub_help, 2, "loading stale", acl="@slow"),
        command("numpat", pubsub_numpat, 2, _INTROSPECT, acl=_ACL),
        command("numsub", pubsub_numsub, -2, _INTROSPECT, acl=_ACL),
        command("shardnumsub", pubsub_shardnumsub, -2, _INTROSPECT, acl=_ACL),
        command("channels", pubsub_channels, -2, _INTROSPECT, acl=_ACL),
        command("shardchannels", pubsub_shardchannels, -2, _INTROSPECT, acl=_ACL),
    ]),
]
