"""Batch scoring on the real Redis (what the scoring loop runs per partition): the same
decisions as one-by-one scoring, skips, velocity of a batch counted in order, and a session
changed between the batch's read and write still recorded once."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from shared.accounts.model import AccountSettingsUpdate, RiskSettingsUpdate
from shared.accounts.service import AccountService
from shared.accounts.store import AccountStore
from shared.clock import ManualClock
from shared.config import Settings
from shared.crypto import DataCipher
from shared.ids import partition_of_account
from shared.redis.keys import Keys
from shared.risk.service import RiskService
from shared.risk.store import RiskStore, VelocityCall, VelocitySubject
from shared.sessions.model import Risk
from shared.sessions.params import UpdateSessionParams
from shared.sessions.service import SessionService
from shared.sessions.store import session_parts
from shared.wiring import wire_core
from tests.support import ACCOUNT, T0, seed_body
from tests.support.sessions import create_session_in_service


@pytest.fixture
def store(app_redis: Redis, settings: Settings) -> RiskStore:
    return RiskStore(app_redis, Keys(settings.key_prefix))


@pytest.fixture
def risk(store: RiskStore, settings: Settings, sessions: SessionService) -> RiskService:
    return RiskService(store, sessions, DataCipher(settings.data_key_bytes))


async def create(
    sessions: SessionService, clock: ManualClock, fraud: dict[str, Any] | None = None
) -> str:
    body = seed_body(fraud_signals=fraud)
    if fraud is not None:
        body["customer_email"] = fraud["email"]
    session_id = await create_session_in_service(sessions, body)
    clock.advance(1)
    return session_id


def signals(clock: ManualClock, **overrides: Any) -> dict[str, Any]:
    return {
        "ip_address": "198.51.100.9",
        "user_agent": "Mozilla/5.0",
        "email": f"{secrets.token_hex(4)}@example.com",
        "request_timestamp": clock.now_ms() - 30_000,
        "is_authorized": True,
        **overrides,
    }


async def test_a_batch_decides_what_one_by_one_scoring_decides(
    sessions: SessionService,
    risk: RiskService,
    clock: ManualClock,
    app_redis: Redis,
    settings: Settings,
) -> None:
    ids = [await create(sessions, clock, signals(clock)) for _ in range(7)]
    ids += [
        await create(sessions, clock, None),  # no_signals
        await create(sessions, clock, signals(clock, request_timestamp=clock.now_ms())),
    ]
    batch = await risk.score_many(ids)
    # The same sessions scored one by one under another prefix: the same decisions.
    twin_settings = msgspec.structs.replace(settings, key_prefix=settings.key_prefix + "twin")
    twin_sessions = wire_core(twin_settings, app_redis, clock).sessions
    twin = RiskService(
        RiskStore(app_redis, Keys(twin_settings.key_prefix)),
        twin_sessions,
        DataCipher(settings.data_key_bytes),
    )
    expected = []
    try:
        for session_id in ids:
            record = await sessions.load(session_id)
            assert record is not None
            fraud = await sessions.load_fraud_signals(session_id)
            expected.append(await twin.assess(record, fraud))
    finally:
        async for key in app_redis.scan_iter(match=f"{twin_settings.key_prefix}:*"):
            await app_redis.delete(key)
    assert [o.assessment for o in batch] == expected
    assert all(o.written for o in batch)
    # velocity_ip from the 6th session of the IP; the session without signals is not counted.
    assert ["velocity_ip" in o.assessment.reasons for o in batch if o.assessment] == [False] * 5 + [
        True,
        True,
        False,
        True,
    ]
    for session_id, outcome in zip(ids, batch, strict=True):
        record = await sessions.load(session_id)
        assert record is not None
        assert outcome.assessment is not None
        assert (record.risk.status, record.risk.score) == ("scored", outcome.assessment.score)
        assert record.sequence == 2


async def test_a_batch_skips_what_is_not_to_be_scored(
    sessions: SessionService, risk: RiskService, clock: ManualClock
) -> None:
    expired = await create(sessions, clock, signals(clock))
    await sessions.expire(ACCOUNT, expired)
    scored = await create(sessions, clock, signals(clock))
    assert (await risk.score_session(scored)).written
    fresh = await create(sessions, clock, signals(clock))
    unknown = "cs_" + scored[3] + "0" * 15  # same partition, no such session
    outcomes = await risk.score_many([expired, scored, unknown, fresh])
    assert [(o.written, o.skipped) for o in outcomes] == [
        (False, "terminal"),
        (False, "already_scored"),
        (False, "unknown"),
        (True, None),
    ]


async def test_a_session_changed_after_the_batch_read_it_is_recorded_once(
    sessions: SessionService, clock: ManualClock
) -> None:
    patched = await create(sessions, clock, signals(clock))
    raced = await create(sessions, clock, signals(clock))
    stale = await sessions.load_many([patched, raced])
    assert None not in stale
    await sessions.update(ACCOUNT, patched, UpdateSessionParams(description="changed"))
    assert await sessions.record_risk(raced, Risk(score=5, level="normal"))  # confirm, inline

    decisions = [(record, Risk(score=40, level="elevated")) for record in stale if record]
    # The patched one: compare-and-set refuses the stale write, the guarded retry writes it.
    # The raced one keeps its first decision.
    assert await sessions.record_risk_many(decisions) == [True, False]
    after = await sessions.load_many([patched, raced])
    assert after[0] is not None
    assert after[1] is not None
    assert (after[0].sequence, after[0].risk.score, after[0].description) == (3, 40, "changed")
    assert (after[1].sequence, after[1].risk.score) == (2, 5)


async def test_velocity_of_a_batch_counts_as_one_by_one(
    store: RiskStore, app_redis: Redis, settings: Settings
) -> None:
    """One call counts as calls one by one, in order, and reads each account's settings."""
    peer = next(
        f"acct_peer_{i}"
        for i in itertools.count()
        if partition_of_account(f"acct_peer_{i}") == partition_of_account(ACCOUNT)
    )
    accounts = AccountService(AccountStore(app_redis, Keys(settings.key_prefix)))
    await accounts.update_settings(
        peer, AccountSettingsUpdate(risk=RiskSettingsUpdate(elevated_threshold=10))
    )
    subject = VelocitySubject(dimension="ip", digest="d", window_ms=600_000)
    calls = [
        VelocityCall(
            account_uid=account, session_id=f"s{i}", created_at_ms=T0 + i, subjects=[subject]
        )
        for i, account in enumerate([ACCOUNT, peer, ACCOUNT, peer, ACCOUNT])
    ]
    observed = await store.observe_many(calls)
    assert [o.counts for o in observed] == [{"ip": n} for n in (1, 1, 2, 2, 3)]
    assert [o.settings is None for o in observed] == [True, False, True, False, True]
    assert observed[1].settings == (await store.observe(peer, "s1", T0 + 1, [subject])).settings
    no_subjects = VelocityCall(account_uid=ACCOUNT, session_id="s9", created_at_ms=T0, subjects=[])
    assert (await store.observe_many([no_subjects]))[0].counts == {}
    assert await store.observe_many([]) == []


