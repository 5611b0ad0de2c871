"""Idempotency-Key records on a real Redis: a request only ever touches its own record."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from shared.clock import ManualClock
from shared.config import Settings
from shared.errors import IdempotencyInFlight
from shared.idempotency.service import Claim, IdempotencyService, Replay, request_fingerprint
from shared.ids import partition_of_account
from shared.wiring import wire_core
from tests.support import ACCOUNT

FINGERPRINT = request_fingerprint("POST", "/v1/hosted-sessions", b"{}")
PARTITION = partition_of_account(ACCOUNT)


@pytest.fixture
def idem(app_redis: Redis, settings: Settings, clock: ManualClock) -> IdempotencyService:
    return wire_core(settings, app_redis, clock).idempotency


async def claim(idem: IdempotencyService, key: str) -> Claim:
    begun = await idem.begin(PARTITION, ACCOUNT, key, FINGERPRINT)
    assert isinstance(begun, Claim)
    return begun


async def test_a_late_finish_never_overwrites_the_next_requests_answer(
    idem: IdempotencyService, app_redis: Redis
) -> None:
    """A request slower than the 60 s lock finds another request's record under its key:
    it must leave that record alone (before: its SET overwrote it)."""
    slow = await claim(idem, "late-finish")
    await app_redis.delete(slow.redis_key)  # its lock lapsed
    second = await claim(idem, "late-finish")
    await idem.finish(second, 201, b'{"id":"second"}')
    await idem.finish(slow, 201, b'{"id":"slow"}')
    answer = await idem.begin(PARTITION, ACCOUNT, "late-finish", FINGERPRINT)
    assert isinstance(answer, Replay)
    assert answer.body == b'{"id":"second"}'


async def test_a_late_release_never_deletes_the_next_requests_lock(
    idem: IdempotencyService, app_redis: Redis
) -> None:
    slow = await claim(idem, "late-release")
    await app_redis.delete(slow.redis_key)  # its lock lapsed
    await claim(idem, "late-release")  # another request runs under the key now
    await idem.abandon(slow)
    with pytest.raises(IdempotencyInFlight):
        await idem.begin(PARTITION, ACCOUNT, "late-release", FINGERPRINT)


async def test_a_release_after_the_answer_was_stored_keeps_the_answer(
    idem: IdempotencyService,
) -> None:
    """A failure after the change's own step stored the answer (a fault past the write)
    releases nothing: the retry gets the answer."""
    mine = await claim(idem, "stored-then-failed")
    await idem.finish(mine, 200, b'{"ok":true}')
    await idem.abandon(mine)
    answer = await idem.begin(PARTITION, ACCOUNT, "stored-then-failed", FINGERPRINT)
    assert isinstance(answer, Replay)
    assert answer.body == b'{"ok":true}'
