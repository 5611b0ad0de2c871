"""write_session.lua on a real Redis: a create is one SET NX (a retried create finds its own
session and changes nothing), a risk decision keeps the session's index and schedule entries,
and a status change moves them."""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from shared.clock import ManualClock
from shared.config import Settings
from shared.ids import partition_of_session
from shared.redis.keys import Keys
from shared.sessions.model import Risk
from shared.sessions.params import CreateSessionParams
from shared.sessions.service import SessionService
from shared.sessions.store import SessionStore, SessionWrite
from tests.support import ACCOUNT, seed_body


async def _created(sessions: SessionService) -> str:
    params = msgspec.convert(seed_body(), CreateSessionParams)
    return (await sessions.create(ACCOUNT, params)).session_id


async def _entries(redis: Redis, keys: Keys, session_id: str) -> tuple[float | None, int, int]:
    """(expiry schedule score, open index size, events in the partition stream)."""
    partition = partition_of_session(session_id)
    assert partition is not None
    score = await redis.zscore(keys.expiry_schedule(partition), session_id)
    opened = await redis.zcard(keys.status_index(partition, ACCOUNT, "open"))
    events = await redis.xlen(keys.events(partition))
    return score, opened, events


async def test_a_create_written_again_finds_the_session_and_changes_nothing(
    sessions: SessionService, app_redis: Redis, settings: Settings
) -> None:
    keys = Keys(settings.key_prefix)
    store = SessionStore(app_redis, keys)
    session_id = await _created(sessions)
    stored = await store.load(session_id)
    assert stored is not None
    before = await _entries(app_redis, keys, session_id)
    # The same create again (a retry after a lost reply): "exists", with the stored sequence.
    again = SessionWrite(
        record=msgspec.structs.replace(stored.record, description="a second try"),
        previous_status=None,
        event_json=b'{"type":"hosted_session.created","id":"evt_AAAAAAAAAAAAAAAAAAAA"}',
        event_type="hosted_session.created",
        secret_hash="00" * 32,
    )
    outcome = await store.write(again)
    assert (outcome.result, outcome.sequence) == ("exists", stored.record.sequence)
    after = await store.load(session_id)
    assert after == stored
    assert await _entries(app_redis, keys, session_id) == before


async def test_a_risk_decision_keeps_the_schedule_and_an_expiry_moves_it(
    sessions: SessionService, app_redis: Redis, settings: Settings, clock: ManualClock
) -> None:
    keys = Keys(settings.key_prefix)
    session_id = await _created(sessions)
    score, opened, events = await _entries(app_redis, keys, session_id)
    assert score is not None
    assert await sessions.record_risk(session_id, Risk(score=10, level="normal"))
    # Scored: one more event, the same schedule entry and open index.
    assert await _entries(app_redis, keys, session_id) == (score, opened, events + 1)
    clock.advance(10 * 24 * 3600 * 1000)
    partition = partition_of_session(session_id)
    assert partition is not None
    batch = await sessions.expire_due(partition, 100)
    assert batch.lags
    score_after, opened_after, _ = await _entries(app_redis, keys, session_id)
    assert score_after is None
    assert opened_after == opened - 1
