"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from shared.config import Settings
from shared.redis.client import create_redis


@pytest.fixture
async def app_redis(settings: Settings) -> AsyncIterator[Redis]:
    """A client from the service's own factory (blocking pool, retries, the multiplexed
    connection), closed with its pool."""
    client = create_redis(settings)
    yield client
    await client.aclose(close_connection_pool=True)
