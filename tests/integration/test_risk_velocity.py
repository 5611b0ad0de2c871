"""Velocity counting on the real Redis: sliding windows, idempotent re-counts, per-account
isolation, trimming and TTLs, and scoring real sessions through the risk service."""

from __future__ import annotations

import secrets
from typing import Any

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
from shared.risk.rules import VELOCITY_RULES
from shared.risk.service import RiskService, velocity_digest
from shared.risk.store import RiskStore, VelocitySubject
from shared.sessions.service import SessionService
from tests.support import ACCOUNT, OTHER_ACCOUNT, T0, seed_body
from tests.support.sessions import create_session_in_service

WINDOW_MS = 600_000
IP = "198.51.100.77"


def subject(digest: str = "d1", window_ms: int = WINDOW_MS) -> VelocitySubject:
    return VelocitySubject(dimension="ip", digest=digest, window_ms=window_ms)


@pytest.fixture
def store(app_redis: Redis, settings: Settings) -> RiskStore:
    return RiskStore(app_redis, Keys(settings.key_prefix))


async def count(store: RiskStore, session: str, at_ms: int, account: str = ACCOUNT) -> int:
    observed = await store.observe(account, session, at_ms, [subject()])
    return observed.counts["ip"]


async def test_window_counts_sessions_created_within_it(store: RiskStore) -> None:
    assert await count(store, "s1", T0) == 1
    assert await count(store, "s2", T0 + 60_000) == 2
    # Exactly one window after s1: s1 falls out (the window is (created - 10 min, created]).
    assert await count(store, "s3", T0 + WINDOW_MS) == 2
    assert await count(store, "s4", T0 + WINDOW_MS + 60_000) == 2  # s3, s4


async def test_recounting_a_session_never_counts_it_twice(
    store: RiskStore, redis: Redis, settings: Settings
) -> None:
    assert await count(store, "s1", T0) == 1
    assert await count(store, "s1", T0) == 1
    assert await count(store, "s2", T0 + 1_000) == 2
    # A re-run of s1's job sees the window as it stood at s1's creation: s2 came later.
    assert await count(store, "s1", T0) == 1
    key = Keys(settings.key_prefix).risk_velocity(ACCOUNT, "ip", "d1")
    assert await redis.zcard(key) == 2


async def test_accounts_are_counted_apart(
    store: RiskStore, redis: Redis, settings: Settings
) -> None:
    for i in range(3):
        assert await count(store, f"a{i}", T0 + i, ACCOUNT) == i + 1
    assert await count(store, "b0", T0 + 5, OTHER_ACCOUNT) == 1
    keys = Keys(settings.key_prefix)
    for account in (ACCOUNT, OTHER_ACCOUNT):
        key = keys.risk_velocity(account, "ip", "d1")
        # The account's partition tag: one Cluster slot with its sessions and settings.
        assert key.startswith(keys.tag(partition_of_account(account)) + ":")
    assert await redis.zcard(keys.risk_velocity(OTHER_ACCOUNT, "ip", "d1")) == 1


async def test_old_members_are_trimmed_and_keys_expire(
    store: RiskStore, redis: Redis, settings: Settings
) -> None:
    key = Keys(settings.key_prefix).risk_velocity(ACCOUNT, "ip", "d1")
    await count(store, "old", T0)
    # "old" is outside this window but kept: a late job of a session between them needs it.
    assert await count(store, "recent", T0 + WINDOW_MS + 10_000) == 1
    assert await redis.zcard(key) == 2
    assert await count(store, "new", T0 + 2 * WINDOW_MS + 1) == 2  # recent, new
    assert await redis.zrange(key, 0, -1) == [b"recent", b"new"]  # "old" trimmed
    ttl = await redis.pttl(key)
    assert 0 < ttl <= 2 * WINDOW_MS


async def test_settings_are_read_in_the_same_step(
    store: RiskStore, app_redis: Redis, settings: Settings
) -> None:
    assert (await store.observe(ACCOUNT, "s1", T0, [])).settings is None
    accounts = AccountService(AccountStore(app_redis, Keys(settings.key_prefix)))
    await accounts.update_settings(
        ACCOUNT, AccountSettingsUpdate(risk=RiskSettingsUpdate(elevated_threshold=10))
    )
    observed = await store.observe(ACCOUNT, "s2", T0, [subject()])
    assert observed.settings is not None
    assert observed.counts == {"ip": 1}


