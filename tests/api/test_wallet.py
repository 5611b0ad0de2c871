"""Wallet scope: a customer's saved methods through the browser credential."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from shared.clock import ManualClock
from tests.support.checkout import card, open_session
from tests.support.sessions import SESSIONS_URL as URL

Client = AsyncTestClient[Any]


async def test_wallet_credential_lists_adds_and_deletes_its_customers_methods(
    client: Client, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    session_id, wallet = await open_session(
        client, admin_headers, clock, scope="wallet", customer_id="cust_w"
    )
    base = f"{URL}/{session_id}/payment-methods"
    assert (await client.get(base, headers=wallet)).json()["data"] == []
    r = await client.post(base, json=card()["payment_method"] | {"type": "card"}, headers=wallet)
    assert r.status_code == 201, r.text
    saved = r.json()
    assert saved["last4"] == "4242"
    assert set(saved) == {"id", "type", "brand", "last4", "exp_month", "exp_year"}
    again = await client.post(base, json=card()["payment_method"], headers=wallet)
    assert again.status_code == 200
    assert again.json()["id"] == saved["id"]
    assert [m["id"] for m in (await client.get(base, headers=wallet)).json()["data"]] == [
        saved["id"]
    ]
    # A payment-scope session of the same customer sees it in its config, and cannot manage it.
    pay_id, pay = await open_session(client, admin_headers, clock, customer_id="cust_w")
    config = (await client.get(f"{URL}/{pay_id}/config", headers=pay)).json()
    assert [m["id"] for m in config["saved_methods"]] == [saved["id"]]
    r = await client.get(f"{URL}/{pay_id}/payment-methods", headers=pay)
    assert r.status_code == 403
    assert r.json()["code"] == "insufficient_scope"
    # Another customer's wallet session sees nothing and cannot delete it.
    other_id, other = await open_session(
        client, admin_headers, clock, scope="wallet", customer_id="cust_other"
    )
    assert (await client.get(f"{URL}/{other_id}/payment-methods", headers=other)).json()[
        "data"
    ] == []
    r = await client.delete(f"{URL}/{other_id}/payment-methods/{saved['id']}", headers=other)
    assert r.status_code == 404
    r = await client.delete(f"{base}/{saved['id']}", headers=wallet)
    assert r.status_code == 204
    assert (await client.get(base, headers=wallet)).json()["data"] == []


async def test_bad_cards_are_refused_and_never_echoed(
    client: Client, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    session_id, wallet = await open_session(
        client, admin_headers, clock, scope="wallet", customer_id="cust_w2"
    )
    base = f"{URL}/{session_id}/payment-methods"
    r = await client.post(base, json=card("4242424242424241")["payment_method"], headers=wallet)
    assert r.status_code == 400
    assert "4242424242424241" not in r.text
    r = await client.post(base, json=card(exp_year=2001)["payment_method"], headers=wallet)
    assert r.status_code == 402
    assert r.json()["code"] == "expired_card"
    no_customer_id, no_customer = await open_session(
        client, admin_headers, clock, scope="wallet", customer_id=None
    )
    r = await client.get(f"{URL}/{no_customer_id}/payment-methods", headers=no_customer)
    assert r.status_code == 400
