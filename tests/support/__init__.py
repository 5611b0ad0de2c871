"""Test data builders shared by every suite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

ACCOUNT = "acct_test_1"
# The injected clock's start in tests that use one (any fixed instant does).
T0 = 1_750_000_000_000
OTHER_ACCOUNT = "acct_test_2"


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


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], within: float
) -> T:
    """Poll `probe` until `accept` holds or `within` seconds pass; return the last value."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if accept(value) or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(0.05)


class FakeMonotonic:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now
