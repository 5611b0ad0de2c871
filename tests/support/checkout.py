"""The shopper's side in tests: a card to confirm with, a low-risk session body, and a
session opened for a shopper (its id and the client-secret headers the pages send)."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from redis.asyncio import Redis

from shared.clock import ManualClock
from shared.config import Settings
from tests.support import seed_body
from tests.support.sessions import create_session_reply

GOOD_CARD = "4242 4242 4242 4242"


def card(number: str = GOOD_CARD, **overrides: Any) -> dict[str, Any]:
    """A confirm body paying with `number` (the simulator approves the default)."""
    return {
        "payment_method": {
            "type": "card",
            "number": number,
            "exp_month": 12,
            "exp_year": 2040,
            "cvc": "123",
            **overrides,
        },
        "billing_details": {"cardholder": "Ada Shopper"},
    }


def low_risk_body(clock: ManualClock, **overrides: Any) -> dict[str, Any]:
    """The seed's body with signals a normal shopper produces (form loaded a minute ago; a
    shopper of their own, so velocity rules stay quiet across a test's many sessions)."""
    n = secrets.randbelow(250) + 1
    signals = {
        "ip_address": f"198.51.100.{n}",
        "user_agent": "Mozilla/5.0 (test)",
        "email": "hello@example.com",
        "phone": f"+1555555{n:04d}",
        "request_timestamp": clock.now_ms() - 60_000,
        "is_authorized": True,
        "is_admin": False,
    }
    body = seed_body(fraud_signals=signals, **overrides)
    body["customer_email"] = signals["email"] = f"shopper{n}.{secrets.token_hex(3)}@example.com"
    return body


async def open_session(
    client: httpx.AsyncClient, admin: dict[str, str], clock: ManualClock, **overrides: Any
) -> tuple[str, dict[str, str]]:
    """A low-risk session made by the merchant: its id, and the shopper's auth headers."""
    created = await create_session_reply(client, admin, low_risk_body(clock, **overrides))
    return created["session_id"], {"Authorization": f"Bearer {created['client_secret']}"}


async def charges(redis: Redis, settings: Settings) -> int:
    """How many charges the payment simulator has made (its ledger under the test's prefix)."""
    return int(await redis.llen(f"{settings.key_prefix}:sim:charges"))  # type: ignore[misc]  # redis-py types llen for both clients
