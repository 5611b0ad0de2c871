"""Rate limits and the card-testing guard through the real app on the real Redis: per session
(verified credentials only), per client address (X-Forwarded-For only through trusted hops),
429 `rate_limited` with Retry-After, and declines counted per card and address across
sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from services.api.app import create_app
from services.api.lifespan import attach, build_services
from shared.clock import ManualClock
from shared.config import Settings
from tests.support.checkout import card, charges, open_session
from tests.support.sessions import SESSIONS_URL as URL

DECLINE = "4000000000000002"
Serve = Callable[..., Any]


@pytest.fixture
def serve(settings: Settings, clock: ManualClock) -> Serve:
    """`async with serve(("203.0.113.5", "198.51.100.9"), **settings) as (a, b)`: one app with
    those settings, one client per peer address (the ASGI scope's `client`)."""

    @asynccontextmanager
    async def running(
        addresses: tuple[str, ...] = ("203.0.113.5",), **overrides: Any
    ) -> AsyncIterator[list[httpx.AsyncClient]]:
        tuned = msgspec.structs.replace(settings, **overrides)
        app = create_app(tuned, clock=clock)
        services = build_services(tuned, clock)
        attach(app, services)
        try:
            async with AsyncExitStack() as stack:
                clients = []
                for address in addresses:
                    transport = httpx.ASGITransport(app=app, client=(address, 50_000))  # type: ignore[arg-type]
                    client = httpx.AsyncClient(transport=transport, base_url="http://api")
                    clients.append(await stack.enter_async_context(client))
                yield clients
        finally:
            await services.aclose()

    return running


def assert_limited(r: httpx.Response, retry_after: int | None = None) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "rate_limited"
    assert r.json()["recoverable"] is True
    assert r.json()["request_id"] == r.headers["x-request-id"]
    seconds = int(r.headers["retry-after"])
    assert seconds >= 1
    if retry_after is not None:
        assert seconds == retry_after


async def test_reads_are_limited_per_session_and_reset(
    serve: Serve, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    async with serve(rate_limit_reads_per_session=3) as [client]:
        session_id, browser = await open_session(client, admin_headers, clock)
        other_id, other = await open_session(client, admin_headers, clock)
        config = f"{URL}/{session_id}/config"
        for _ in range(3):
            assert (await client.get(config, headers=browser)).status_code == 200
        r = await client.get(config, headers={**browser, "Origin": "https://example.com"})
        assert_limited(r, retry_after=20)  # 3 a minute: the next is due in 20 s
        # The page can read the 429 and its Retry-After.
        assert r.headers["access-control-allow-origin"] == "https://example.com"
        # Per session: another session of the same shopper is unaffected.
        assert (await client.get(f"{URL}/{other_id}/config", headers=other)).status_code == 200
        # The merchant's side has no browser limits.
        assert (await client.get(f"{URL}/{session_id}", headers=admin_headers)).status_code == 200
        clock.advance(20)
        assert (await client.get(config, headers=browser)).status_code == 200
        assert_limited(await client.get(config, headers=browser))


async def test_only_verified_credentials_spend_a_sessions_budget(
    serve: Serve, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    async with serve(("203.0.113.5", "198.51.100.9"), rate_limit_reads_per_session=3) as [
        shopper,
        attacker,
    ]:
        session_id, browser = await open_session(shopper, admin_headers, clock)
        config = f"{URL}/{session_id}/config"
        # Someone who knows the id but not the secret cannot lock the shopper out.
        forged = {"Authorization": f"Bearer {session_id}_secret_{'x' * 32}"}
        for _ in range(10):
            assert (await attacker.get(config, headers=forged)).status_code == 401
        for _ in range(3):
            assert (await shopper.get(config, headers=browser)).status_code == 200


async def test_confirms_are_limited_per_session(
    serve: Serve,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
) -> None:
    async with serve(rate_limit_confirms_per_session=2) as [client]:
        session_id, browser = await open_session(client, admin_headers, clock)
        confirm = f"{URL}/{session_id}/confirm"
        for number in (DECLINE, "4000000000009995"):
            assert (
                await client.post(confirm, json=card(number), headers=browser)
            ).status_code == 402
        before = await charges(redis, settings)
        assert_limited(await client.post(confirm, json=card(), headers=browser), retry_after=30)
        assert await charges(redis, settings) == before  # refused before any charge
        # Another customer's session (the same card and amount of one customer would be a
        # duplicate payment).
        other_id, other = await open_session(client, admin_headers, clock, customer_id="c2")
        r = await client.post(f"{URL}/{other_id}/confirm", json=card(), headers=other)
        assert r.status_code == 200, r.text
        clock.advance(30)
        assert (await client.post(confirm, json=card(), headers=browser)).status_code == 200


async def test_challenges_are_limited_per_session(
    serve: Serve, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    async with serve(rate_limit_challenges_per_session=2) as [client]:
        session_id, browser = await open_session(client, admin_headers, clock)
        # A normal-risk session needs no code (400), but every call counts: sends and
        # verifies share the budget.
        r = await client.post(f"{URL}/{session_id}/challenge", headers=browser)
        assert r.status_code == 400
        verify = f"{URL}/{session_id}/challenge/verify"
        assert (
            await client.post(verify, json={"code": "123456"}, headers=browser)
        ).status_code == 400
        assert_limited(await client.post(verify, json={"code": "123456"}, headers=browser))
        # Reads have their own budget.
        assert (await client.get(f"{URL}/{session_id}/config", headers=browser)).status_code == 200


async def test_calls_are_limited_per_client_address(
    serve: Serve, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    async with serve(("203.0.113.5", "198.51.100.9"), rate_limit_reads_per_ip=4) as [
        busy,
        other,
    ]:
        sessions = [await open_session(busy, admin_headers, clock) for _ in range(3)]
        calls = [
            await busy.get(f"{URL}/{sid}/config", headers=browser) for sid, browser in sessions
        ]
        # Unauthenticated calls and preflights count too: this limit runs before the guard.
        calls.append(await busy.get(f"{URL}/{sessions[0][0]}/config"))
        assert [r.status_code for r in calls] == [200, 200, 200, 401]
        assert_limited(await busy.get(f"{URL}/{sessions[1][0]}/config", headers=sessions[1][1]))
        preflight = {"Origin": "https://example.com", "Access-Control-Request-Method": "GET"}
        assert_limited(await busy.options(f"{URL}/{sessions[1][0]}/config", headers=preflight))
        # Answered before routing, still counted under the route's template.
        metrics = (await busy.get("/metrics")).text
        preflight_429 = 'method="OPTIONS",route="/v1/hosted-sessions/{session_id}/config"'
        assert preflight_429 + ',status="429"' in metrics
        # Another address is unaffected, and so are confirms (their own budget).
        sid, browser = sessions[2]
        assert (await other.get(f"{URL}/{sid}/config", headers=browser)).status_code == 200
        r = await busy.post(f"{URL}/{sid}/confirm", json=card(), headers=browser)
        assert r.status_code == 200, r.text


async def test_forwarded_for_is_trusted_only_through_configured_hops(
    serve: Serve, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    # One load balancer of ours in front (peer 10.0.0.2): it appends the address it saw.
    async with serve(("10.0.0.2",), trusted_proxy_hops=1, rate_limit_reads_per_ip=2) as [lb]:
        sid, browser = await open_session(lb, admin_headers, clock)
        config = f"{URL}/{sid}/config"

        def via_lb(client_wrote: str, lb_saw: str) -> dict[str, str]:
            prefix = f"{client_wrote}, " if client_wrote else ""
            return {**browser, "X-Forwarded-For": f"{prefix}{lb_saw}"}

        # What the client writes itself (left of the balancer's entry) changes nothing.
        assert (await lb.get(config, headers=via_lb("1.1.1.1", "203.0.113.7"))).status_code == 200
        assert (await lb.get(config, headers=via_lb("2.2.2.2", "203.0.113.7"))).status_code == 200
        assert_limited(await lb.get(config, headers=via_lb("3.3.3.3", "203.0.113.7")))
        assert (await lb.get(config, headers=via_lb("", "203.0.113.8"))).status_code == 200

    # Without trusted hops the header is ignored: every call is the peer's.
    async with serve(("10.0.0.3",), rate_limit_reads_per_ip=2) as [direct]:
        sid, browser = await open_session(direct, admin_headers, clock)
        config = f"{URL}/{sid}/config"
        for n in range(2):
            r = await direct.get(config, headers={**browser, "X-Forwarded-For": f"203.0.113.{n}"})
            assert r.status_code == 200
        assert_limited(
            await direct.get(config, headers={**browser, "X-Forwarded-For": "203.0.113.99"})
        )


async def test_card_testing_by_fingerprint_across_sessions(
    serve: Serve,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
) -> None:
    # Defaults: 5 declines per card per hour within an account, 10 per address.
    async with serve(("203.0.113.5", "198.51.100.9")) as [first, second]:
        sid, browser = await open_session(first, admin_headers, clock)
        for _ in range(5):
            r = await first.post(f"{URL}/{sid}/confirm", json=card(DECLINE), headers=browser)
            assert r.status_code == 402, r.text
        # A new session, from another address: the same card is refused before any charge.
        sid2, browser2 = await open_session(second, admin_headers, clock)
        before = await charges(redis, settings)
        r = await second.post(f"{URL}/{sid2}/confirm", json=card(DECLINE), headers=browser2)
        assert_limited(r, retry_after=720)  # one decline's worth of the hour: 3600 s / 5
        assert await charges(redis, settings) == before
        # Another card still pays; the guard never counts successes.
        r = await second.post(f"{URL}/{sid2}/confirm", json=card(), headers=browser2)
        assert r.status_code == 200, r.text
        clock.advance(720)
        sid3, browser3 = await open_session(second, admin_headers, clock)
        r = await second.post(f"{URL}/{sid3}/confirm", json=card(DECLINE), headers=browser3)
        assert r.status_code == 402


async def test_card_testing_by_address_across_cards_and_sessions(
    serve: Serve, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    async with serve(("203.0.113.5", "198.51.100.9"), card_testing_failures_per_ip=3) as [
        tester,
        shopper,
    ]:
        declining = ["4000000000000002", "4000000000009995", "4000000000000127"]
        for number in declining:
            sid, browser = await open_session(tester, admin_headers, clock)
            r = await tester.post(f"{URL}/{sid}/confirm", json=card(number), headers=browser)
            assert r.status_code == 402, r.text
        sid, browser = await open_session(tester, admin_headers, clock)
        assert_limited(
            await tester.post(
                f"{URL}/{sid}/confirm", json=card("4000000000000069"), headers=browser
            )
        )
        # Processing errors are the processor's fault, not a card test: never counted, and
        # another address is judged on its own.
        sid, browser = await open_session(shopper, admin_headers, clock)
        r = await shopper.post(
            f"{URL}/{sid}/confirm", json=card("4000000000000069"), headers=browser
        )
        assert r.status_code == 402
        for _ in range(3):
            r = await shopper.post(
                f"{URL}/{sid}/confirm", json=card("4000000000000119"), headers=browser
            )
            assert r.status_code == 502
        r = await shopper.post(f"{URL}/{sid}/confirm", json=card(), headers=browser)
        assert r.status_code == 200, r.text


def path_variants(session_id: str, action: str) -> list[str]:
    """Spellings of one browser path that Litestar's router dispatches to the same handler
    (it strips slashes at both ends and collapses runs of them; the server decodes %2F)."""
    return [
        f"{URL}/{session_id}//{action}",
        # Absolute: a relative `//v1/...` would name a host.
        f"http://api/{URL}/{session_id}/{action}",
        f"/v1//hosted-sessions/{session_id}/{action}",
        f"{URL}/{session_id}/{action}//",
        f"{URL}/{session_id}%2F%2F{action}",
    ]


async def test_every_spelling_of_a_browser_path_is_limited_per_address(
    serve: Serve, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    variants = path_variants("{sid}", "config")
    async with serve(rate_limit_reads_per_ip=len(variants)) as [client]:
        sid, browser = await open_session(client, admin_headers, clock)
        for path in variants:
            r = await client.get(path.format(sid=sid), headers=browser)
            assert r.status_code == 200, (path, r.text)
        for path in variants:
            assert_limited(await client.get(path.format(sid=sid), headers=browser))
    confirms = path_variants("{sid}", "confirm")
    addresses = tuple(f"203.0.113.{n}" for n in range(10, 10 + len(confirms)))
    async with serve(addresses, rate_limit_confirms_per_ip=1) as clients:
        for client, path in zip(clients, confirms, strict=True):
            sid, browser = await open_session(client, admin_headers, clock)
            r = await client.post(f"{URL}/{sid}/confirm", json=card(DECLINE), headers=browser)
            assert r.status_code == 402, r.text
            r = await client.post(path.format(sid=sid), json=card(), headers=browser)
            assert_limited(r)


async def test_every_spelling_of_a_browser_path_is_limited_per_session(
    serve: Serve, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    variants = path_variants("{sid}", "quote-fee")
    async with serve(rate_limit_reads_per_session=len(variants)) as [client]:
        sid, browser = await open_session(client, admin_headers, clock)
        body = {"payment_method_type": "card"}
        for path in variants:
            r = await client.post(path.format(sid=sid), json=body, headers=browser)
            assert r.status_code == 201, (path, r.text)
        assert_limited(await client.get(f"{URL}/{sid}/config", headers=browser))
        for path in path_variants(sid, "config"):
            assert_limited(await client.get(path, headers=browser))


async def test_every_spelling_of_a_browser_path_gets_cors_and_vary(
    serve: Serve, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    shop = {"Origin": "https://example.com"}
    async with serve() as [client]:
        sid, browser = await open_session(client, admin_headers, clock)
        for path in path_variants(sid, "config"):
            r = await client.get(path, headers={**browser, **shop})
            assert r.status_code == 200, (path, r.text)
            assert r.headers["vary"] == "Origin", path
            assert r.headers["access-control-allow-origin"] == "https://example.com", path
            r = await client.options(path, headers={**shop, "Access-Control-Request-Method": "GET"})
            assert r.status_code == 204, (path, r.text)
            assert r.headers["access-control-allow-methods"] == "GET", path


async def test_card_testing_counts_declines_by_address_on_every_spelling(
    serve: Serve, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    variants = path_variants("{sid}", "confirm")
    async with serve(card_testing_failures_per_ip=len(variants)) as [tester]:
        declining = ["4000000000000002", "4000000000009995", "4000000000000127"]
        for n, path in enumerate(variants):
            sid, browser = await open_session(tester, admin_headers, clock)
            r = await tester.post(
                path.format(sid=sid), json=card(declining[n % 3]), headers=browser
            )
            assert r.status_code == 402, (path, r.text)
        for path in variants:
            sid, browser = await open_session(tester, admin_headers, clock)
            r = await tester.post(path.format(sid=sid), json=card(), headers=browser)
            assert_limited(r)
