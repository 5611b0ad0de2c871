"""Bad input at the edges: bytes that are not UTF-8, nesting deeper than any schema, stream
cursors out of range. Each answers a 400 `validation_error` envelope and changes nothing;
none may reach the catch-all 500 (issue 12, hole 5)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from shared.clock import ManualClock
from tests.support.checkout import open_session
from tests.support.sessions import SESSIONS_URL as URL

Client = AsyncTestClient[Any]
# A well-formed endpoint id that no endpoint has (a malformed one is a 404 before its body).
ENDPOINT = "we_" + "0" * 24
ENVELOPE_KEYS = {"code", "message", "recoverable", "request_id"}

# A JSON string holding a byte that never starts a UTF-8 sequence, and one holding an encoded
# UTF-16 surrogate (CESU-8), which UTF-8 forbids. msgspec raises UnicodeDecodeError for both,
# not a DecodeError, so neither was seen as "not valid JSON".
BAD_UTF8_BODIES = {
    "0xff in a key": b'{%s"\xff": 1}',
    "surrogate in a key": b'{%s"\xed\xa0\x80": 1}',
}
# Every route whose body is decoded by services/api/body.py (and account settings, which had
# Litestar's lenient decoder): (method, path with {sid} / {wallet_sid}, surface).
BODY_ROUTES = [
    ("POST", "/v1/hosted-sessions", "admin"),
    ("PATCH", "/v1/hosted-sessions/{sid}", "admin"),
    ("PATCH", "/v1/account/settings", "admin"),
    ("POST", "/v1/webhook-endpoints", "admin"),
    ("PATCH", f"/v1/webhook-endpoints/{ENDPOINT}", "admin"),
    ("POST", "/v1/hosted-sessions/{sid}/confirm", "payment"),
    ("POST", "/v1/hosted-sessions/{sid}/quote-fee", "payment"),
    ("POST", "/v1/hosted-sessions/{sid}/challenge/verify", "payment"),
    ("POST", "/v1/hosted-sessions/{wallet_sid}/payment-methods", "wallet"),
]
# A card body is looked up by its tag first: the decoder reaches the bad key only after it.
LEADING_FIELDS = {"wallet": b'"type": "card", '}


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
    body = raw % LEADING_FIELDS.get(surface, b"")
    r = await client.request(method, path.format(**surfaces["ids"]), content=body, headers=headers)
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


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/v1/hosted-sessions", {"GET", "POST", "OPTIONS"}),
        ("/v1/hosted-sessions/{sid}", {"GET", "PATCH", "OPTIONS"}),
        ("/v1/account/settings", {"GET", "PATCH", "OPTIONS"}),
        (f"/v1/webhook-endpoints/{ENDPOINT}", {"GET", "PATCH", "DELETE", "OPTIONS"}),
        ("/v1/hosted-sessions/{wallet_sid}/payment-methods", {"GET", "POST", "OPTIONS"}),
    ],
)
@pytest.mark.parametrize("method", ["TRACE", "OPTIONS"])
async def test_allow_names_every_method_of_the_path(
    client: Client, surfaces: dict[str, Any], path: str, methods: set[str], method: str
) -> None:
    """RFC 9110: a 405 lists the path's methods in `Allow` (the envelope dropped the header),
    and so does the answer to OPTIONS (Litestar 2 listed only the methods of a path's first
    registration: litestar-org/litestar#4169)."""
    url = path.format(**surfaces["ids"])
    headers = surfaces["wallet" if "payment-methods" in path else "admin"]
    r = await client.request(method, url, headers=headers)
    if method == "TRACE":
        assert r.status_code == 405, r.text
        assert r.json()["code"] == "validation_error"
    else:
        assert r.status_code == 204, r.text
    assert set(r.headers.get("allow", "").replace(" ", "").split(",")) == methods


async def test_saving_a_card_needs_its_type_as_the_document_says(
    client: Client, surfaces: dict[str, Any]
) -> None:
    """The body's `type` is required in the OpenAPI document; msgspec let a lone tagged struct
    go without it, so a card saved without it (the contract fuzz found it)."""
    url = f"{URL}/{surfaces['ids']['wallet_sid']}/payment-methods"
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"}
    r = await client.post(url, json=card, headers=surfaces["wallet"])
    assert_400(r, naming="type")
    listed = await client.get(url, headers=surfaces["wallet"])
    assert listed.json()["data"] == []
    r = await client.post(url, json={**card, "type": "card"}, headers=surfaces["wallet"])
    assert r.status_code == 201, r.text
