"""Card fields take ASCII digits only: other scripts' digits pass `str.isdigit()`, and a card
typed in them used to pay as a card the guards did not recognise (another fingerprint)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from shared.clock import ManualClock
from shared.config import Settings
from shared.ids import partition_of_account
from shared.redis.keys import Keys
from tests.support import ACCOUNT
from tests.support.checkout import card, charges, open_session
from tests.support.events import events_of
from tests.support.sessions import SESSIONS_URL as URL

Client = AsyncTestClient[Any]

# The highest-risk test card (4100 0000 0000 0019), which must never pay.
HIGHEST_RISK = "4100 0000 0000 0019"
_ASCII = "0123456789"
# Spelled by code point: the characters themselves look like ASCII digits in an editor.
DIGIT_KINDS = {
    "arabic_indic": "".join(chr(0x0660 + i) for i in range(10)),
    "full_width": "".join(chr(0xFF10 + i) for i in range(10)),
    "superscript": "\u2070\u00b9\u00b2\u00b3" + "".join(chr(0x2074 + i) for i in range(6)),
}


def spelled(number: str, kind: str) -> str:
    """`number` with its ASCII digits written in another script's digits."""
    return number.translate(str.maketrans(_ASCII, DIGIT_KINDS[kind]))


def assert_refused(r: Any, field: str, number: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "validation_error"
    assert body["recoverable"] is False
    assert field in body["message"]
    assert number not in r.text


@pytest.mark.parametrize("kind", sorted(DIGIT_KINDS))
async def test_confirm_refuses_a_card_number_in_non_ascii_digits(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
    kind: str,
) -> None:
    session_id, browser = await open_session(client, admin_headers, clock)
    number = spelled(HIGHEST_RISK, kind)
    before = await charges(redis, settings)

    r = await client.post(f"{URL}/{session_id}/confirm", json=card(number), headers=browser)

    assert_refused(r, "payment_method.number", number)
    assert await charges(redis, settings) == before
    hold = Keys(settings.key_prefix).charge_hold(partition_of_account(ACCOUNT), session_id)
    assert await redis.exists(hold) == 0
    # Refused as bad input, not as a payment attempt: nothing recorded against the session.
    assert [
        e.type
        for e in await events_of(redis, settings, session_id)
        if e.type.startswith("hosted_session.payment")
    ] == []
    # The session still pays with a card typed in ASCII digits.
    r = await client.post(f"{URL}/{session_id}/confirm", json=card(), headers=browser)
    assert r.status_code == 200, r.text
    assert await charges(redis, settings) == before + 1


@pytest.mark.parametrize("kind", sorted(DIGIT_KINDS))
async def test_confirm_refuses_a_cvc_in_non_ascii_digits(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
    kind: str,
) -> None:
    session_id, browser = await open_session(client, admin_headers, clock)
    before = await charges(redis, settings)

    r = await client.post(
        f"{URL}/{session_id}/confirm", json=card(cvc=spelled("123", kind)), headers=browser
    )

    assert_refused(r, "payment_method.cvc", spelled("123", kind))
    assert await charges(redis, settings) == before


@pytest.mark.parametrize("field", ["exp_month", "exp_year"])
async def test_confirm_refuses_an_expiry_written_as_text(
    client: Client, admin_headers: dict[str, str], clock: ManualClock, field: str
) -> None:
    session_id, browser = await open_session(client, admin_headers, clock)
    value = spelled("12" if field == "exp_month" else "2040", "full_width")

    r = await client.post(
        f"{URL}/{session_id}/confirm", json=card(**{field: value}), headers=browser
    )

    assert_refused(r, f"payment_method.{field}", value)


@pytest.mark.parametrize("kind", sorted(DIGIT_KINDS))
async def test_wallet_refuses_to_save_a_card_in_non_ascii_digits(
    client: Client, admin_headers: dict[str, str], clock: ManualClock, kind: str
) -> None:
    session_id, wallet = await open_session(
        client, admin_headers, clock, scope="wallet", customer_id=f"cust_digits_{kind}"
    )
    base = f"{URL}/{session_id}/payment-methods"
    number = spelled("4242 4242 4242 4242", kind)

    r = await client.post(base, json=card(number)["payment_method"], headers=wallet)

    assert_refused(r, "number", number)  # the body is the card itself
    assert (await client.get(base, headers=wallet)).json()["data"] == []
