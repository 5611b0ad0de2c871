"""A confirm whose API process died mid-charge leaves a hold: the session is never expired
under it, and the expiry loop settles it from the processor's own record."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from shared.checkout.model import ChargeHold, ResolvedMethod
from shared.checkout.store import CheckoutStore
from shared.clock import ManualClock
from shared.config import Settings
from shared.payments.processor import ChargeRequest, SimulatedProcessor
from shared.payments.store import SimulatorLedger
from shared.redis.keys import Keys
from tests.support import eventually
from tests.support.events import session_events
from tests.support.sessions import create_session
from workers.main import run_workers

URL = "/v1/hosted-sessions"
LEAD_S = 2.0


async def _crash_mid_charge(
    redis: Redis, settings: Settings, session_id: str, *, charged: bool
) -> None:
    """What a confirm leaves when its process dies between hold and outcome."""
    key = f"{session_id}:1"
    method = ResolvedMethod(type="card", token="tok_card_success_x", fingerprint="f" * 32)
    hold = ChargeHold(
        state="in_flight",
        idempotency_key=key,
        amount=14650,
        fee=0,
        method=method,
        started_at_ms=time.time_ns() // 1_000_000 - 60_000,  # long dead
    )
    await CheckoutStore(redis, Keys(settings.key_prefix)).put_hold(session_id, hold)
    if charged:
        await SimulatedProcessor(SimulatorLedger(redis, Keys(settings.key_prefix))).charge(
            ChargeRequest(
                idempotency_key=key,
                account_uid="acct_test_1",
                amount=14650,
                currency="USD",
                kind="card",
                token=method.token,
            )
        )


@pytest.mark.parametrize(("charged", "final"), [(True, "complete"), (False, "expired")])
async def test_stale_hold_is_settled_by_the_processors_record(
    client: AsyncTestClient[Any],
    admin_headers: dict[str, str],
    redis: Redis,
    settings: Settings,
    clock: ManualClock,
    charged: bool,
    final: str,
) -> None:
    session_id = await create_session(client, admin_headers, expires_in_seconds=300)
    await _crash_mid_charge(redis, settings, session_id, charged=charged)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_workers(settings, ["expiry"], stop))
    try:

        async def terminal_events() -> list[str]:
            events = await session_events(redis, settings.key_prefix, session_id)
            terminal = ("hosted_session.completed", "hosted_session.expired")
            return [e.type for e in events if e.type in terminal]

        # Due in LEAD_S: the charge's record decides, not the clock.
        got = await eventually(terminal_events, bool, LEAD_S + 8)
        assert got == [f"hosted_session.{'completed' if final == 'complete' else 'expired'}"]
        await asyncio.sleep(0.5)
        assert len(await terminal_events()) == 1
        charges = await redis.llen(f"{settings.key_prefix}:sim:charges")  # type: ignore[misc]
        assert charges == (1 if charged else 0)
    finally:
        stop.set()
        await worker
