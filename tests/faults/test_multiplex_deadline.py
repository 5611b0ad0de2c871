"""The multiplexed connection under a SIGSTOP'd Redis, without the API around it: every
waiter fails with a redis-py error (the API's 503) within its deadline, a reconnect while
Redis is still stopped does too, and the next command after SIGCONT works on a fresh
connection. Before: waits of the 5 s timeout, then retries, and a reconnect's set-up raised
the builtin TimeoutError (a 500 in the API)."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.redis.multiplex import MultiplexedRedis
from tests.faults.conftest import RedisServer

pytestmark = pytest.mark.timeout(60)

DEADLINE_S = 0.5
MARGIN_S = 0.3  # the watchdog's tick (an eighth of the deadline) and the loop's own work


async def _timed(coro: object) -> tuple[BaseException | object, float]:
    started = time.monotonic()
    try:
        result: BaseException | object = await coro  # type: ignore[misc]  # any awaitable
    except Exception as exc:  # what it raised is what the test checks
        result = exc
    return result, time.monotonic() - started


async def test_hung_redis_fails_every_waiter_within_the_deadline(own_redis: RedisServer) -> None:
    mux = MultiplexedRedis(own_redis.url, timeout_s=DEADLINE_S, connect_timeout_s=DEADLINE_S)
    try:
        assert await mux.execute("PING") == b"PONG"
        own_redis.signal(signal.SIGSTOP)
        try:
            # Twenty callers on the one connection: one hung reply holds them all.
            results = await asyncio.gather(
                *(_timed(mux.execute("SET", f"k{i}", "v")) for i in range(20))
            )
            for error, elapsed in results:
                assert isinstance(error, RedisTimeoutError | RedisConnectionError), error
                assert elapsed < DEADLINE_S + MARGIN_S, elapsed
            # Reconnecting while it is still stopped: the kernel completes the handshake,
            # the set-up gets no answer. Ten callers share the one connect.
            results = await asyncio.gather(*(_timed(mux.execute("PING")) for _ in range(10)))
            for error, elapsed in results:
                assert isinstance(error, RedisTimeoutError | RedisConnectionError), repr(error)
                assert elapsed < DEADLINE_S + MARGIN_S, elapsed
        finally:
            own_redis.signal(signal.SIGCONT)
        # Back by itself, on a fresh connection.
        assert await mux.execute("PING") == b"PONG"
        assert await mux.execute("SET", "after", "1") == b"OK"
    finally:
        await mux.aclose()
