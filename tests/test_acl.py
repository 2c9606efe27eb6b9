"""ACL users, passwords, categories, key/channel patterns, NOPERM, aclfile, rename-command,
protected mode — against a real Predis, and byte for byte against redis-server 7.0.15."""
from __future__ import annotations

import hashlib
import socket

import pytest
import redis
from resp import RawConnection
from servers import predis_process, redis_process


@pytest.fixture(scope="module")
def acl_pair():
    """A Predis and a redis-server of our own: these tests change users, which must not leak."""
    with predis_process() as ours, redis_process() as theirs:
        yield ours, theirs


@pytest.fixture
def pair(acl_pair):
    conns = [RawConnection(s.port) for s in acl_pair]
    yield conns
    for conn in conns:
        for name in conn.call("ACL", "USERS").split(b"\r\n")[2::2]:
            if name and name != b"default":
                conn.call("ACL", "DELUSER", name)
        conn.call("ACL", "SETUSER", "default", "reset", "on", "nopass", "~*", "&*", "+@all")
        conn.call("ACL", "LOG", "RESET")
        conn.close()


def both(pair, *args, same_rules=False):
    ours, theirs = (conn.call(*args) for conn in pair)
    if same_rules:
        # Redis 7.0 lists single-command rules in its command dict's order, which is seeded
        # randomly per process; the rules (and so the permissions) must be the same set.
        ours, theirs = (sorted(reply.split()) for reply in (ours, theirs))
    assert ours == theirs, f"{args}: predis {ours!r} != redis {theirs!r}"
    return ours


def _log_entries(reply: bytes) -> list[dict[bytes, bytes]]:
    """ACL LOG entries without the fields that differ by nature (age, client-info)."""
    entries, rest = [], reply.split(b"*14\r\n")[1:]
    for raw in rest:
        parts = raw.split(b"\r\n")
        fields, i = {}, 0
        while i + 3 < len(parts):
            name = parts[i + 1]
            if parts[i + 2].startswith(b":"):
                fields[name], i = parts[i + 2], i + 3
            else:
                fields[name], i = parts[i + 3], i + 4
        entries.append({k: v for k, v in fields.items() if k not in (b"age-seconds", b"client-info")})
    return entries


SETUSER_CASES = [
    ["alice"],
    ["alice", "on", ">p1", "+get", "~foo*", "+@string", "-set", "&ch*"],
    ["bob", "on", "nopass", "+@all", "-@dangerous", "%R~r*", "~k*"],
    ["x", "on", "nopass", "+set", "+get", "-@all", "+get", "+set", "+mget", "~a"],
    ["y", "on", "nopass", "+@all", "-get", "-set"],
    ["w", "on", "nopass", "+@all", "allkeys", "allchannels", ">a", ">b", "resetpass", ">c"],
    ["v", "off", ">a", "nopass"],
    ["u", "on", ">a", ">a", ">b", "<b"],
    ["t", "on", "#" + hashlib.sha256(b"x").hexdigest(), "%W~w*", "%RW~q*", "&x"],
    ["r", "on", "nopass", "+select|0", "resetchannels", "&a", "&b"],
]


@pytest.mark.parametrize("args", SETUSER_CASES, ids=lambda a: " ".join(a)[:40])
def test_setuser_then_list_and_getuser_match_redis(pair, args):
    both(pair, "ACL", "SETUSER", *args)
    both(pair, "ACL", "LIST", same_rules=True)
    both(pair, "ACL", "GETUSER", args[0], same_rules=True)
    both(pair, "ACL", "USERS")


@pytest.mark.parametrize("args", [
    ["e", "+nosuchcommand"], ["e", "+@nosuchcategory"], ["e", "bogus"], ["e", "#abc"],
    ["e", "allkeys", "~x"], ["e", "allchannels", "&x"],
], ids=lambda a: " ".join(a))
def test_setuser_errors_match_redis(pair, args):
    assert both(pair, "ACL", "SETUSER", *args).startswith(b"-ERR Error in ACL SETUSER modifier")
    both(pair, "ACL", "GETUSER", "e")  # nothing half-applied: the user was not created


