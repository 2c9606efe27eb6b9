"""redis-py against the session Predis: sync and asyncio clients, RESP2 and RESP3, pipelines,
optimistic transactions with WATCH retry loops, and a connection pool shared by many threads."""
from __future__ import annotations

import asyncio
import threading

import pytest
import redis
import redis.asyncio

PROTOCOLS = [2, 3]


@pytest.fixture(params=PROTOCOLS, ids=["resp2", "resp3"])
def client(request, predis_server):
    r = redis.Redis(port=predis_server.port, protocol=request.param)
    r.flushall()
    yield r
    r.close()


def test_hello_negotiated_protocol(client):
    protocol = client.connection_pool.connection_kwargs.get("protocol", 2)
    reply = client.execute_command("HELLO")
    if isinstance(reply, list):  # RESP2: a flat array that redis-py leaves as it is
        reply = dict(zip(reply[::2], reply[1::2]))
    assert reply[b"proto"] == protocol


def test_hash_replies_parse_to_python_values(client):
    client.hset("h", mapping={"a": "1", "b": "2"})
    assert client.hgetall("h") == {b"a": b"1", b"b": b"2"}
    assert client.hincrbyfloat("h", "a", 0.5) == 1.5
    assert sorted(client.hkeys("h")) == [b"a", b"b"]
    cursor, fields = client.hscan("h", 0)
    assert cursor == 0 and fields == {b"a": b"1.5", b"b": b"2"}
    assert client.hrandfield("h", 2, withvalues=True) in (
        [b"a", b"1.5", b"b", b"2"], [b"b", b"2", b"a", b"1.5"],
        [[b"a", b"1.5"], [b"b", b"2"]], [[b"b", b"2"], [b"a", b"1.5"]])


def test_pipeline_without_transaction(client):
    with client.pipeline(transaction=False) as pipe:
        pipe.set("a", "1").incr("a").hset("h", "f", "v").hget("h", "f").get("missing")
        pipe.incr("h")  # an error in the middle does not stop the others
        pipe.hlen("h")
        results = pipe.execute(raise_on_error=False)
    assert results[:5] == [True, 2, 1, b"v", None]
    assert isinstance(results[5], redis.ResponseError) and "WRONGTYPE" in str(results[5])
    assert results[6] == 1


def test_pipeline_transaction_commits_atomically(client):
    with client.pipeline(transaction=True) as pipe:
        pipe.set("counter", 10).incrby("counter", 5).hset("h", mapping={"x": "1"}).hgetall("h")
        assert pipe.execute() == [True, 15, 1, {b"x": b"1"}]


def test_pipeline_transaction_with_runtime_error_still_runs_the_rest(client):
    client.set("s", "text")
    with client.pipeline(transaction=True) as pipe:
        pipe.incr("s").set("after", "yes")
        with pytest.raises(redis.ResponseError):
            pipe.execute()
    assert client.get("after") == b"yes"


def test_pipeline_transaction_with_queue_error_aborts(client):
    with client.pipeline(transaction=True) as pipe:
        pipe.set("never", "1").execute_command("HSET", "h", "only-field")
        with pytest.raises(redis.ResponseError):
            pipe.execute()
    assert client.exists("never") == 0


def test_watch_retry_loop_with_conflicting_writer(client, predis_server):
    client.set("balance", 100)
    other = redis.Redis(port=predis_server.port)
    attempts = []

    def withdraw(pipe):
        balance = int(pipe.get("balance"))
        attempts.append(balance)
        if len(attempts) == 1:
            other.incrby("balance", 50)  # a concurrent change after WATCH: forces one retry
        pipe.multi()
        pipe.set("balance", balance - 30)

    client.transaction(withdraw, "balance")
    assert attempts == [100, 150]
    assert client.get("balance") == b"120"
    other.close()


def test_watch_error_when_changed_and_no_retry(client, predis_server):
    other = redis.Redis(port=predis_server.port)
    with client.pipeline() as pipe:
        pipe.watch("k")
        other.set("k", "changed")
        pipe.multi()
        pipe.set("k", "mine")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert client.get("k") == b"changed"
    other.close()


def test_connection_pool_many_threads_increment_atomically(predis_server):
    pool = redis.ConnectionPool(port=predis_server.port, max_connections=16)
    r = redis.Redis(connection_pool=pool)
    r.delete("shared", "h")
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            local = redis.Redis(connection_pool=pool)
            for i in range(50):
                local.incr("shared")
                local.hincrby("h", f"t{n}", 1)
                if i % 10 == 0:
                    def add(pipe):
                        value = int(pipe.hget("h", "total") or 0)
                        pipe.multi()
                        pipe.hset("h", "total", value + 1)
                    local.transaction(add, "h")
        except Exception as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert int(r.get("shared")) == 12 * 50
    fields = r.hgetall("h")
    assert int(fields.pop(b"total")) == 12 * 5  # WATCH retries lost no update
    assert fields == {f"t{n}".encode(): b"50" for n in range(12)}
    pool.disconnect()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_asyncio_client_pipelines_and_pubsub(predis_server, protocol):
    async def scenario() -> None:
        r = redis.asyncio.Redis(port=predis_server.port, protocol=protocol)
        await r.delete("ak", "ah")
        assert await r.hset("ah", mapping={"a": "1"}) == 1
        async with r.pipeline(transaction=True) as pipe:
            pipe.incr("ak").hincrby("ah", "a", 2).hgetall("ah")
            assert await pipe.execute() == [1, 3, {b"a": b"3"}]
        results = await asyncio.gather(*(r.incr("ak") for _ in range(50)))
        assert sorted(results) == list(range(2, 52))

        async def bump(pipe):
            value = int(await pipe.get("ak"))
            pipe.multi()
            pipe.set("ak", value * 2)

        await r.transaction(bump, "ak")
        assert await r.get("ak") == b"102"

        ps = r.pubsub()
        await ps.subscribe("achan")
        assert (await ps.get_message(timeout=2))["type"] == "subscribe"
        publisher = redis.asyncio.Redis(port=predis_server.port, protocol=protocol)
        assert await publisher.publish("achan", "hi") == 1
        message = await ps.get_message(timeout=2)
        assert message["type"] == "message" and message["data"] == b"hi"
        await ps.unsubscribe("achan")
        await ps.aclose()
        await publisher.aclose()
        await r.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_asyncio_watch_conflict_raises(predis_server, protocol):
    async def scenario() -> None:
        r = redis.asyncio.Redis(port=predis_server.port, protocol=protocol)
        other = redis.asyncio.Redis(port=predis_server.port)
        await r.set("w", "1")
        async with r.pipeline() as pipe:
            await pipe.watch("w")
            await other.set("w", "2")
            pipe.multi()
            pipe.set("w", "3")
            with pytest.raises(redis.WatchError):
                await pipe.execute()
        assert await r.get("w") == b"2"
        await other.aclose()
        await r.aclose()

    asyncio.run(scenario())
