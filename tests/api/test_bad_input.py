"""Bad input at the edges: bytes that are not UTF-8, nesting deeper than any schema, stream
cursors out of range. Each answers a 400 `validation_error` envelope and changes nothing;
none may reach the catch-all 500 (issue 12, hole 5)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from shared.clock import ManualClock
from tests.api.test_checkout import URL, open_session

Client = AsyncTestClient[Any]
ENVELOPE_KEYS = {"code", "message", "recoverable", "request_id"}

# A JSON string holding a byte that never starts a UTF-8 sequence, and one holding an encoded
# UTF-16 surrogate (CESU-8), which UTF-8 forbids. msgspec raises UnicodeDecodeError for both,
# not a DecodeError, so neither was seen as "not valid JSON".
BAD_UTF8_BODIES = {
    "0xff in a key": b'{"\xff": 1}',
    "surrogate in a key": b'{"\xed\xa0\x80": 1}',
}
# Every route whose body is decoded by services/api/body.py (and account settings, which had
# Litestar's lenient decoder): (method, path with {sid} / {wallet_sid}, surface).
BODY_ROUTES = [
    ("POST", "/v1/hosted-sessions", "admin"),
    ("PATCH", "/v1/hosted-sessions/{sid}", "admin"),
    ("PATCH", "/v1/account/settings", "admin"),
    ("POST", "/v1/webhook-endpoints", "admin"),
    ("PATCH", "/v1/webhook-endpoints/we_0000000000000000", "admin"),
    ("POST", "/v1/hosted-sessions/{sid}/confirm", "payment"),
    ("POST", "/v1/hosted-sessions/{sid}/quote-fee", "payment"),
    ("POST", "/v1/hosted-sessions/{sid}/challenge/verify", "payment"),
    ("POST", "/v1/hosted-sessions/{wallet_sid}/payment-methods", "wallet"),
]


def assert_400(r: Any, *, naming: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["code"] == "validation_error"
    assert body["recoverable"] is False
    assert naming in body["message"], body["message"]


@pytest.fixture
async def surfaces(
    client: Client, admin_headers: dict[str, str], clock: ManualClock
) -> dict[str, Any]:
    """Credentials for each surface and the ids the paths need."""
    sid, payment = await open_session(client, admin_headers, clock)
    wallet_sid, wallet = await open_session(
        client, admin_headers, clock, scope="wallet", customer_id="cust_bad_input"
    )
    return {
        "ids": {"sid": sid, "wallet_sid": wallet_sid},
        "admin": admin_headers,
        "payment": payment,
        "wallet": wallet,
    }


@pytest.mark.parametrize(("method", "path", "surface"), BODY_ROUTES)
@pytest.mark.parametrize("raw", BAD_UTF8_BODIES.values(), ids=BAD_UTF8_BODIES.keys())
async def test_a_body_that_is_not_utf8_is_a_400_on_every_body_route(
    client: Client, surfaces: dict[str, Any], method: str, path: str, surface: str, raw: bytes
) -> None:
    headers = {**surfaces[surface], "Content-Type": "application/json"}
    r = await client.request(method, path.format(**surfaces["ids"]), content=raw, headers=headers)
    assert_400(r, naming="UTF-8")


async def test_invalid_utf8_inside_a_known_string_field_changes_nothing(
    client: Client, surfaces: dict[str, Any]
) -> None:
    """The value case: the decoder gets into the field's string before it fails."""
    admin = {**surfaces["admin"], "Content-Type": "application/json"}
    sid = surfaces["ids"]["sid"]
    before = (await client.get(f"{URL}/{sid}", headers=admin)).json()
    for raw in (b'{"description": "caf\xe9"}', b'{"description": "\xed\xa0\x80"}'):
        r = await client.patch(f"{URL}/{sid}", content=raw, headers=admin)
        assert_400(r, naming="UTF-8")
        r = await client.post(URL, content=raw, headers=admin)
        assert_400(r, naming="UTF-8")
    assert (await client.get(f"{URL}/{sid}", headers=admin)).json() == before
    listed = (await client.get(URL, headers=admin, params={"limit": 100})).json()["data"]
    assert len(listed) == 2  # the fixture's two sessions, no third


@pytest.mark.parametrize(
    "raw",
    [b"[" * 5000 + b"]" * 5000, b'{"risk":' * 3000 + b"1" + b"}" * 3000, b'{"a":' * 3000],
    ids=["arrays", "objects", "unterminated"],
)
async def test_account_settings_refuse_deep_nesting_and_keep_their_values(
    client: Client, admin_headers: dict[str, str], raw: bytes
) -> None:
    path = "/v1/account/settings"
    before = (await client.get(path, headers=admin_headers)).json()
    headers = {**admin_headers, "Content-Type": "application/json"}
    r = await client.patch(path, content=raw, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "validation_error"
    assert (await client.get(path, headers=admin_headers)).json() == before


async def test_account_settings_are_decoded_strictly_like_every_other_body(
    client: Client, admin_headers: dict[str, str]
) -> None:
    """A number in a string is refused (it used to be converted), naming the field."""
    path = "/v1/account/settings"
    r = await client.patch(path, json={"risk": {"elevated_threshold": "40"}}, headers=admin_headers)
    assert_400(r, naming="risk.elevated_threshold")
    r = await client.patch(path, json={"risk": {"elevated_threshold": 40}}, headers=admin_headers)
    assert r.status_code == 200, r.text
    assert r.json()["risk"]["elevated_threshold"] == 40


MAX = 2**64 - 1


@pytest.mark.parametrize(
    "cursor",
    [
        f"{MAX + 1}-0",
        f"0-{MAX + 1}",
        "99999999999999999999-0",  # 20 digits: the pattern's length, past 2**64 - 1
        "1-99999999999999999999",
        "99999999999999999999999-0",
        "1-99999999999999999999999",
        "-1-0",
        "1--1",
        "1-",
        "1",
        "garbage",
        "",
        "\uff11-\uff11",  # fullwidth digits: Python's \d and int() take them, Redis does not
    ],
)
async def test_events_cursor_out_of_range_or_malformed_is_a_400(
    client: Client, admin_headers: dict[str, str], cursor: str
) -> None:
    r = await client.get("/v1/events", params={"starting_after": cursor}, headers=admin_headers)
    assert_400(r, naming="starting_after")


async def test_events_cursor_bounds_are_valid_positions(
    client: Client, admin_headers: dict[str, str], surfaces: dict[str, Any]
) -> None:
    """`starting_after` lists events older than the position: nothing is older than 0-0 (an
    empty last page), everything is older than the largest id (the first page)."""
    first = await client.get("/v1/events", headers=admin_headers)
    assert first.status_code == 200, first.text
    assert first.json()["data"]
    r = await client.get("/v1/events", params={"starting_after": "0-0"}, headers=admin_headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"object": "list", "data": [], "has_more": False, "next_cursor": None}
    r = await client.get(
        "/v1/events", params={"starting_after": f"{MAX}-{MAX}"}, headers=admin_headers
    )
    assert r.status_code == 200, r.text
    assert r.json() == first.json()
