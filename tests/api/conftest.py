"""The real app over ASGI (lifespan included) on a real Redis, with a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from services.api.app import create_app
from shared.clock import ManualClock
from shared.config import Settings
from tests.support import ACCOUNT, OTHER_ACCOUNT, seed_body


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def client(
    settings: Settings, clock: ManualClock, redis: Redis
) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(settings, clock=clock)
    async with AsyncTestClient(app, base_url="http://testserver.local") as test_client:
        yield test_client


__all__ = ["ACCOUNT", "OTHER_ACCOUNT", "seed_body"]
