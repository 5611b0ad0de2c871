"""Fee quotes through the real app: the schedule in account settings, quote-fee, and confirm
charging exactly a valid quote's total (docs/fees.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from shared.clock import ManualClock
from shared.config import Settings
from shared.events.model import SessionCompleted
from shared.ids import partition_of_account
from shared.redis.keys import Keys
from tests.support import ACCOUNT
from tests.support.checkout import card, charges, open_session
from tests.support.events import events_of
from tests.support.sessions import SESSIONS_URL as URL

Client = AsyncTestClient[Any]
SETTINGS_URL = "/v1/account/settings"
NO_FEE = {"percent_bps": 0, "fixed": 0, "minimum": 0}
CARD_FEE = {"percent_bps": 290, "fixed": 30, "minimum": 0}  # 2.9 % + 30¢
# The seed's amount: 2.9 % of 14650 = 424.85 -> 425, + 30.
SEED_AMOUNT, CARD_FEE_ON_SEED = 14650, 455
ACH_OK = {
    "payment_method": {"type": "ach", "token": "success"},
    "billing_details": {"cardholder": "Ada Shopper"},
}


async def set_fees(client: Client, headers: dict[str, str], **methods: Any) -> dict[str, Any]:
    r = await client.patch(SETTINGS_URL, json={"fees": methods}, headers=headers)
    assert r.status_code == 200, r.text
    fees: dict[str, Any] = r.json()["fees"]
    return fees


async def quote(
    client: Client, session_id: str, browser: dict[str, str], method: str = "card"
) -> dict[str, Any]:
    r = await client.post(
        f"{URL}/{session_id}/quote-fee", json={"payment_method_type": method}, headers=browser
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def with_quote(body: dict[str, Any], quote_id: str) -> dict[str, Any]:
    return {**body, "quote_id": quote_id}


def epoch_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


async def test_schedule_defaults_to_no_fees_and_patch_merges_per_method_and_field(
    client: Client, admin_headers: dict[str, str]
) -> None:
    r = await client.get(SETTINGS_URL, headers=admin_headers)
    assert r.json()["fees"] == {m: NO_FEE for m in ("card", "ach", "apple_pay", "paypal")}
    fees = await set_fees(client, admin_headers, card=CARD_FEE, ach={"fixed": 100})
    assert fees["card"] == CARD_FEE
    assert fees["ach"] == {**NO_FEE, "fixed": 100}
    fees = await set_fees(client, admin_headers, card={"minimum": 50})
    assert fees["card"] == {**CARD_FEE, "minimum": 50}
    assert fees["ach"] == {**NO_FEE, "fixed": 100}
    # A risk-only update leaves the schedule alone.
    r = await client.patch(
        SETTINGS_URL, json={"risk": {"highest_threshold": 90}}, headers=admin_headers
    )
    assert r.json()["fees"]["card"] == {**CARD_FEE, "minimum": 50}


async def test_schedule_ranges_are_enforced(client: Client, admin_headers: dict[str, str]) -> None:
    for body, field in (
        ({"card": {"percent_bps": 2001}}, "fees.card.percent_bps"),
        ({"card": {"percent_bps": -1}}, "fees.card.percent_bps"),
        ({"ach": {"fixed": 10_001}}, "fees.ach.fixed"),
        ({"paypal": {"minimum": 10_001}}, "fees.paypal.minimum"),
        ({"apple_pay": {"fixed": 1.5}}, "fees.apple_pay.fixed"),
        ({"venmo": {"fixed": 1}}, "venmo"),
    ):
        r = await client.patch(SETTINGS_URL, json={"fees": body}, headers=admin_headers)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["code"] == "validation_error"
        assert field in r.json()["message"], r.json()["message"]
    fees = await set_fees(client, admin_headers, card={"percent_bps": 2000, "fixed": 10_000})
    assert fees["card"] == {"percent_bps": 2000, "fixed": 10_000, "minimum": 0}


async def test_default_schedule_quotes_no_fee_and_confirm_needs_no_quote(
    client: Client, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    session_id, browser = await open_session(client, admin_headers, clock)
    q = await quote(client, session_id, browser)
    assert q["id"].startswith("fq_")
    assert (q["payment_method_type"], q["amount"], q["fee"], q["total"], q["currency"]) == (
        "card",
        SEED_AMOUNT,
        0,
        SEED_AMOUNT,
        "USD",
    )
    assert epoch_ms(q["expires_at"]) == clock.now_ms() + 300_000
    r = await client.post(f"{URL}/{session_id}/confirm", json=card(), headers=browser)
    assert r.status_code == 200, r.text
    assert (r.json()["amount"], r.json()["fee"]) == (SEED_AMOUNT, 0)


async def test_confirm_with_a_quote_charges_exactly_its_total(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
) -> None:
    await set_fees(client, admin_headers, card=CARD_FEE)
    session_id, browser = await open_session(client, admin_headers, clock)
    q = await quote(client, session_id, browser)
    assert (q["amount"], q["fee"], q["total"]) == (
        SEED_AMOUNT,
        CARD_FEE_ON_SEED,
        SEED_AMOUNT + CARD_FEE_ON_SEED,
    )
    # Stored under the session's partition tag, cleaned up by a TTL past the quote's validity.
    key = Keys(settings.key_prefix).fee_quote(partition_of_account(ACCOUNT), session_id, q["id"])
    assert 300 < await redis.ttl(key) <= 360

    clock.advance(299)  # still valid one second before it expires
    r = await client.post(
        f"{URL}/{session_id}/confirm", json=with_quote(card(), q["id"]), headers=browser
    )
    assert r.status_code == 200, r.text
    assert (r.json()["amount"], r.json()["fee"]) == (q["total"], q["fee"])
    payment = (await client.get(f"{URL}/{session_id}", headers=admin_headers)).json()["payment"]
    assert payment["amount"] == q["total"]
    assert payment["fee"] == q["fee"]
    assert await charges(redis, settings) == 1
    completed = [
        e for e in await events_of(redis, settings, session_id) if isinstance(e, SessionCompleted)
    ]
    assert len(completed) == 1
    paid = completed[0].data.object.payment
    assert paid is not None
    assert (paid.amount, paid.fee) == (q["total"], q["fee"])
    # A paid session quotes nothing more.
    r = await client.post(
        f"{URL}/{session_id}/quote-fee", json={"payment_method_type": "card"}, headers=browser
    )
    assert (r.status_code, r.json()["code"]) == (409, "already_confirmed")


async def test_a_fee_bearing_method_requires_a_quote(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
) -> None:
    await set_fees(client, admin_headers, card=CARD_FEE)
    session_id, browser = await open_session(
        client, admin_headers, clock, allowed_methods=["card", "ach"]
    )
    r = await client.post(f"{URL}/{session_id}/confirm", json=card(), headers=browser)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "validation_error"
    assert r.json()["message"].startswith("quote_id: required")
    assert await charges(redis, settings) == 0
    # ACH charges nothing on this account: no quote needed.
    r = await client.post(f"{URL}/{session_id}/confirm", json=ACH_OK, headers=browser)
    assert r.status_code == 200, r.text
    assert (r.json()["amount"], r.json()["fee"]) == (SEED_AMOUNT, 0)


async def test_an_expired_quote_is_refused_by_the_service_clock(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
) -> None:
    await set_fees(client, admin_headers, card=CARD_FEE)
    session_id, browser = await open_session(client, admin_headers, clock)
    q = await quote(client, session_id, browser)
    clock.advance(300)
    r = await client.post(
        f"{URL}/{session_id}/confirm", json=with_quote(card(), q["id"]), headers=browser
    )
    assert r.status_code == 400, r.text
    assert r.json()["message"] == "quote_id: quote expired, request a new one"
    assert await charges(redis, settings) == 0
    fresh = await quote(client, session_id, browser)
    r = await client.post(
        f"{URL}/{session_id}/confirm", json=with_quote(card(), fresh["id"]), headers=browser
    )
    assert r.status_code == 200, r.text
    assert r.json()["amount"] == fresh["total"]


async def test_a_quote_pays_only_its_own_session(
    client: Client, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    await set_fees(client, admin_headers, card=CARD_FEE)
    session_id, browser = await open_session(client, admin_headers, clock)
    other_id, other_browser = await open_session(client, admin_headers, clock)
    foreign = await quote(client, other_id, other_browser)
    for quote_id in (foreign["id"], "fq_doesnotexist", "fq_x:{p01}:hold"):
        r = await client.post(
            f"{URL}/{session_id}/confirm", json=with_quote(card(), quote_id), headers=browser
        )
        assert r.status_code == 400, (quote_id, r.text)
        assert r.json()["message"] == "quote_id: no such fee quote for this session"
    # The other session's quote still pays its own session.
    r = await client.post(
        f"{URL}/{other_id}/confirm", json=with_quote(card(), foreign["id"]), headers=other_browser
    )
    assert r.status_code == 200, r.text


async def test_a_quote_pays_only_its_method(
    client: Client, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    await set_fees(client, admin_headers, card=CARD_FEE, ach={"fixed": 100})
    session_id, browser = await open_session(
        client, admin_headers, clock, allowed_methods=["card", "ach"]
    )
    ach_quote = await quote(client, session_id, browser, "ach")
    assert (ach_quote["fee"], ach_quote["total"]) == (100, SEED_AMOUNT + 100)
    r = await client.post(
        f"{URL}/{session_id}/confirm", json=with_quote(card(), ach_quote["id"]), headers=browser
    )
    assert r.status_code == 400, r.text
    assert "'ach', not 'card'" in r.json()["message"]
    r = await client.post(
        f"{URL}/{session_id}/confirm", json=with_quote(ACH_OK, ach_quote["id"]), headers=browser
    )
    assert r.status_code == 200, r.text
    assert (r.json()["amount"], r.json()["fee"]) == (SEED_AMOUNT + 100, 100)


async def test_a_changed_amount_invalidates_earlier_quotes(
    client: Client, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    await set_fees(client, admin_headers, card=CARD_FEE)
    session_id, browser = await open_session(client, admin_headers, clock)
    old = await quote(client, session_id, browser)
    r = await client.patch(
        f"{URL}/{session_id}",
        json={"amount": 20000, "line_items": [{"description": "more", "amount": 20000}]},
        headers=admin_headers,
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"{URL}/{session_id}/confirm", json=with_quote(card(), old["id"]), headers=browser
    )
    assert r.status_code == 400, r.text
    assert "amount changed" in r.json()["message"]
    new = await quote(client, session_id, browser)
    assert (new["amount"], new["fee"]) == (20000, 610)  # 580 + 30
    r = await client.post(
        f"{URL}/{session_id}/confirm", json=with_quote(card(), new["id"]), headers=browser
    )
    assert r.status_code == 200, r.text
    assert r.json()["amount"] == 20610


async def test_a_quote_is_honoured_after_the_schedule_changes(
    client: Client, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    await set_fees(client, admin_headers, card=CARD_FEE)
    session_id, browser = await open_session(client, admin_headers, clock)
    q = await quote(client, session_id, browser)
    await set_fees(client, admin_headers, card={"percent_bps": 500})
    r = await client.post(
        f"{URL}/{session_id}/confirm", json=with_quote(card(), q["id"]), headers=browser
    )
    assert r.status_code == 200, r.text
    assert (r.json()["amount"], r.json()["fee"]) == (q["total"], CARD_FEE_ON_SEED)


async def test_a_given_quote_is_checked_even_where_no_fee_is_charged(
    client: Client, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    session_id, browser = await open_session(client, admin_headers, clock)
    r = await client.post(
        f"{URL}/{session_id}/confirm", json=with_quote(card(), "fq_made_up"), headers=browser
    )
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith("quote_id: no such fee quote")


async def test_quote_fee_rules_scope_method_and_body(
    client: Client, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    wallet_id, wallet_browser = await open_session(client, admin_headers, clock, scope="wallet")
    r = await client.post(
        f"{URL}/{wallet_id}/quote-fee", json={"payment_method_type": "card"}, headers=wallet_browser
    )
    assert (r.status_code, r.json()["code"]) == (403, "insufficient_scope")

    session_id, browser = await open_session(client, admin_headers, clock)
    for body, status, field in (
        ({"payment_method_type": "ach"}, 400, "payment_method_type"),  # not allowed here
        ({"payment_method_type": "venmo"}, 400, "payment_method_type"),
        ({}, 400, "payment_method_type"),
        ({"payment_method_type": "card", "amount": 1}, 400, "amount"),
    ):
        r = await client.post(f"{URL}/{session_id}/quote-fee", json=body, headers=browser)
        assert r.status_code == status, (body, r.text)
        assert r.json()["code"] == "validation_error"
        assert field in r.json()["message"], r.json()["message"]
    r = await client.post(f"{URL}/{session_id}/quote-fee", json={"payment_method_type": "card"})
    assert r.status_code == 401
    _, other_browser = await open_session(client, admin_headers, clock)
    r = await client.post(
        f"{URL}/{session_id}/quote-fee", json={"payment_method_type": "card"}, headers=other_browser
    )
    assert r.status_code == 401


async def test_a_quote_never_outlives_its_session(
    client: Client, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    session_id, browser = await open_session(client, admin_headers, clock, expires_in_seconds=300)
    created = clock.now_ms()
    clock.advance(100)
    q = await quote(client, session_id, browser)
    assert epoch_ms(q["expires_at"]) == created + 300_000
    clock.advance(200)
    r = await client.post(
        f"{URL}/{session_id}/quote-fee", json={"payment_method_type": "card"}, headers=browser
    )
    assert (r.status_code, r.json()["code"]) == (410, "session_expired")
