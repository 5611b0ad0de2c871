"""The real app over ASGI (lifespan included) on a real Redis, with a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from services.api.app import create_app
from shared.clock import ManualClock
from shared.config import Settings
from shared.devkeys import DevKeys, mint_admin_token

ACCOUNT = "acct_test_1"
OTHER_ACCOUNT = "acct_test_2"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def token_for(dev_keys: tuple[DevKeys, Path], settings: Settings) -> Callable[..., str]:
    def mint(*accounts: str, groups: tuple[str, ...] | None = None, **kwargs: Any) -> str:
        return mint_admin_token(
            dev_keys[0],
            issuer=settings.jwt_issuer,
            account_uids=list(accounts),
            groups=list(groups if groups is not None else (settings.jwt_admin_group,)),
            **kwargs,
        )

    return mint


@pytest.fixture
def admin_headers(token_for: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(ACCOUNT)}", "X-Payment-Account-Uid": ACCOUNT}


@pytest.fixture
async def client(
    settings: Settings, clock: ManualClock, redis: Redis
) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(settings, clock=clock)
    async with AsyncTestClient(app, base_url="http://testserver.local") as test_client:
        yield test_client


def seed_body(**overrides: Any) -> dict[str, Any]:
    """The seed's example request made valid (accent colour, items that sum to the amount)."""
    body: dict[str, Any] = {
        "amount": 14650,
        "currency": "USD",
        "description": "example",
        "line_items": [{"description": "example", "amount": 14650, "quantity": 1, "metadata": {}}],
        "customer_id": "example",
        "customer_email": "hello@example.com",
        "success_url": "https://example.com",
        "cancel_url": "https://example.com",
        "layout": "hosted",
        "allowed_methods": ["card"],
        "setup_future_usage": "off",
        "scope": "payment",
        "expires_in_seconds": 1800,
        "branding": {
            "logo_url": "https://example.com",
            "accent_color": "#1A2B3C",
            "merchant_display_name": "example",
        },
        "required_avs_fields": ["cardholder"],
        "metadata": {"additionalProperty": "example"},
        "fraud_signals": {
            "ip_address": "203.0.113.7",
            "user_agent": "Mozilla/5.0 (test)",
            "email": "shopper@example.com",
            "phone": "+15555550123",
            "account_type": "example",
            "request_timestamp": 1,
            "is_authorized": True,
            "is_admin": True,
        },
    }
    body.update(overrides)
    return body