def test_noperm_texts_and_acl_log_match_redis(pair):
    both(pair, "ACL", "SETUSER", "alice", "on", ">pw", "~foo*", "&chan", "+get", "+set")
    users = [RawConnection(port) for port in (pair[0].sock.getpeername()[1], pair[1].sock.getpeername()[1])]
    try:
        both(users, "AUTH", "alice", "pw")
        both(users, "GET", "bar")
        both(users, "HGET", "foo1", "x")
        both(users, "SET", "bar", "1")
        both(users, "AUTH", "alice", "wrong")
        both(users, "AUTH", "nobody", "x")
        both(users, "ACL", "WHOAMI")
    finally:
        for conn in users:
            conn.close()
    logs = []
    for conn in pair:
        conn.send(b"*2\r\n$3\r\nACL\r\n$3\r\nLOG\r\n")
        logs.append(_log_entries(conn.read_reply()))
    assert logs[0] == logs[1]
    assert [e[b"reason"] for e in logs[0]] == [b"command", b"auth", b"auth", b"key", b"command"]
    both(pair, "ACL", "DRYRUN", "alice", "get", "bar")
    both(pair, "ACL", "DRYRUN", "alice", "get", "foo")
    both(pair, "ACL", "DRYRUN", "alice", "hget", "foo", "x")
    both(pair, "ACL", "DRYRUN", "nobody", "get", "foo")
    both(pair, "ACL", "DELUSER", "default")
    both(pair, "ACL", "CAT", "nosuch")
    both(pair, "ACL", "CAT")
    both(pair, "ACL", "HELP")
    both(pair, "ACL", "LOG", "RESET")
    both(pair, "ACL", "LOG")


def test_denials_are_counted_in_info_and_multi_is_aborted(acl_pair):
    port = acl_pair[0].port
    admin = redis.Redis(port=port)
    admin.execute_command("ACL", "SETUSER", "carol", "on", ">pw", "~c:*", "+@read", "+multi", "+exec")
    before = admin.info("stats")
    carol = RawConnection(port)
    assert carol.call("AUTH", "carol", "pw") == b"+OK\r\n"
    assert carol.call("SET", "c:1", "x").startswith(b"-NOPERM this user has no permissions to run")
    assert carol.call("GET", "d:1").startswith(b"-NOPERM this user has no permissions to access one")
    assert carol.call("MULTI") == b"+OK\r\n"
    assert carol.call("DEL", "c:1").startswith(b"-NOPERM")
    assert carol.call("EXEC").startswith(b"-EXECABORT")
    after = admin.info("stats")
    assert after["acl_access_denied_cmd"] - before["acl_access_denied_cmd"] == 2
    assert after["acl_access_denied_key"] - before["acl_access_denied_key"] == 1
    admin.execute_command("ACL", "DELUSER", "carol")
    assert carol.read_until_closed() == b""  # a deleted user's connections are closed
    admin.close()


def test_requirepass_wrong_passwords_counted(acl_pair):
    port = acl_pair[0].port
    admin = RawConnection(port)
    assert admin.call("CONFIG", "SET", "requirepass", "s3cret") == b"+OK\r\n"
    try:
        fresh = RawConnection(port)
        assert fresh.call("GET", "k") == b"-NOAUTH Authentication required.\r\n"
        before = admin.call("INFO", "stats")
        assert fresh.call("AUTH", "nope").startswith(b"-WRONGPASS")
        assert fresh.call("AUTH", "default", "s3cret") == b"+OK\r\n"
        after = admin.call("INFO", "stats")
        count = lambda text: int(text.split(b"acl_access_denied_auth:")[1].split(b"\r\n")[0])  # noqa: E731
        assert count(after) == count(before) + 1
        fresh.close()
    finally:
        admin.call("CONFIG", "SET", "requirepass", "")
        admin.close()


