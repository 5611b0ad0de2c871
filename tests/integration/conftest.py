"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from shared.clock import ManualClock
from shared.config import Settings
from shared.redis.client import create_redis
from shared.sessions.service import SessionService
from shared.wiring import wire_core
from tests.support import T0


@pytest.fixture
async def app_redis(settings: Settings) -> AsyncIterator[Redis]:
    """A client from the service's own factory (blocking pool, retries, the multiplexed
    connection), closed with its pool."""
    client = create_redis(settings)
    yield client
    await client.aclose(close_connection_pool=True)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_ms=T0)


@pytest.fixture
def sessions(app_redis: Redis, settings: Settings, clock: ManualClock) -> SessionService:
    """The session service as the API wires it, on the test's clock."""
    return wire_core(settings, app_redis, clock).sessions
