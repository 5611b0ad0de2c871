"""The bench's memory figure comes from sessions of many distinct shoppers: the seeder the
memory phase uses gives each session a shopper of its own (email, IP, phone, customer id),
across its processes too, so no per-shopper state is shared as it would not be in real life."""

from __future__ import annotations

from redis.asyncio import Redis

from bench.seeding import seed_in_processes, seed_sessions
from shared.clock import SystemClock
from shared.config import Settings
from shared.sessions.service import SessionService
from shared.wiring import wire_core
from tests.support import ACCOUNT


async def shoppers(service: SessionService, session_ids: list[str]) -> list[tuple[str, ...]]:
    """(customer id, email, IP address, phone) of each session, its fraud signals decrypted."""
    out: list[tuple[str, ...]] = []
    for session_id in session_ids:
        record = await service.load(session_id)
        signals = await service.load_fraud_signals(session_id)
        assert record is not None
        assert signals is not None
        out.append(
            (
                str(record.customer_id),
                str(signals.email),
                str(signals.ip_address),
                str(signals.phone),
            )
        )
    return out


async def session_ids(service: SessionService, expected: int) -> list[str]:
    page = await service.list_page(ACCOUNT, limit=100)
    ids = [view.id for view in page.data]
    assert len(ids) == expected
    return ids


async def test_seeding_gives_each_session_a_shopper_of_its_own(
    settings: Settings, redis: Redis
) -> None:
    made = await seed_sessions(settings, 8, account_uids=[ACCOUNT], distinct_shoppers=True)
    service = wire_core(settings, redis, SystemClock()).sessions
    found = await shoppers(service, [session_id for session_id, _ in made])
    for field in range(4):  # customer id, email, IP address, phone: none repeats
        assert len({row[field] for row in found}) == 8, [row[field] for row in found]


async def test_the_default_seed_is_one_shopper(settings: Settings, redis: Redis) -> None:
    """What the memory phase used to measure: every session the seed body's one shopper."""
    made = await seed_sessions(settings, 4, account_uids=[ACCOUNT])
    service = wire_core(settings, redis, SystemClock()).sessions
    found = await shoppers(service, [session_id for session_id, _ in made])
    assert len(set(found)) == 1


async def test_seeding_processes_share_no_shopper(settings: Settings, redis: Redis) -> None:
    seeded = seed_in_processes(
        settings,
        9,
        processes=3,
        account_uids=[ACCOUNT],
        expires_in=1800,
        distinct_shoppers=True,
        timeout=120,
    )
    assert seeded["created"] == 9
    service = wire_core(settings, redis, SystemClock()).sessions
    found = await shoppers(service, await session_ids(service, 9))
    for field in range(4):
        assert len({row[field] for row in found}) == 9, [row[field] for row in found]
