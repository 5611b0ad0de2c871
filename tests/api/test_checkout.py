"""The shopper's side through the real app: client secret, config, confirm with the simulator,
and the guarantees around a charge (single use, no double charge, no charge once expired)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from shared.clock import ManualClock
from shared.config import Settings
from shared.events.stored import stored_event_json
from shared.ids import partition_of_account
from shared.redis.keys import Keys
from tests.support import ACCOUNT, seed_body
from tests.support.checkout import GOOD_CARD, card, charges, open_session
from tests.support.events import events_of
from tests.support.sessions import SESSIONS_URL, Client

URL = SESSIONS_URL
GOOD = GOOD_CARD


async def test_config_is_sanitized_and_needs_the_sessions_own_secret(
    client: Client, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    session_id, browser = await open_session(client, admin_headers, clock)
    r = await client.get(f"{URL}/{session_id}/config", headers=browser)
    assert r.status_code == 200, r.text
    config = r.json()
    assert config["amount"] == 14650
    assert config["branding"]["accent_color"] == "#1A2B3C"
    for leaked in ("fraud_signals", "198.51.100.", "+1555555", '"metadata"', "_secret_"):
        assert leaked not in r.text
    other_id, other_browser = await open_session(client, admin_headers, clock)
    assert (
        await client.get(f"{URL}/{session_id}/config", headers=other_browser)
    ).status_code == 401
    assert (await client.get(f"{URL}/{session_id}/config")).status_code == 401
    wrong = {"Authorization": browser["Authorization"][:-3] + "abc"}
    r = await client.get(f"{URL}/{session_id}/config", headers=wrong)
    assert r.status_code == 401
    assert r.json()["code"] == "validation_error"
    # The admin token opens nothing on the browser side.
    r = await client.get(f"{URL}/{other_id}/config", headers=admin_headers)
    assert r.status_code == 401


async def test_expired_sessions_secret_answers_410(
    client: Client, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    session_id, browser = await open_session(client, admin_headers, clock)
    clock.advance(1801)
    r = await client.get(f"{URL}/{session_id}/config", headers=browser)
    assert r.status_code == 410
    assert r.json()["code"] == "session_expired"
    r = await client.post(f"{URL}/{session_id}/confirm", json=card(), headers=browser)
    assert r.status_code == 410


async def test_good_card_completes_once_with_its_event(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
) -> None:
    session_id, browser = await open_session(client, admin_headers, clock)
    r = await client.post(f"{URL}/{session_id}/confirm", json=card(), headers=browser)
    assert r.status_code == 200, r.text
    assert r.json()["success_url"] == "https://example.com"
    assert r.json()["status"] == "complete"
    again = await client.post(f"{URL}/{session_id}/confirm", json=card(), headers=browser)
    assert again.status_code == 409
    assert again.json()["code"] == "already_confirmed"
    view = (await client.get(f"{URL}/{session_id}", headers=admin_headers)).json()
    assert view["status"] == "complete"
    assert view["payment_status"] == "paid"
    assert view["payment"]["last4"] == "4242"
    assert view["payment"]["brand"] == "visa"
    types = [e.type for e in await events_of(redis, settings, session_id)]
    assert types.count("hosted_session.completed") == 1
    assert await charges(redis, settings) == 1
    # A completed session cannot be expired or changed.
    r = await client.post(f"{URL}/{session_id}/expire", headers=admin_headers)
    assert r.status_code == 409


@pytest.mark.parametrize(
    ("number", "status", "code"),
    [
        ("4000000000000002", 402, "card_declined"),
        ("4000000000009995", 402, "insufficient_funds"),
        ("4000000000000069", 402, "expired_card"),
        ("4000000000000127", 402, "incorrect_cvc"),
        ("4000000000000119", 502, "processing_error"),
    ],
)
async def test_card_errors_then_a_good_card(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
    number: str,
    status: int,
    code: str,
) -> None:
    session_id, browser = await open_session(client, admin_headers, clock)
    r = await client.post(f"{URL}/{session_id}/confirm", json=card(number), headers=browser)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert r.json()["recoverable"] is True
    failed = [
        e
        for e in await events_of(redis, settings, session_id)
        if e.type == "hosted_session.payment_failed"
    ]
    assert len(failed) == 1
    assert failed[0].data.error.code == code  # type: ignore[union-attr]
    r = await client.post(f"{URL}/{session_id}/confirm", json=card(), headers=browser)
    assert r.status_code == 200, r.text
    assert await charges(redis, settings) == 1


async def test_network_error_retry_never_charges_twice(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
) -> None:
    session_id, browser = await open_session(client, admin_headers, clock)
    r = await client.post(
        f"{URL}/{session_id}/confirm", json=card("4000000000000408"), headers=browser
    )
    assert r.status_code == 503
    assert r.json()["code"] == "network_error"
    assert r.json()["recoverable"] is True
    # The session is held by the unknown charge: no expiry, no other card.
    r = await client.post(f"{URL}/{session_id}/expire", headers=admin_headers)
    assert r.status_code == 409
    r = await client.post(
        f"{URL}/{session_id}/confirm", json=card("4000000000000408"), headers=browser
    )
    assert r.status_code == 200, r.text
    assert await charges(redis, settings) == 1


async def test_scope_billing_method_and_origin_rules(
    client: Client, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    session_id, browser = await open_session(client, admin_headers, clock, scope="wallet")
    r = await client.post(f"{URL}/{session_id}/confirm", json=card(), headers=browser)
    assert r.status_code == 403
    assert r.json()["code"] == "insufficient_scope"
    assert (await client.get(f"{URL}/{session_id}/config", headers=browser)).status_code == 200

    session_id, browser = await open_session(
        client, admin_headers, clock, required_avs_fields=["zip"]
    )
    r = await client.post(f"{URL}/{session_id}/confirm", json=card(), headers=browser)
    assert r.status_code == 400
    assert r.json()["message"].startswith("billing_details.zip")
    ach = {
        "payment_method": {"type": "ach", "token": "ach_success"},
        "billing_details": {"zip": "1"},
    }
    r = await client.post(f"{URL}/{session_id}/confirm", json=ach, headers=browser)
    assert r.status_code == 400
    assert "not allowed" in r.json()["message"]
    bad_pan = card("4242 4242 4242 4241")
    bad_pan["billing_details"] = {"zip": "10001"}
    r = await client.post(f"{URL}/{session_id}/confirm", json=bad_pan, headers=browser)
    assert r.status_code == 400
    assert "4241" not in r.text

    evil = {**browser, "Origin": "https://evil.example"}
    r = await client.get(f"{URL}/{session_id}/config", headers=evil)
    assert r.status_code == 403
    assert r.json()["code"] == "origin_not_allowed"
    ok = {**browser, "Origin": "https://example.com"}
    assert (await client.get(f"{URL}/{session_id}/config", headers=ok)).status_code == 200


async def test_risk_decides_before_any_charge(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
) -> None:
    session_id, browser = await open_session(client, admin_headers, clock)
    r = await client.post(
        f"{URL}/{session_id}/confirm", json=card("4100000000000019"), headers=browser
    )
    assert r.status_code == 402
    assert r.json()["code"] == "card_declined"
    assert r.json()["recoverable"] is False
    # The seed's own signals (admin actor, other email, form loaded in 1970) are elevated.
    r = await client.post(URL, json=seed_body(), headers=admin_headers)
    created = r.json()
    elevated = {"Authorization": f"Bearer {created['client_secret']}"}
    r = await client.post(f"{URL}/{created['session_id']}/confirm", json=card(), headers=elevated)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "challenge_required"
    view = (await client.get(f"{URL}/{created['session_id']}", headers=admin_headers)).json()
    assert view["risk"]["status"] == "scored"  # scored inline: no worker ran
    assert view["risk"]["level"] == "elevated"
    assert await charges(redis, settings) == 0


async def test_duplicate_payment_and_saved_methods(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
) -> None:
    first, browser = await open_session(
        client, admin_headers, clock, customer_id="cust_dup", setup_future_usage="on_session"
    )
    assert (
        await client.post(f"{URL}/{first}/confirm", json=card(), headers=browser)
    ).status_code == 200
    second, browser2 = await open_session(client, admin_headers, clock, customer_id="cust_dup")
    before = await charges(redis, settings)
    r = await client.post(f"{URL}/{second}/confirm", json=card(), headers=browser2)
    assert r.status_code == 409
    assert r.json()["code"] == "duplicate_payment"
    # Refused in the step that would have held it: no hold left behind, nothing charged.
    hold = Keys(settings.key_prefix).charge_hold(partition_of_account(ACCOUNT), second)
    assert await redis.exists(hold) == 0
    assert await charges(redis, settings) == before
    # The same card for another amount is no duplicate.
    third_amount, browser_t = await open_session(
        client,
        admin_headers,
        clock,
        customer_id="cust_dup",
        amount=500,
        line_items=[{"description": "Other", "amount": 500, "quantity": 1}],
    )
    r = await client.post(f"{URL}/{third_amount}/confirm", json=card(), headers=browser_t)
    assert r.status_code == 200, r.text
    config = (await client.get(f"{URL}/{second}/config", headers=browser2)).json()
    [saved] = config["saved_methods"]
    assert saved["last4"] == "4242"
    assert "token" not in saved
    # Another customer never sees it.
    third, browser3 = await open_session(client, admin_headers, clock, customer_id="cust_other")
    assert (await client.get(f"{URL}/{third}/config", headers=browser3)).json()[
        "saved_methods"
    ] == []
    # Paying with the saved method works once the duplicate window has passed.
    clock.advance(601)
    fourth, browser4 = await open_session(client, admin_headers, clock, customer_id="cust_dup")
    pay = {
        "payment_method": {"type": "saved", "id": saved["id"]},
        "billing_details": {"cardholder": "A"},
    }
    r = await client.post(f"{URL}/{fourth}/confirm", json=pay, headers=browser4)
    assert r.status_code == 200, r.text
    r = await client.post(f"{URL}/{third}/confirm", json={**pay}, headers=browser3)
    assert r.status_code == 400  # not this customer's method


async def test_card_testing_guard_stops_a_session_after_five_failures(
    client: Client, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    session_id, browser = await open_session(client, admin_headers, clock)
    for _ in range(5):
        r = await client.post(
            f"{URL}/{session_id}/confirm", json=card("4000000000000002"), headers=browser
        )
        assert r.status_code == 402
    r = await client.post(f"{URL}/{session_id}/confirm", json=card(), headers=browser)
    assert r.status_code == 429
    assert r.json()["code"] == "rate_limited"
    assert r.json()["recoverable"] is False


async def test_many_concurrent_confirms_charge_once(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
) -> None:
    session_id, browser = await open_session(client, admin_headers, clock)
    responses = await asyncio.gather(
        *(
            client.post(f"{URL}/{session_id}/confirm", json=card(), headers=browser)
            for _ in range(10)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, [r.text for r in responses]
    assert all(s == 409 for s in statuses if s != 200)
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"already_confirmed"}
    assert await charges(redis, settings) == 1
    types = [e.type for e in await events_of(redis, settings, session_id)]
    assert types.count("hosted_session.completed") == 1


async def test_confirm_racing_expire_ends_in_one_terminal_state(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
) -> None:
    for _ in range(10):
        session_id, browser = await open_session(client, admin_headers, clock)
        confirm, expire = await asyncio.gather(
            client.post(f"{URL}/{session_id}/confirm", json=card(), headers=browser),
            client.post(f"{URL}/{session_id}/expire", headers=admin_headers),
        )
        view = (await client.get(f"{URL}/{session_id}", headers=admin_headers)).json()
        types = [e.type for e in await events_of(redis, settings, session_id)]
        terminal = [t for t in types if t in ("hosted_session.completed", "hosted_session.expired")]
        assert len(terminal) == 1, types
        if view["status"] == "complete":
            assert confirm.status_code == 200
            assert expire.status_code == 409
        else:
            assert view["status"] == "expired"
            assert confirm.status_code in (409, 410)
            assert expire.status_code == 200
    # Exactly the completed sessions were charged.
    completed = 0
    for partition_events in [
        await redis.xrange(Keys(settings.key_prefix).events(partition_of_account(ACCOUNT)))
    ]:
        completed = sum(
            1
            for _, f in partition_events
            if b"hosted_session.completed" in stored_event_json(f[b"e"])
        )
    assert await charges(redis, settings) == completed


async def test_confirm_rechecks_the_form_load_time_against_its_own_clock(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
) -> None:
    # Loaded a minute before the create: a normal shopper when scored.
    session_id, browser = await open_session(client, admin_headers, clock)
    before = await charges(redis, settings)
    # At confirm the service's clock puts that load 60 s in the future: forged, refused as
    # a plain decline (the signals checked are the ones the guard read with the record).
    clock.advance(-120)
    r = await client.post(f"{URL}/{session_id}/confirm", json=card(), headers=browser)
    assert r.status_code == 402, r.text
    assert r.json()["code"] == "card_declined"
    assert await charges(redis, settings) == before
    # Back on time, the same session pays.
    clock.advance(120)
    r = await client.post(f"{URL}/{session_id}/confirm", json=card(), headers=browser)
    assert r.status_code == 200, r.text
    assert await charges(redis, settings) == before + 1
