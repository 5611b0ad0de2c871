"""Expiry through real worker loops (in this process, on the real Redis): on time, exactly
once with two workers, after an outage, and not before a PATCH's new expiry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from shared.config import Settings
from shared.events.model import SessionExpiredEvent
from tests.support import eventually, seed_body
from tests.support.events import partition_stream, stream_entries
from workers.main import run_workers

URL = "/v1/hosted-sessions"
# The API's clock runs this far behind the real one, so a session created with the seed's
# minimum of 300 s expires 2 s from now in real time, which is what the worker goes by.
LEAD_S = 2.0


RunWorker = Callable[[], Coroutine[Any, Any, None]]


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[RunWorker]:
    """Starts a real expiry worker on demand; stops it (SIGTERM path) at teardown."""
    stop = asyncio.Event()
    started: list[asyncio.Task[None]] = []

    async def start() -> None:
        started.append(asyncio.create_task(run_workers(settings, ["expiry"], stop)))

    yield start
    stop.set()
    await asyncio.gather(*started)


async def expired_events(redis: Redis, settings: Settings) -> dict[str, tuple[int, int]]:
    """session id -> (stream entry ms, expires_at ms) of each expired event."""
    out = {}
    for entry in await stream_entries(redis, partition_stream(settings.key_prefix)):
        event = entry.event
        if event.type == "hosted_session.expired":
            assert isinstance(event, SessionExpiredEvent)
            assert event.session_id not in out, "expired twice"
            out[event.session_id] = (entry.entry_ms, iso_to_ms(event.data.object.expires_at))
    return out


def iso_to_ms(value: str) -> int:
    return round(datetime.fromisoformat(value).timestamp() * 1000)


async def test_sessions_expire_on_time_exactly_once(
    client: AsyncTestClient[Any],
    admin_headers: dict[str, str],
    redis: Redis,
    settings: Settings,
    worker: RunWorker,
) -> None:
    ids = []
    for _ in range(20):
        r = await client.post(URL, json=seed_body(expires_in_seconds=300), headers=admin_headers)
        ids.append(r.json()["session_id"])
    await worker()
    await worker()  # two workers race for the same jobs: still one expiry each
    done = await eventually(
        lambda: expired_events(redis, settings), lambda d: len(d) == len(ids), LEAD_S + 5
    )
    assert set(done) == set(ids)
    lags = [written - expires for written, expires in done.values()]
    assert all(0 <= lag <= 2000 for lag in lags), lags
    await asyncio.sleep(0.5)  # any duplicate run would show up as a second event by now
    assert len(await expired_events(redis, settings)) == len(ids)


async def test_sessions_due_while_no_worker_ran_expire_when_one_starts(
    client: AsyncTestClient[Any],
    admin_headers: dict[str, str],
    redis: Redis,
    settings: Settings,
    worker: RunWorker,
) -> None:
    r = await client.post(URL, json=seed_body(expires_in_seconds=300), headers=admin_headers)
    session_id = r.json()["session_id"]
    await asyncio.sleep(LEAD_S + 0.5)  # due, and no worker anywhere
    assert session_id not in await expired_events(redis, settings)
    await worker()
    done = await eventually(lambda: expired_events(redis, settings), lambda d: session_id in d, 5)
    assert session_id in done


async def test_patch_that_moves_expiry_later_is_honoured(
    client: AsyncTestClient[Any],
    admin_headers: dict[str, str],
    redis: Redis,
    settings: Settings,
    worker: RunWorker,
) -> None:
    r = await client.post(URL, json=seed_body(expires_in_seconds=300), headers=admin_headers)
    session_id = r.json()["session_id"]
    r = await client.patch(
        f"{URL}/{session_id}", json={"expires_in_seconds": 3600}, headers=admin_headers
    )
    assert r.status_code == 200
    await worker()
    await asyncio.sleep(LEAD_S + 1.5)  # the first expiry time has passed by now
    assert session_id not in await expired_events(redis, settings)
    view = (await client.get(f"{URL}/{session_id}", headers=admin_headers)).json()
    assert view["status"] == "open"