def test_aclfile_save_and_load(tmp_path):
    aclfile = tmp_path / "users.acl"
    aclfile.write_text("user default on nopass ~* &* +@all\nuser ops on >opspw ~* &* +@all -@dangerous\n")
    with predis_process("--aclfile", str(aclfile)) as server:
        admin = redis.Redis(port=server.port)
        assert sorted(admin.acl_users()) == ["default", "ops"]
        ops = redis.Redis(port=server.port, username="ops", password="opspw")
        assert ops.ping()
        admin.execute_command("ACL", "SETUSER", "dev", "on", ">devpw", "~dev:*", "+@read")
        assert admin.execute_command("ACL", "SAVE") == b"OK"
        saved = aclfile.read_text()
        assert "user dev on #" + hashlib.sha256(b"devpw").hexdigest() in saved and "devpw" not in saved
        admin.execute_command("ACL", "DELUSER", "dev")
        assert admin.execute_command("ACL", "LOAD") == b"OK"
        assert "dev" in admin.acl_users()
        aclfile.write_text("user broken on +nosuchcommand\n")
        with pytest.raises(redis.ResponseError):
            admin.execute_command("ACL", "LOAD")
        assert "dev" in admin.acl_users()  # a failed load changes nothing
        admin.close()
        ops.close()


def test_acl_load_without_aclfile_matches_redis(pair):
    both(pair, "ACL", "LOAD")
    both(pair, "ACL", "SAVE")


def test_rename_command(tmp_path):
    conf = tmp_path / "predis.conf"
    conf.write_text('rename-command FLUSHALL ""\nrename-command DBSIZE keycount\n')
    with predis_process(conf=str(conf)) as server:
        conn = RawConnection(server.port)
        assert conn.call("FLUSHALL").startswith(b"-ERR unknown command 'FLUSHALL'")
        assert conn.call("DBSIZE").startswith(b"-ERR unknown command")
        assert conn.call("KEYCOUNT") == b":0\r\n"
        conn.close()


def _non_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_protected_mode_refuses_non_loopback_clients():
    address = _non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    with predis_process("--bind", f"127.0.0.1 {address}") as server:
        outside = RawConnection(server.port, host=address)
        assert outside.read_until_closed().startswith(b"-DENIED Redis is running in protected mode")
        inside = RawConnection(server.port)
        assert inside.call("CONFIG", "SET", "requirepass", "pw") == b"+OK\r\n"
        outside = RawConnection(server.port, host=address)
        assert outside.call("AUTH", "pw") == b"+OK\r\n"  # a password lifts protected mode
        outside.close()
        inside.close()


def test_acl_check_absent_on_default_only_server(predis_server):
    """The hot path skips ACLs while every user is all-permissive (no NOPERM possible)."""
    conn = RawConnection(predis_server.port)
    assert conn.call("ACL", "LIST") == b"*1\r\n$34\r\nuser default on nopass ~* &* +@all\r\n"
    assert conn.call("ACL", "WHOAMI") == b"$7\r\ndefault\r\n"
    conn.close()


def test_genpass_lengths():
    with predis_process() as server:
        conn = redis.Redis(port=server.port)
        assert len(conn.execute_command("ACL", "GENPASS")) == 64
        assert len(conn.execute_command("ACL", "GENPASS", "5")) == 2
        conn.close()



def test_channel_patterns(acl_pair):
    admin = RawConnection(acl_pair[0].port)
    if admin.call("COMMAND", "INFO", "publish") in (b"*1\r\n*-1\r\n", b"*1\r\n$-1\r\n") or \
            admin.call("ACL", "SETUSER", "pub", "on", ">pw", "&news.*", "+publish").startswith(b"-"):
        pytest.skip("PUBLISH is not in the command table yet")
    user = RawConnection(acl_pair[0].port)
    assert user.call("AUTH", "pub", "pw") == b"+OK\r\n"
    assert user.call("PUBLISH", "news.1", "m") == b":0\r\n"
    assert user.call("PUBLISH", "other", "m") == (
        b"-NOPERM this user has no permissions to access one of the channels used as arguments\r\n")
    admin.call("ACL", "DELUSER", "pub")
    admin.close()
