"""A whole checkout over HTTP against running processes (`hosted-sessions dev`): a merchant
creates a session, the shopper's browser reads it, quotes the fee, is declined, pays; and an
elevated-risk session passes the SMS challenge. Outcomes are read back from the stream."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from redis import Redis as SyncRedis

from shared.challenge.model import code_in
from shared.config import Settings
from shared.ids import partition_of_session
from shared.redis.keys import Keys
from tests.e2e.conftest import API_CLOCK_OFFSET_MS, Stack
from tests.support import ACCOUNT, seed_body
from tests.support.events import session_events_sync

pytestmark = pytest.mark.e2e
URL = "/v1/hosted-sessions"


def _card(number: str) -> dict[str, Any]:
    return {
        "payment_method": {
            "type": "card",
            "number": number,
            "exp_month": 12,
            "exp_year": 2040,
            "cvc": "123",
        },
        "billing_details": {"cardholder": "Ada Shopper"},
    }


@pytest.fixture
def merchant(stack: Stack, token_for: Callable[..., str]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {token_for(ACCOUNT)}", "X-Payment-Account-Uid": ACCOUNT}
    with httpx.Client(base_url=stack.base_url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def sync_redis(settings: Settings) -> Iterator[SyncRedis]:
    client = SyncRedis.from_url(settings.redis_url)
    yield client
    client.close()


def _types(redis: SyncRedis, settings: Settings, session_id: str) -> list[str]:
    return [e.type for e in session_events_sync(redis, settings.key_prefix, session_id)]


def _create(merchant: httpx.Client, body: dict[str, Any]) -> tuple[str, dict[str, str]]:
    r = merchant.post(URL, json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    return created["session_id"], {"Authorization": f"Bearer {created['client_secret']}"}


def test_checkout_with_a_fee_a_decline_and_a_good_card(
    stack: Stack, merchant: httpx.Client, sync_redis: SyncRedis, settings: Settings
) -> None:
    fees = {"fees": {"card": {"percent_bps": 290, "fixed": 30}}}
    assert merchant.patch("/v1/account/settings", json=fees).status_code == 200
    # The API's clock runs behind (test seam): the form "loaded" a minute before its now.
    loaded_at = time.time_ns() // 1_000_000 + API_CLOCK_OFFSET_MS - 60_000
    signals = {
        "ip_address": "198.51.100.20",
        "user_agent": "Mozilla/5.0 (e2e)",
        "email": "hello@example.com",
        "phone": "+15555550199",
        "request_timestamp": loaded_at,
        "is_authorized": True,
        "is_admin": False,
    }
    session_id, browser = _create(merchant, seed_body(fraud_signals=signals))
    with httpx.Client(base_url=stack.base_url, headers=browser, timeout=10) as shopper:
        config = shopper.get(f"{URL}/{session_id}/config").json()
        assert config["amount"] == 14650
        quote = shopper.post(
            f"{URL}/{session_id}/quote-fee", json={"payment_method_type": "card"}
        ).json()
        assert quote["fee"] == round(14650 * 0.029) + 30
        declined = shopper.post(
            f"{URL}/{session_id}/confirm",
            json={**_card("4000000000000002"), "quote_id": quote["id"]},
        )
        assert declined.status_code == 402
        assert declined.json()["code"] == "card_declined"
        paid = shopper.post(
            f"{URL}/{session_id}/confirm",
            json={**_card("4242424242424242"), "quote_id": quote["id"]},
        )
        assert paid.status_code == 200, paid.text
        assert paid.json()["success_url"] == "https://example.com"
    view = merchant.get(f"{URL}/{session_id}").json()
    assert (view["status"], view["payment_status"]) == ("complete", "paid")
    assert view["payment"]["amount"] == quote["total"]
    types = _types(sync_redis, settings, session_id)
    assert types.index("hosted_session.payment_failed") < types.index("hosted_session.completed")
    assert types.count("hosted_session.completed") == 1


def test_high_risk_session_passes_the_sms_challenge(
    stack: Stack, merchant: httpx.Client, sync_redis: SyncRedis, settings: Settings
) -> None:
    # The seed's own signals (admin actor, another email, a form "loaded" in 1970) score
    # elevated.
    session_id, browser = _create(merchant, seed_body())
    with httpx.Client(base_url=stack.base_url, headers=browser, timeout=10) as shopper:
        refused = shopper.post(f"{URL}/{session_id}/confirm", json=_card("4242424242424242"))
        assert refused.status_code == 403
        assert refused.json()["code"] == "challenge_required"
        sent = shopper.post(f"{URL}/{session_id}/challenge")
        assert sent.status_code == 200, sent.text
        partition = partition_of_session(session_id)
        assert partition is not None
        text = sync_redis.get(Keys(settings.key_prefix).dev_sms_outbox(partition, session_id))
        assert isinstance(text, bytes)
        code = code_in(text.decode())
        assert code is not None
        verified = shopper.post(f"{URL}/{session_id}/challenge/verify", json={"code": code})
        assert verified.status_code == 200, verified.text
        paid = shopper.post(f"{URL}/{session_id}/confirm", json=_card("4242424242424242"))
        assert paid.status_code == 200, paid.text
    types = _types(sync_redis, settings, session_id)
    for expected in (
        "hosted_session.challenge_required",
        "hosted_session.challenge_succeeded",
        "hosted_session.completed",
    ):
        assert expected in types
    assert code not in stack.log_path.read_text()
