"""A payment's outcome write on the real Redis: the duplicate-payment memo is written in the
same step as the completion, and only when the completion applies; a stale record passed as
`current` costs a re-read, never a lost or doubled change."""

from __future__ import annotations

import msgspec
import pytest
from redis.asyncio import Redis

from shared.clock import ManualClock
from shared.config import Settings
from shared.ids import partition_of_account
from shared.redis.keys import Keys
from shared.sessions.model import PaymentInfo
from shared.sessions.params import CreateSessionParams, UpdateSessionParams
from shared.sessions.service import SessionService
from shared.sessions.store import StoredMemo
from shared.wiring import wire_core
from tests.support import ACCOUNT, seed_body

CREATE = msgspec.json.decode(msgspec.json.encode(seed_body()), type=CreateSessionParams)
PAYMENT = PaymentInfo(
    method="card",
    brand="visa",
    last4="4242",
    exp_month=12,
    exp_year=2040,
    charge_id="ch_test_1",
    amount=CREATE.amount,
    fee=0,
    saved_method_id=None,
)


@pytest.fixture
def sessions(app_redis: Redis, settings: Settings) -> SessionService:
    return wire_core(settings, app_redis, ManualClock(start_ms=1_750_000_000_000)).sessions


def memo(settings: Settings, digest: str) -> StoredMemo:
    key = Keys(settings.key_prefix).duplicate_guard(partition_of_account(ACCOUNT), ACCOUNT, digest)
    return StoredMemo(key=key, value=b"paid-by-test", ttl_seconds=600)


async def test_the_memo_is_written_with_the_completion(
    sessions: SessionService, settings: Settings, redis: Redis
) -> None:
    session_id = (await sessions.create(ACCOUNT, CREATE)).session_id
    current = await sessions.load(session_id)
    record = memo(settings, "d1")

    done = await sessions.complete_payment(session_id, PAYMENT, current=current, memo=record)

    assert done.status == "complete"
    assert await redis.get(record.key) == b"paid-by-test"
    assert 0 < await redis.ttl(record.key) <= 600
    stored = await sessions.load(session_id)
    assert stored is not None
    assert stored.status == "complete"
    assert stored.payment == PAYMENT


async def test_a_stale_current_record_is_read_again_and_the_change_applies_once(
    sessions: SessionService, settings: Settings, redis: Redis
) -> None:
    session_id = (await sessions.create(ACCOUNT, CREATE)).session_id
    stale = await sessions.load(session_id)
    assert stale is not None
    await sessions.update(ACCOUNT, session_id, UpdateSessionParams(description="changed"))
    record = memo(settings, "d2")

    done = await sessions.complete_payment(session_id, PAYMENT, current=stale, memo=record)

    # Written on the fresh version: the update is kept, the sequence counts both changes.
    assert done.status == "complete"
    assert done.description == "changed"
    assert done.sequence == stale.sequence + 2
    assert await redis.get(record.key) == b"paid-by-test"


async def test_no_memo_when_the_session_was_already_complete(
    sessions: SessionService, settings: Settings, redis: Redis
) -> None:
    session_id = (await sessions.create(ACCOUNT, CREATE)).session_id
    opened = await sessions.load(session_id)
    await sessions.complete_payment(session_id, PAYMENT)
    record = memo(settings, "d3")

    # A retried outcome with the record from before the first: nothing changes twice.
    again = await sessions.complete_payment(session_id, PAYMENT, current=opened, memo=record)

    assert again.status == "complete"
    assert await redis.get(record.key) is None
