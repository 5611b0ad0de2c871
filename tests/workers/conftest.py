"""The real app in-process beside real workers, with the API's clock set behind real time.

A module that sets `LEAD_S` gets an API clock running (300 - LEAD_S) s behind: a session
created with the seed's minimum expires_in_seconds=300 is then due LEAD_S seconds from now
for the workers, which keep real time. Without it the clock starts at real time."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from services.api.app import create_app
from shared.clock import ManualClock
from shared.config import Settings


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> ManualClock:
    lead_s: float | None = getattr(request.module, "LEAD_S", None)
    if lead_s is None:
        return ManualClock()
    return ManualClock(start_ms=time.time_ns() // 1_000_000 - int((300 - lead_s) * 1000))


@pytest.fixture
async def client(
    settings: Settings, clock: ManualClock, redis: Redis
) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(settings, clock=clock)) as test_client:
        yield test_client
