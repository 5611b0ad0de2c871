"""Read, list, update and expire through the real app, with events checked in the stream."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from shared.clock import ManualClock
from shared.config import Settings
from shared.events.model import Event, SessionCreated, SessionUpdated
from tests.api.conftest import ACCOUNT, OTHER_ACCOUNT, seed_body
from tests.support.events import session_events
from tests.support.sessions import create_session as create

Client = AsyncTestClient[Any]
URL = "/v1/hosted-sessions"


async def events_of(redis: Redis, settings: Settings, session_id: str) -> list[Event]:
    return await session_events(redis, settings.key_prefix, session_id)


async def test_merchant_view_has_the_session_and_no_secrets(
    client: Client, admin_headers: dict[str, str]
) -> None:
    r = await client.post(URL, json=seed_body(), headers=admin_headers)
    created = r.json()
    view = (await client.get(f"{URL}/{created['session_id']}", headers=admin_headers)).json()
    assert view["status"] == "open"
    assert view["payment_status"] == "unpaid"
    assert view["amount"] == 14650
    assert view["currency"] == "USD"
    assert view["line_items"][0]["quantity"] == 1
    assert view["metadata"] == {"additionalProperty": "example"}
    assert view["branding"]["accent_color"] == "#1A2B3C"
    assert view["risk"] == {"status": "pending", "score": None, "level": None, "reasons": []}
    assert view["hosted_url"] == created["hosted_url"]
    assert view["expires_at"] == created["expires_at"]
    assert "fraud_signals" not in view
    assert created["client_secret"] not in r.text.replace(created["client_secret"], "", 1)
    assert "203.0.113.7" not in str(view)


async def test_created_event_is_written_with_the_session(
    client: Client, admin_headers: dict[str, str], redis: Redis, settings: Settings
) -> None:
    session_id = await create(client, admin_headers)
    events = await events_of(redis, settings, session_id)
    assert [(e.type, e.sequence) for e in events] == [("hosted_session.created", 1)]
    event = events[0]
    assert isinstance(event, SessionCreated)
    assert event.account_uid == ACCOUNT
    assert event.data.object.id == session_id
    raw = msgspec.json.encode(event).decode()
    assert "_secret_" not in raw
    assert "shopper@example.com" not in raw


async def test_list_is_newest_first_with_cursor_and_filters(
    client: Client, admin_headers: dict[str, str], clock: ManualClock, token_for: Any
) -> None:
    ids = []
    for i in range(5):
        ids.append(await create(client, admin_headers, customer_id="cust_a" if i % 2 else "cust_b"))
        clock.advance(0.001 if i % 2 else 0)  # two share a millisecond: order must still hold
    other_headers = {
        "Authorization": f"Bearer {token_for(OTHER_ACCOUNT)}",
        "X-Payment-Account-Uid": OTHER_ACCOUNT,
    }
    await create(client, other_headers)

    first = (await client.get(URL, params={"limit": 2}, headers=admin_headers)).json()
    assert first["has_more"] is True
    second = (
        await client.get(
            URL,
            params={"limit": 2, "starting_after": first["data"][-1]["id"]},
            headers=admin_headers,
        )
    ).json()
    third = (
        await client.get(
            URL,
            params={"limit": 2, "starting_after": second["data"][-1]["id"]},
            headers=admin_headers,
        )
    ).json()
    listed = [s["id"] for page in (first, second, third) for s in page["data"]]
    assert third["has_more"] is False
    assert sorted(listed) == sorted(ids)  # every session once, none of the other account's
    created_at = [s["created_at"] for page in (first, second, third) for s in page["data"]]
    assert created_at == sorted(created_at, reverse=True)

    by_customer = (
        await client.get(URL, params={"customer_id": "cust_a"}, headers=admin_headers)
    ).json()
    assert {s["id"] for s in by_customer["data"]} == {ids[1], ids[3]}

    await client.post(f"{URL}/{ids[0]}/expire", headers=admin_headers)
    expired = (await client.get(URL, params={"status": "expired"}, headers=admin_headers)).json()
    assert [s["id"] for s in expired["data"]] == [ids[0]]
    open_ = (await client.get(URL, params={"status": "open"}, headers=admin_headers)).json()
    assert ids[0] not in {s["id"] for s in open_["data"]}
    assert len(open_["data"]) == 4

    bad = await client.get(URL, params={"status": "bogus"}, headers=admin_headers)
    assert bad.status_code == 400
    assert bad.json()["code"] == "validation_error"
    too_many = await client.get(URL, params={"limit": 101}, headers=admin_headers)
    assert too_many.status_code == 400


async def test_the_unfiltered_list_interleaves_every_status_newest_first(
    client: Client, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    # No account-wide index: the list merges the status indexes, page by page.
    ids = []
    for _ in range(6):
        ids.append(await create(client, admin_headers))
        clock.advance(0.001)
    for expired in (ids[1], ids[2], ids[4]):
        r = await client.post(f"{URL}/{expired}/expire", headers=admin_headers)
        assert r.status_code == 200
    listed: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = (await client.get(URL, params=params, headers=admin_headers)).json()
        listed += [s["id"] for s in page["data"]]
        if not page["has_more"]:
            break
        params["starting_after"] = page["data"][-1]["id"]
    assert listed == ids[::-1]


async def test_a_session_past_its_time_reads_and_acts_expired_at_once(
    client: Client, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    session_id = await create(client, admin_headers, expires_in_seconds=300)
    clock.advance(300)
    view = (await client.get(f"{URL}/{session_id}", headers=admin_headers)).json()
    assert view["status"] == "expired"
    assert view["expired_reason"] == "time"
    listed = (await client.get(URL, params={"status": "open"}, headers=admin_headers)).json()
    assert session_id not in {s["id"] for s in listed["data"]}
    r = await client.patch(f"{URL}/{session_id}", json={"description": "x"}, headers=admin_headers)
    assert r.status_code == 410
    assert r.json()["code"] == "session_expired"
    r = await client.post(f"{URL}/{session_id}/expire", headers=admin_headers)
    assert r.status_code == 200
    assert r.json()["expired_reason"] == "time"


async def test_patch_updates_mutable_fields_with_an_event(
    client: Client, admin_headers: dict[str, str], redis: Redis, settings: Settings
) -> None:
    session_id = await create(client, admin_headers, metadata={"a": "1", "b": "2"})
    r = await client.patch(
        f"{URL}/{session_id}",
        json={
            "amount": 2000,
            "line_items": [{"description": "two", "amount": 1000, "quantity": 2}],
            "description": None,
            "metadata": {"a": None, "c": "3"},
            "branding": {"merchant_display_name": "Shop"},
            "allowed_methods": ["card", "ach"],
            "customer_email": "new@example.com",
            "expires_in_seconds": 3600,
        },
        headers=admin_headers,
    )
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["amount"] == 2000
    assert view["description"] is None
    assert view["metadata"] == {"b": "2", "c": "3"}
    assert view["branding"] == {
        "logo_url": None,
        "accent_color": None,
        "merchant_display_name": "Shop",
    }
    assert view["allowed_methods"] == ["card", "ach"]
    events = await events_of(redis, settings, session_id)
    assert [e.sequence for e in events] == [1, 2]
    updated = events[1]
    assert updated.type == "hosted_session.updated"
    assert isinstance(updated, SessionUpdated)
    previous = updated.data.previous_attributes
    assert previous["amount"] == 14650
    assert previous["metadata"] == {"a": "1", "b": "2"}
    assert "expires_at" in previous

    # The same patch again changes nothing and writes no event.
    r = await client.patch(f"{URL}/{session_id}", json={"amount": 2000}, headers=admin_headers)
    assert r.status_code == 200
    assert len(await events_of(redis, settings, session_id)) == 2


async def test_patch_refuses_inconsistent_totals_and_changes_nothing(
    client: Client, admin_headers: dict[str, str], redis: Redis, settings: Settings
) -> None:
    session_id = await create(client, admin_headers)
    r = await client.patch(f"{URL}/{session_id}", json={"amount": 999}, headers=admin_headers)
    assert r.status_code == 422
    assert "14650" in r.json()["message"]
    assert "999" in r.json()["message"]
    r = await client.patch(
        f"{URL}/{session_id}", json={"expires_in_seconds": 299}, headers=admin_headers
    )
    assert r.status_code == 400
    r = await client.patch(
        f"{URL}/{session_id}", json={"status": "complete"}, headers=admin_headers
    )
    assert r.status_code == 400
    view = (await client.get(f"{URL}/{session_id}", headers=admin_headers)).json()
    assert view["amount"] == 14650
    assert len(await events_of(redis, settings, session_id)) == 1


async def test_expire_is_idempotent_and_emits_one_event(
    client: Client, admin_headers: dict[str, str], redis: Redis, settings: Settings
) -> None:
    session_id = await create(client, admin_headers)
    first = await client.post(f"{URL}/{session_id}/expire", headers=admin_headers)
    again = await client.post(f"{URL}/{session_id}/expire", headers=admin_headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert first.json()["status"] == "expired"
    assert first.json()["expired_reason"] == "merchant"
    types = [e.type for e in await events_of(redis, settings, session_id)]
    assert types == ["hosted_session.created", "hosted_session.expired"]


async def test_concurrent_expires_and_patches_keep_one_terminal_state(
    client: Client, admin_headers: dict[str, str], redis: Redis, settings: Settings
) -> None:
    session_id = await create(client, admin_headers)
    calls = [client.post(f"{URL}/{session_id}/expire", headers=admin_headers) for _ in range(5)]
    calls += [
        client.patch(f"{URL}/{session_id}", json={"description": f"d{i}"}, headers=admin_headers)
        for i in range(5)
    ]
    responses = await asyncio.gather(*calls)
    assert {r.status_code for r in responses} <= {200, 410}
    events = await events_of(redis, settings, session_id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events].count("hosted_session.expired") == 1
    assert events[-1].type == "hosted_session.expired"


async def test_idempotency_key_replays_refuses_reuse_and_is_per_account(
    client: Client, admin_headers: dict[str, str], token_for: Any, redis: Redis, settings: Settings
) -> None:
    headers = {**admin_headers, "Idempotency-Key": "order-42"}
    first = await client.post(URL, json=seed_body(), headers=headers)
    replay = await client.post(URL, json=seed_body(), headers=headers)
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()  # same session, same secret
    listed = (await client.get(URL, headers=admin_headers)).json()
    assert len(listed["data"]) == 1

    reused = await client.post(URL, json=seed_body(amount=1, line_items=[]), headers=headers)
    assert reused.status_code == 422
    assert reused.json()["code"] == "validation_error"

    other = {
        "Authorization": f"Bearer {token_for(OTHER_ACCOUNT)}",
        "X-Payment-Account-Uid": OTHER_ACCOUNT,
        "Idempotency-Key": "order-42",
    }
    theirs = await client.post(URL, json=seed_body(), headers=other)
    assert theirs.status_code == 201
    assert theirs.json()["session_id"] != first.json()["session_id"]

    too_long = await client.post(
        URL, json=seed_body(), headers={**headers, "Idempotency-Key": "k" * 256}
    )
    assert too_long.status_code == 400


async def test_failed_request_releases_its_idempotency_key(
    client: Client, admin_headers: dict[str, str]
) -> None:
    headers = {**admin_headers, "Idempotency-Key": "retry-me"}
    bad = await client.post(URL, json=seed_body(amount=1), headers=headers)  # items != amount
    assert bad.status_code == 422
    good = await client.post(URL, json=seed_body(amount=1), headers=headers)
    assert good.status_code == 422  # same body, same answer; the key was not burnt...
    fixed = await client.post(
        URL, json=seed_body(), headers={**admin_headers, "Idempotency-Key": "retry-me"}
    )
    assert fixed.status_code == 201  # ...so the corrected request can use it


async def test_concurrent_requests_with_one_key_create_one_session(
    client: Client, admin_headers: dict[str, str]
) -> None:
    headers = {**admin_headers, "Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *(client.post(URL, json=seed_body(), headers=headers) for _ in range(8))
    )
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}
    assert 201 in statuses
    in_flight = [r for r in responses if r.status_code == 409]
    for r in in_flight:
        assert r.headers["retry-after"] == "1"
        assert r.json()["recoverable"] is True
    ids = {r.json()["session_id"] for r in responses if r.status_code == 201}
    assert len(ids) == 1
    listed = (await client.get(URL, headers=admin_headers)).json()
    assert len(listed["data"]) == 1
