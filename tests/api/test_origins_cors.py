"""Origins and CORS of the browser endpoints through the real app: preflights answered from
the path alone, CORS headers on actual responses (errors too), account-allowed origins set
through PATCH /v1/account/settings, and no CORS on the merchant endpoints."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import msgspec
import pytest
from litestar.routes import HTTPRoute
from litestar.utils import normalize_path

from services.api.app import create_app
from services.api.auth.browser import require_client_secret
from services.api.browser_policy import ALLOW_HEADERS, browser_route
from services.api.lifespan import attach, build_services
from shared.clock import ManualClock
from shared.config import Settings
from tests.support.checkout import card, open_session
from tests.support.sessions import SESSIONS_URL as URL

SHOP = "https://example.com"  # the seed body's success and cancel pages
CHECKOUT = "https://checkout.govifi.com"  # HS_PUBLIC_BASE_URL's default
EVIL = "https://evil.example"
EMBED = "https://shop.example.org"
SETTINGS_URL = "/v1/account/settings"


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


def assert_refused(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "origin_not_allowed"
    assert r.json()["recoverable"] is False
    assert r.json()["request_id"] == r.headers["x-request-id"]
    assert "access-control-allow-origin" not in r.headers


async def test_preflight_from_an_allowed_origin(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    session_id, _ = await open_session(client, admin_headers, clock)
    for origin in (SHOP, CHECKOUT, "https://EXAMPLE.com:443"):
        r = await client.options(f"{URL}/{session_id}/confirm", headers=preflight(origin))
        assert r.status_code == 204, r.text
        assert r.headers["access-control-allow-origin"] == origin  # echoed, never *
        assert r.headers["vary"] == "Origin"
        assert r.headers["access-control-allow-methods"] == "POST"
        assert r.headers["access-control-allow-headers"] == ALLOW_HEADERS
        assert r.headers["access-control-max-age"] == "600"
        assert "access-control-allow-credentials" not in r.headers
        assert r.content == b""
    expected = {
        "config": "GET",
        "quote-fee": "POST",
        "challenge": "POST",
        "challenge/verify": "POST",
        "payment-methods": "GET, POST",
        "payment-methods/pm_123": "DELETE",
    }
    for action, methods in expected.items():
        r = await client.options(f"{URL}/{session_id}/{action}", headers=preflight(SHOP))
        assert r.status_code == 204, (action, r.text)
        assert r.headers["access-control-allow-methods"] == methods


async def test_preflight_refused_for_other_origins_and_unknown_sessions_alike(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    session_id, _ = await open_session(client, admin_headers, clock)
    refused = [
        await client.options(f"{URL}/{session_id}/confirm", headers=preflight(EVIL)),
        await client.options(f"{URL}/{session_id}/config", headers=preflight("null", "GET")),
        await client.options(
            f"{URL}/{session_id}/config", headers=preflight("https://[::1", "GET")
        ),
        # A subdomain or another port of an allowed origin is another origin.
        await client.options(
            f"{URL}/{session_id}/config", headers=preflight("https://a.example.com")
        ),
        await client.options(f"{URL}/{session_id}/config", headers=preflight(f"{SHOP}:8443")),
    ]
    # An unknown (well-formed) id and a malformed one answer exactly like a refused origin:
    # a preflight tells nothing about which sessions exist.
    unknown = "cs_0" + "A" * 15
    refused.append(await client.options(f"{URL}/{unknown}/confirm", headers=preflight(SHOP)))
    refused.append(await client.options(f"{URL}/nope/confirm", headers=preflight(SHOP)))
    for r in refused:
        assert_refused(r)
    bodies = {(r.status_code, r.json()["code"], r.json()["message"]) for r in refused}
    assert len(bodies) == 1


async def test_actual_responses_carry_cors_headers_for_allowed_origins_errors_included(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    session_id, browser = await open_session(client, admin_headers, clock)
    from_shop = {**browser, "Origin": SHOP}

    def assert_cors(r: httpx.Response, status: int) -> None:
        assert r.status_code == status, r.text
        assert r.headers["access-control-allow-origin"] == SHOP
        assert r.headers["vary"] == "Origin"
        assert "retry-after" in r.headers["access-control-expose-headers"]
        assert "x-request-id" in r.headers["access-control-expose-headers"]

    assert_cors(await client.get(f"{URL}/{session_id}/config", headers=from_shop), 200)
    # Errors decided before the guard looked at the origin: the page still reads them.
    assert_cors(await client.get(f"{URL}/{session_id}/config", headers={"Origin": SHOP}), 401)
    wrong = {"Authorization": browser["Authorization"][:-3] + "abc", "Origin": SHOP}
    assert_cors(await client.get(f"{URL}/{session_id}/config", headers=wrong), 401)
    declined = await client.post(
        f"{URL}/{session_id}/confirm", json=card("4000000000000002"), headers=from_shop
    )
    assert_cors(declined, 402)
    body = {"payment_method": {"type": "card"}}
    assert_cors(await client.post(f"{URL}/{session_id}/confirm", json=body, headers=from_shop), 400)
    wallet_id, wallet = await open_session(client, admin_headers, clock, scope="wallet")
    r = await client.post(
        f"{URL}/{wallet_id}/confirm", json=card(), headers={**wallet, "Origin": SHOP}
    )
    assert_cors(r, 403)
    assert r.json()["code"] == "insufficient_scope"

    # From another origin: refused, and nothing tells the page it may read the answer.
    r = await client.get(f"{URL}/{session_id}/config", headers={**browser, "Origin": EVIL})
    assert_refused(r)
    assert r.headers["vary"] == "Origin"
    r = await client.get(f"{URL}/{session_id}/config", headers={"Origin": EVIL})
    assert r.status_code == 401
    assert "access-control-allow-origin" not in r.headers
    # Without Origin (same-origin GET, server tools): no CORS headers, still Vary.
    r = await client.get(f"{URL}/{session_id}/config", headers=browser)
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
    assert r.headers["vary"] == "Origin"

    clock.advance(1801)  # expired: the page must be able to show it
    assert_cors(await client.get(f"{URL}/{session_id}/config", headers=from_shop), 410)


async def test_merchant_endpoints_get_no_cors(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    session_id, _ = await open_session(client, admin_headers, clock)
    for path in (f"{URL}/{session_id}", URL, f"{URL}/{session_id}/expire", SETTINGS_URL):
        r = await client.options(path, headers=preflight(SHOP))
        assert "access-control-allow-origin" not in r.headers, path
    r = await client.get(f"{URL}/{session_id}", headers={**admin_headers, "Origin": SHOP})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
    assert "vary" not in r.headers


async def test_account_allowed_origins_from_settings(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    session_id, browser = await open_session(client, admin_headers, clock)
    from_embed = {**browser, "Origin": EMBED}
    assert_refused(await client.get(f"{URL}/{session_id}/config", headers=from_embed))
    assert_refused(await client.options(f"{URL}/{session_id}/config", headers=preflight(EMBED)))

    origins = ["https://Shop.Example.org:443", "http://localhost:3000", "https://shop.example.org"]
    r = await client.patch(
        SETTINGS_URL, json={"origins": {"allowed_origins": origins}}, headers=admin_headers
    )
    assert r.status_code == 200, r.text
    # The change applies at once in this process (the cache is dropped on PATCH).
    r = await client.get(f"{URL}/{session_id}/config", headers=from_embed)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == EMBED
    r = await client.options(f"{URL}/{session_id}/confirm", headers=preflight(EMBED))
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == EMBED
    local = {**browser, "Origin": "http://localhost:3000"}
    assert (await client.get(f"{URL}/{session_id}/config", headers=local)).status_code == 200
    # Other settings changes keep the list; an empty list clears it.
    risk = {"risk": {"elevated_threshold": 41}}
    assert (await client.patch(SETTINGS_URL, json=risk, headers=admin_headers)).status_code == 200
    assert (await client.get(f"{URL}/{session_id}/config", headers=from_embed)).status_code == 200
    clear: dict[str, Any] = {"origins": {"allowed_origins": []}}
    assert (await client.patch(SETTINGS_URL, json=clear, headers=admin_headers)).status_code == 200
    assert_refused(await client.get(f"{URL}/{session_id}/config", headers=from_embed))
    # The session's own origins never depended on the list.
    ok = {**browser, "Origin": SHOP}
    assert (await client.get(f"{URL}/{session_id}/config", headers=ok)).status_code == 200


@pytest.mark.parametrize(
    ("origins", "status", "fragment"),
    [
        (["https://shop.example.org/checkout"], 400, "origins.allowed_origins"),
        (["https://*.example.org"], 400, "origins.allowed_origins"),
        (["ftp://shop.example.org"], 400, "origins.allowed_origins"),
        (["https://user@shop.example.org"], 400, "origins.allowed_origins"),
        ([f"https://s{n}.example.org" for n in range(21)], 400, "origins.allowed_origins"),
        (["https://ok.example.org", "http://shop.example.org"], 422, "allowed_origins[1]"),
        (["https://shop.example.org:0"], 422, "port"),
        (["https://shop.example.org:70000"], 422, "port"),
    ],
)
async def test_account_origins_are_validated(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    origins: list[str],
    status: int,
    fragment: str,
) -> None:
    body = {"origins": {"allowed_origins": origins}}
    r = await client.patch(SETTINGS_URL, json=body, headers=admin_headers)
    assert r.status_code == status, r.text
    assert r.json()["code"] == "validation_error"
    assert fragment in r.json()["message"]


async def test_other_processes_see_an_origin_change_within_the_cache_time(
    settings: Settings, clock: ManualClock, admin_headers: dict[str, str]
) -> None:
    tuned = msgspec.structs.replace(settings, origin_cache_seconds=0.3)
    apps = [create_app(tuned, clock=clock) for _ in range(2)]
    services = [build_services(tuned, clock) for _ in apps]
    for app, state in zip(apps, services, strict=True):
        attach(app, state)
    try:
        one, two = (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")  # type: ignore[arg-type]
            for app in apps
        )
        async with one, two:
            session_id, browser = await open_session(one, admin_headers, clock)
            from_embed = {**browser, "Origin": EMBED}
            assert_refused(await two.get(f"{URL}/{session_id}/config", headers=from_embed))
            body = {"origins": {"allowed_origins": [EMBED]}}
            r = await one.patch(SETTINGS_URL, json=body, headers=admin_headers)
            assert r.status_code == 200
            # The other process still holds the list it read (at most the cache time).
            assert_refused(await two.get(f"{URL}/{session_id}/config", headers=from_embed))
            await asyncio.sleep(0.35)
            r = await two.get(f"{URL}/{session_id}/config", headers=from_embed)
            assert r.status_code == 200, r.text
    finally:
        for state in services:
            await state.aclose()


def test_every_browser_route_gets_cors_and_the_session_limit(settings: Settings) -> None:
    """A browser route the policy does not know, or one that sets its own before_request
    (which would replace the app's), would silently lose CORS or its per-session limit."""
    app = create_app(settings)
    hook = app.before_request
    assert hook is not None
    seen = 0
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path = re.sub(
            r"\{(\w+):\w+\}",
            lambda m: f"cs_0{'a' * 15}" if m[1] == "session_id" else "x",
            route.path,
        )
        for handler in route.route_handlers:
            guarded = require_client_secret in handler.resolve_guards()
            if guarded:
                seen += 1
                assert browser_route(path) is not None, path
                assert handler.resolve_before_request() is hook, path
            elif "OPTIONS" not in handler.http_methods:
                assert browser_route(path) is None, path
    assert seen >= 8  # config, confirm, challenge x2, quote-fee, wallet x3


def test_the_policy_reads_paths_as_the_router_does(settings: Settings) -> None:
    """Every spelling the router dispatches to a browser handler gets that handler's policy
    (a doubled or leading slash once reached confirm without CORS or any limit), and no
    spelling of another route is taken for a browser one."""
    app = create_app(settings)
    router = app.asgi_router
    checked = 0
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path = re.sub(
            r"\{(\w+):\w+\}",
            lambda m: f"cs_0{'a' * 15}" if m[1] == "session_id" else "pm_x",
            route.path,
        )
        inner = path.strip("/")
        spellings = [
            path,
            f"//{inner}",
            f"/{inner}/",
            f"/{inner}//",
            f"///{inner.replace('/', '//')}",
            f"/{inner.replace('/', '///')}///",
        ]
        for handler in route.route_handlers:
            if "OPTIONS" in handler.http_methods and len(handler.http_methods) == 1:
                continue
            method = sorted(handler.http_methods)[0]
            browser = require_client_secret in handler.resolve_guards()
            for spelling in spellings:
                # What Litestar's ASGIRouter does with scope["path"].
                _, matched, _, _, template = router.handle_routing(normalize_path(spelling), method)
                assert matched is handler, spelling
                policy = browser_route(spelling)
                if browser:
                    assert policy is not None, spelling
                    assert policy.template == re.sub(r":\w+\}", "}", template), spelling
                    checked += 1
                else:
                    assert policy is None, spelling
    assert checked >= 8 * 6