# --- scoring real sessions -----------------------------------------------------------------


@pytest.fixture
def risk(app_redis: Redis, settings: Settings, sessions: SessionService) -> RiskService:
    cipher = DataCipher(settings.data_key_bytes)
    return RiskService(RiskStore(app_redis, Keys(settings.key_prefix)), sessions, cipher)


def signals(clock: ManualClock, **overrides: Any) -> dict[str, Any]:
    return {
        "ip_address": IP,
        "user_agent": "Mozilla/5.0",
        "email": f"{secrets.token_hex(4)}@example.com",
        "phone": "+1555" + str(secrets.randbelow(10**7)).zfill(7),
        "request_timestamp": clock.now_ms() - 30_000,
        "is_authorized": True,
        "is_admin": False,
        **overrides,
    }


async def create(
    sessions: SessionService, clock: ManualClock, account: str = ACCOUNT, **overrides: Any
) -> str:
    fraud = signals(clock, **overrides)
    body = seed_body(customer_email=fraud["email"], fraud_signals=fraud)
    return await create_session_in_service(sessions, body, account)


async def test_ip_velocity_hits_from_the_sixth_session_in_ten_minutes(
    sessions: SessionService, risk: RiskService, clock: ManualClock
) -> None:
    limit = next(v.limit for v in VELOCITY_RULES if v.dimension == "ip")
    ids = []
    for _ in range(limit + 2):
        ids.append(await create(sessions, clock))
        clock.advance(60)
    reasons = []
    for session_id in ids:
        outcome = await risk.score_session(session_id)
        assert outcome.written
        assert outcome.assessment is not None
        reasons.append("velocity_ip" in outcome.assessment.reasons)
    assert reasons == [False] * limit + [True, True]

    # The same IP at another account is that account's first.
    other = await create(sessions, clock, OTHER_ACCOUNT)
    outcome = await risk.score_session(other)
    assert outcome.assessment is not None
    assert outcome.assessment.reasons == ()

    # Eleven minutes after the last one, only sessions of the last ten minutes count.
    clock.advance(11 * 60)
    later = await create(sessions, clock)
    outcome = await risk.score_session(later)
    assert outcome.assessment is not None
    assert "velocity_ip" not in outcome.assessment.reasons


async def test_rescoring_a_session_changes_nothing(
    sessions: SessionService,
    risk: RiskService,
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
) -> None:
    session_id = await create(sessions, clock, email="same@example.com")
    first = await risk.score_session(session_id)
    assert first.written
    assert first.assessment is not None
    record = await sessions.load(session_id)
    assert record is not None
    assert record.risk.status == "scored"
    assert (record.risk.score, record.risk.level) == (first.assessment.score, "normal")

    again = await risk.score_session(session_id)
    assert (again.written, again.skipped) == (False, "already_scored")
    # Even the assessment step on its own (a run that died before recording) counts it once.
    await risk.assess(record, await sessions.load_fraud_signals(session_id))
    digest = velocity_digest(DataCipher(settings.data_key_bytes), "email", "same@example.com")
    key = Keys(settings.key_prefix).risk_velocity(ACCOUNT, "email", digest)
    assert await redis.zrange(key, 0, -1) == [session_id.encode()]
    reloaded = await sessions.load(session_id)
    assert reloaded is not None
    assert reloaded.sequence == record.sequence


async def test_unknown_and_terminal_sessions_are_skipped(
    sessions: SessionService, risk: RiskService, clock: ManualClock
) -> None:
    assert (await risk.score_session("cs_0000000000000000")).skipped == "unknown"
    session_id = await create(sessions, clock)
    await sessions.expire(ACCOUNT, session_id)
    outcome = await risk.score_session(session_id)
    assert (outcome.written, outcome.skipped) == (False, "terminal")
    record = await sessions.load(session_id)
    assert record is not None
    assert record.risk.status == "pending"


async def test_key_names_hold_no_signal_values(
    sessions: SessionService, risk: RiskService, clock: ManualClock, redis: Redis, key_prefix: str
) -> None:
    session_id = await create(sessions, clock, email="leak.probe@example.com", phone="+15550009876")
    await risk.score_session(session_id)
    names = [k.decode() async for k in redis.scan_iter(match=f"{key_prefix}:*")]
    assert any(":rv:" in name for name in names)
    for value in (IP, "leak.probe", "5550009876"):
        assert not any(value in name for name in names)
