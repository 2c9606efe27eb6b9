"""Client.plain (predis_server/client.py) stays equal to the state it summarises whatever
sequence of mode-changing commands a connection sends: the lone batch trusts the flag
instead of reading the six fields for every request."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predis_server.config import Config
from tests.inprocess import connect, in_process_server
from tests.resp import encode_command

MODE_COMMANDS = st.sampled_from([
    ("MULTI",), ("EXEC",), ("DISCARD",), ("RESET",), ("GET", "a"), ("PING",),
    ("SUBSCRIBE", "a"), ("SUBSCRIBE", "b"), ("UNSUBSCRIBE", "a"), ("UNSUBSCRIBE",),
    ("PSUBSCRIBE", "p*"), ("PUNSUBSCRIBE", "p*"), ("PUNSUBSCRIBE",),
    ("CLIENT", "REPLY", "ON"), ("CLIENT", "REPLY", "OFF"), ("CLIENT", "REPLY", "SKIP"),
    ("CLIENT", "NO-TOUCH", "ON"), ("CLIENT", "NO-TOUCH", "OFF"),
    ("AUTH", "pw"), ("AUTH", "wrong"), ("HELLO", "3", "AUTH", "default", "pw"), ("HELLO", "2"),
])


def expected_plain(client) -> bool:
    return bool(client.authenticated and client.multi is None and client.reply_mode == "on"
                and not client.channels and not client.patterns and not client.no_touch)


@pytest.mark.parametrize("password", [None, "pw"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ticks=st.lists(st.lists(MODE_COMMANDS, min_size=1, max_size=4), min_size=1, max_size=12))
def test_plain_flag_follows_every_mode_change(password, ticks):
    config = Config()
    if password:
        config.requirepass = password
    server = in_process_server(config)
    conn, _ = connect(server)
    client = conn.client
    assert client.plain == expected_plain(client)
    for commands in ticks:
        for command in commands:
            conn.data_received(encode_command(*command))
        server.run_batch()
        assert client.plain == expected_plain(client), commands
