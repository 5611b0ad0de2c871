"""The project's Redis client on a real server: commands packed by hiredis, and a cancelled
command always ends cancelled (a worker's stop depends on it)."""

from __future__ import annotations

import asyncio

import pytest

from shared.config import Settings
from shared.redis.client import create_redis


async def test_commands_round_trip_through_hiredis_packing(settings: Settings) -> None:
    redis = create_redis(settings)
    key = f"{settings.key_prefix}:client:k"
    try:
        await redis.set(key, "caf\u00e9 \u2615", ex=60)
        pipe = redis.pipeline(transaction=True)
        pipe.get(key)
        pipe.strlen(key)
        assert await pipe.execute() == ["caf\u00e9 \u2615".encode(), 9]
        await redis.client_setname("named-by-a-two-word-command")
        assert await redis.client_getname() == "named-by-a-two-word-command"
    finally:
        await redis.aclose(close_connection_pool=True)


@pytest.mark.parametrize("yields_before_cancel", range(6))
async def test_a_cancelled_command_never_returns_normally(
    settings: Settings, yields_before_cancel: int
) -> None:
    """Whenever cancel() lands on a command still running, awaiting it raises CancelledError.

    redis-py's own send used asyncio.wait_for, which on Python 3.11 returned normally when
    the cancel came just after the write finished: a stopping worker loop ran on forever."""
    redis = create_redis(settings)
    try:
        await redis.ping()  # connected: the first step of a command is the write itself
        task = asyncio.ensure_future(redis.get(f"{settings.key_prefix}:client:none"))
        for _ in range(yields_before_cancel):
            await asyncio.sleep(0)
        if task.cancel():
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            assert task.done()
            assert task.result() is None
        assert await redis.ping() is True  # the pool recovers (a cancelled connection closed)
    finally:
        await redis.aclose(close_connection_pool=True)
