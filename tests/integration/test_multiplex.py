"""The multiplexed, auto-pipelined client on a real Redis: replies reach their own callers,
errors stay with theirs, and a cancelled, timed-out or killed command leaves the rest intact."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import uvloop
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.config import Settings
from shared.redis.client import create_redis
from shared.redis.multiplex import MultiplexedRedis, ScriptRoutingRedis


@pytest.fixture
async def mux(settings: Settings) -> AsyncIterator[MultiplexedRedis]:
    client = MultiplexedRedis(settings.redis_url, client_name=f"{settings.key_prefix}-mux")
    yield client
    await client.aclose()


async def test_concurrent_commands_each_get_their_own_reply(
    mux: MultiplexedRedis, redis: Redis, settings: Settings
) -> None:
    keys = [f"{settings.key_prefix}:mux:{i}" for i in range(500)]
    await asyncio.gather(*(mux.execute("SET", k, f"v{i}") for i, k in enumerate(keys)))
    got = await asyncio.gather(*(mux.execute("GET", k) for k in keys))
    assert got == [f"v{i}".encode() for i in range(500)]
    # The same database as the URL names (tests use db 9), seen by an ordinary client.
    assert await redis.get(keys[7]) == b"v7"
    counts = await asyncio.gather(*(mux.execute("INCR", f"{keys[0]}:n") for _ in range(200)))
    assert sorted(counts) == list(range(1, 201))


async def test_an_error_fails_only_its_own_command(
    mux: MultiplexedRedis, settings: Settings
) -> None:
    key = f"{settings.key_prefix}:mux:text"
    await mux.execute("SET", key, "not a number")
    results = await asyncio.gather(
        mux.execute("PING"),
        mux.execute("INCR", key),
        mux.execute("GET", key),
        return_exceptions=True,
    )
    assert results[0] == b"PONG"
    assert isinstance(results[1], ResponseError)
    assert results[2] == b"not a number"


async def test_scripts_load_themselves_and_run_by_sha(
    mux: MultiplexedRedis, redis: Redis, settings: Settings
) -> None:
    # A script no one has loaded yet (its text is unique): the first call falls back to EVAL.
    source = f"-- {secrets.token_hex(8)}\nreturn {{KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}}"
    script = mux.register_script(source)
    key = f"{settings.key_prefix}:mux:script"
    assert await redis.script_exists(script.sha) == [False]
    assert await script(keys=[key], args=["a"]) == [key.encode(), b"a", 1]
    assert await redis.script_exists(script.sha) == [True]
    assert await script(keys=[key], args=[2]) == [key.encode(), b"2", 2]


@pytest.mark.parametrize("yields_before_cancel", range(4))
async def test_a_cancelled_command_does_not_shift_the_replies(
    mux: MultiplexedRedis, settings: Settings, yields_before_cancel: int
) -> None:
    key = f"{settings.key_prefix}:mux:c"
    await mux.execute("SET", key, "kept")
    doomed = asyncio.ensure_future(mux.execute("GET", f"{key}:other"))
    for _ in range(yields_before_cancel):
        await asyncio.sleep(0)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert await asyncio.gather(*(mux.execute("GET", key) for _ in range(20))) == [b"kept"] * 20


async def test_a_killed_connection_is_replaced(
    mux: MultiplexedRedis, redis: Redis, settings: Settings
) -> None:
    key = f"{settings.key_prefix}:mux:k"
    await mux.execute("SET", key, "1")
    name = f"{settings.key_prefix}-mux"
    clients = [c for c in await redis.client_list() if c.get("name") == name]
    assert len(clients) == 1
    assert await redis.client_kill_filter(_id=clients[0]["id"]) == 1
    # Retried on a new connection, transparently.
    assert await mux.execute("GET", key) == b"1"
    assert len([c for c in await redis.client_list() if c.get("name") == name]) == 1


async def test_a_reply_that_never_comes_times_out_and_the_client_recovers(
    settings: Settings,
) -> None:
    mux = MultiplexedRedis(settings.redis_url, timeout_s=0.2)
    key = f"{settings.key_prefix}:mux:list"
    try:
        with pytest.raises(RedisTimeoutError):
            await mux.execute("BLPOP", key, 2)  # blocks past our timeout, on every retry
        assert await mux.execute("PING") == b"PONG"
    finally:
        await mux.aclose()


async def test_an_unreachable_server_raises_a_connection_error() -> None:
    mux = MultiplexedRedis("redis://127.0.0.1:1/0", connect_timeout_s=0.5)
    with pytest.raises(RedisConnectionError):
        await mux.execute("PING")
    await mux.aclose()


def test_urls_other_than_redis_or_unix_are_refused() -> None:
    with pytest.raises(ValueError, match="scheme"):
        MultiplexedRedis("rediss://example.com:6380/0")


async def test_registered_scripts_go_through_the_shared_connection(
    settings: Settings, redis: Redis
) -> None:
    """create_redis(multiplex_scripts=True): scripts on the multiplexed connection, a script
    inside a pipeline and every other command on the pool, all against the same data."""
    client = create_redis(
        settings, client_name=f"{settings.key_prefix}-api", multiplex_scripts=True
    )
    key = f"{settings.key_prefix}:mux:routed"
    try:
        assert isinstance(client, ScriptRoutingRedis)
        incr = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        counts = await asyncio.gather(*(incr(keys=[key], args=[1]) for _ in range(50)))
        assert sorted(counts) == list(range(1, 51))
        pipe = client.pipeline(transaction=True)
        await incr(keys=[key], args=[10], client=pipe)
        pipe.get(key)
        assert await pipe.execute() == [60, b"60"]
        names = [c.get("name") for c in await redis.client_list()]
        assert f"{settings.key_prefix}-api-mux" in names  # the shared connection
        assert f"{settings.key_prefix}-api" in names  # the pool (pipeline, GET)
    finally:
        await client.aclose(close_connection_pool=True)
    names = [c.get("name") for c in await redis.client_list()]
    assert f"{settings.key_prefix}-api-mux" not in names


def test_the_shared_connection_runs_on_uvloop_as_in_the_api(settings: Settings) -> None:
    async def scenario() -> list[bytes]:
        mux = MultiplexedRedis(settings.redis_url)
        try:
            key = f"{settings.key_prefix}:mux:uv"
            await mux.execute("SET", key, "uv")
            return list(await asyncio.gather(*(mux.execute("GET", key) for _ in range(100))))
        finally:
            await mux.aclose()

    assert uvloop.run(scenario()) == [b"uv"] * 100


async def test_simple_commands_share_the_connection_with_redis_py_replies(
    settings: Settings, redis: Redis
) -> None:
    """GET/SET/HGETALL/ZRANGE... through the shared connection answer exactly as through the
    pool (redis-py's response callbacks still apply); blocking reads stay on the pool."""
    routed = create_redis(settings, client_name=f"{settings.key_prefix}-r", multiplex_scripts=True)
    key = f"{settings.key_prefix}:mux:cmd"
    try:
        assert await routed.set(key, "v", ex=60) is True
        assert await routed.get(key) == b"v"
        assert await routed.hset(f"{key}:h", mapping={"a": "1", "b": "2"}) == 2  # type: ignore[misc]  # redis-py types hash commands sync|async
        assert await routed.hgetall(f"{key}:h") == {b"a": b"1", b"b": b"2"}  # type: ignore[misc]  # same
        await routed.zadd(f"{key}:z", {"x": 1.5, "y": 2})
        assert await routed.zrange(f"{key}:z", 0, -1, withscores=True) == [(b"x", 1.5), (b"y", 2.0)]
        assert await routed.exists(key, f"{key}:none") == 1
        assert await routed.ping() is True
        with pytest.raises(ResponseError):
            await routed.incr(key)
        # A blocking read goes to the pool, never holding up the shared connection...
        assert await routed.xread({f"{key}:s": "0"}, count=1, block=50) == []
        # ...and a simple command to the shared one: each connection's last command says so.
        assert await routed.get(key) == b"v"
        last = {c["name"]: c["cmd"] for c in await redis.client_list()}
        assert last[f"{settings.key_prefix}-r-mux"] == "get"
        assert last[f"{settings.key_prefix}-r"] == "xread"
    finally:
        await routed.aclose(close_connection_pool=True)