async def test_a_set_shared_by_a_batch_is_trimmed_once_and_counts_as_one_by_one(
    store: RiskStore, app_redis: Redis, settings: Settings
) -> None:
    """A shopper's burst is one velocity set for the whole batch: trimmed below the earliest
    session's bound and given its TTL once, and each session still counts its own window."""
    window = 600_000
    subject = VelocitySubject(dimension="ip", digest="burst", window_ms=window)
    key = Keys(settings.key_prefix).risk_velocity(ACCOUNT, "ip", "burst")
    # Older than two windows before the batch: trimmed. One window before: kept, not counted.
    await store.observe(ACCOUNT, "gone", T0 - 3 * window, [subject])
    await store.observe(ACCOUNT, "kept", T0 - window - 10, [subject])
    times = [T0, T0 + 1, T0 + window + 5]
    calls = [
        VelocityCall(account_uid=ACCOUNT, session_id=f"b{i}", created_at_ms=t, subjects=[subject])
        for i, t in enumerate(times)
    ]
    observed = await store.observe_many(calls)
    assert [o.counts["ip"] for o in observed] == [1, 2, 1]
    members = await app_redis.zrange(key, 0, -1)
    assert members == [b"kept", b"b0", b"b1", b"b2"]
    ttl = await app_redis.pttl(key)
    assert 2 * window - 5_000 < ttl <= 2 * window


async def test_scoring_compacts_the_record_a_create_stored_raw(
    sessions: SessionService,
    risk: RiskService,
    app_redis: Redis,
    clock: ManualClock,
    settings: Settings,
) -> None:
    session_id = await create(sessions, clock, signals(clock))
    key = Keys(settings.key_prefix).session(partition_of_account(ACCOUNT), session_id)

    def doc_of(value: bytes) -> bytes:
        return session_parts(value)[3]

    created = await app_redis.get(key)
    assert created is not None
    before = await sessions.load(session_id)
    # Stored as msgpack (a map), not through the codec: the scorer rewrites it moments later.
    assert doc_of(created)[0] in (*range(0x80, 0x90), 0xDE, 0xDF)

    [outcome] = await risk.score_many([session_id])
    assert outcome.written
    scored = await app_redis.get(key)
    assert scored is not None
    assert doc_of(scored)[:1] == b"\x12"  # the record codec's marker (shared/sessions/store.py)
    assert len(doc_of(scored)) < len(doc_of(created))
    after = await sessions.load(session_id)
    assert before is not None
    assert after is not None
    unchanged = {"risk": before.risk, "sequence": before.sequence}
    assert msgspec.structs.replace(after, updated_at_ms=before.updated_at_ms, **unchanged) == before
