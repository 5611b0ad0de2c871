"""Ids in paths are checked against their exact shape before they reach a key: a malformed
one (a `:` suffix naming another key of the same endpoint, a brace, non-ASCII, too long)
answers 404 `validation_error` on every route, never 5xx, and changes nothing."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from shared.clock import ManualClock
from shared.config import Settings
from shared.redis.keys import Keys
from shared.webhooks.model import DeliveryRecord, delivery_id_for
from shared.webhooks.store import WebhookStore
from tests.api.test_webhook_endpoints import URL as ENDPOINTS
from tests.api.test_webhook_endpoints import create
from tests.support import ACCOUNT
from tests.support.checkout import card, open_session

Client = AsyncTestClient[Any]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Address limits off: the route test below makes hundreds of browser calls from one
    address (a 429 would hide what the id check answers)."""
    return msgspec.structs.replace(
        settings,
        rate_limit_reads_per_ip=0,
        rate_limit_confirms_per_ip=0,
        rate_limit_challenges_per_ip=0,
    )


# Every path parameter of the app, and whether it is an id (a new one must be added here,
# with a well-formed value in `valid_ids`, or the route test below fails).
ID_PARAMETERS = {"session_id", "endpoint_id", "delivery_id", "method_id"}
NOT_IDS = {"name", "path"}  # the checkout page's asset file names, the OpenAPI document's


def malformed(valid: str) -> list[str]:
    """Near misses of a well-formed id: what an attacker or a typo sends."""
    return [
        valid + ":wd",  # another key of the same endpoint
        valid + ":",
        valid[:-1] + "{",
        valid[:-1] + "}",
        "{" + valid + "}",
        valid[:-1] + "é",  # non-ASCII in the id's alphabet position
        valid[:-1] + "٣",  # an Arabic-Indic digit: str.isalnum() says yes
        valid + "0",  # one character too long
        valid + "x" * 300,
        valid[:-1],  # one too short
        valid.upper(),
        valid.replace("_", "-", 1),
        valid[:-1] + "%",
        valid[:-1] + "*",
    ]


async def add_delivery(redis: Redis, settings: Settings, endpoint_id: str) -> str:
    """A delivery of the endpoint stored as the dispatcher stores it (its index key too)."""
    record = DeliveryRecord(
        id=delivery_id_for("evt_path_ids", endpoint_id),
        account_uid=ACCOUNT,
        endpoint_id=endpoint_id,
        event_id="evt_path_ids",
        event_type="hosted_session.created",
        session_id="cs_0000000000000000",
        created_at_ms=1_750_000_000_000,
        final_attempt=3,
        next_attempt_at_ms=1_750_000_000_000,
    )
    store = WebhookStore(redis, Keys(settings.key_prefix))
    assert await store.create_deliveries([(record, b"{}")]) == [None]
    return record.id


def assert_not_found(response: Any) -> None:
    assert response.status_code == 404, (response.request.url, response.text)
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["recoverable"] is False
    assert body["request_id"]


async def test_colon_suffixed_endpoint_ids_are_404_and_change_nothing(
    client: Client, admin_headers: dict[str, str], redis: Redis, settings: Settings
) -> None:
    endpoint_id = (await create(client, admin_headers))["id"]
    delivery_id = await add_delivery(redis, settings, endpoint_id)
    keys = Keys(settings.key_prefix)
    endpoint_key = keys.webhook_endpoint(ACCOUNT, endpoint_id)
    index_key = keys.webhook_endpoint_deliveries(ACCOUNT, endpoint_id)
    before = (await redis.hgetall(endpoint_key), await redis.zrange(index_key, 0, -1))  # type: ignore[misc]
    assert before[0]
    assert before[1]

    # `<id>:wd` names the endpoint's delivery index (a ZSET): reads answered 500 WRONGTYPE.
    bad = f"{endpoint_id}:wd"
    assert_not_found(await client.get(f"{ENDPOINTS}/{bad}", headers=admin_headers))
    assert_not_found(await client.get(f"{ENDPOINTS}/{bad}/deliveries", headers=admin_headers))
    assert_not_found(
        await client.patch(f"{ENDPOINTS}/{bad}", json={"enabled": False}, headers=admin_headers)
    )
    assert_not_found(await client.post(f"{ENDPOINTS}/{bad}/rotate-secret", headers=admin_headers))
    # The DELETE answered 200 and wiped the delivery index.
    assert_not_found(await client.delete(f"{ENDPOINTS}/{bad}", headers=admin_headers))
    assert_not_found(
        await client.post(
            f"/v1/webhook-deliveries/{delivery_id}:x/redeliver", headers=admin_headers
        )
    )

    after = (await redis.hgetall(endpoint_key), await redis.zrange(index_key, 0, -1))  # type: ignore[misc]
    assert after == before
    r = await client.get(f"{ENDPOINTS}/{endpoint_id}/deliveries", headers=admin_headers)
    assert [d["id"] for d in r.json()["data"]] == [delivery_id]


async def test_a_malformed_delivery_cursor_is_a_400_never_a_key(
    client: Client, admin_headers: dict[str, str], redis: Redis, settings: Settings
) -> None:
    endpoint_id = (await create(client, admin_headers))["id"]
    delivery_id = await add_delivery(redis, settings, endpoint_id)
    path = f"{ENDPOINTS}/{endpoint_id}/deliveries"
    for bad in (f"{delivery_id}:x", delivery_id[:-1] + "{", delivery_id[:-1] + "é", "x" * 64):
        r = await client.get(path, params={"starting_after": bad}, headers=admin_headers)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["code"] == "validation_error"
        assert r.json()["message"].startswith("starting_after: ")
    r = await client.get(path, params={"starting_after": delivery_id}, headers=admin_headers)
    assert r.status_code == 200
    assert r.json()["data"] == []


async def test_malformed_endpoint_id_in_a_message_is_not_echoed(
    client: Client, admin_headers: dict[str, str]
) -> None:
    r = await client.get(f"{ENDPOINTS}/we_{'x' * 300}<script>", headers=admin_headers)
    assert_not_found(r)
    assert "<script>" not in r.text
    assert "x" * 100 not in r.text


async def stored_keys(redis: Redis, settings: Settings) -> set[bytes]:
    """The test's keys but the rate limits' (their state expires on its own, in real time)."""
    return {k for k in await redis.keys(f"{settings.key_prefix}:*") if b":rl:" not in k}


def id_routes(app: Litestar) -> list[tuple[str, str, list[str]]]:
    """(method, path template, path parameter names) of every route with a path parameter."""
    out: list[tuple[str, str, list[str]]] = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not route.path_parameters:
            continue
        names = list(route.path_parameters)
        assert set(names) <= ID_PARAMETERS | NOT_IDS, f"{route.path}: classify {names}"
        if not set(names) & ID_PARAMETERS:
            continue
        for method in sorted(route.methods - {"OPTIONS", "HEAD"}):
            out.append((str(method), route.path, names))
    return out


async def valid_ids(
    client: Client, admin_headers: dict[str, str], clock: ManualClock, redis: Redis, s: Settings
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Well-formed, existing ids, and the payment and wallet credentials of their sessions."""
    session_id, payment = await open_session(client, admin_headers, clock, customer_id="cust_p")
    wallet_id, wallet = await open_session(
        client, admin_headers, clock, scope="wallet", customer_id="cust_p"
    )
    saved = await client.post(
        f"/v1/hosted-sessions/{wallet_id}/payment-methods",
        json=card()["payment_method"],
        headers=wallet,
    )
    assert saved.status_code == 201, saved.text
    endpoint_id = (await create(client, admin_headers))["id"]
    ids = {
        "session_id": session_id,
        "wallet_session_id": wallet_id,
        "endpoint_id": endpoint_id,
        "delivery_id": await add_delivery(redis, s, endpoint_id),
        "method_id": saved.json()["id"],
    }
    return ids, payment, wallet


async def test_every_route_answers_404_to_malformed_ids_never_5xx(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
) -> None:
    app = client.app
    assert isinstance(app, Litestar)
    routes = id_routes(app)
    # Sessions (merchant and browser), wallet, webhooks and pages are all here.
    assert {p for _, p, names in routes if "method_id" in names}
    assert len(routes) >= 18
    ids, payment, wallet = await valid_ids(client, admin_headers, clock, redis, settings)
    keys_before = await stored_keys(redis, settings)

    tried = 0
    wrong: list[tuple[str, str, str, int]] = []
    for method, template, names in routes:
        is_wallet = "/payment-methods" in template
        browser = template.startswith("/v1/hosted-sessions/{session_id:str}/") and not (
            template.endswith("/expire")
        )
        headers = (wallet if is_wallet else payment) if browser else admin_headers
        good = dict(ids)
        if is_wallet:
            good["session_id"] = ids["wallet_session_id"]
        for name in names:
            for bad in malformed(good[name]):
                path = template
                for other in names:
                    value = bad if other == name else good[other]
                    path = path.replace(f"{{{other}:str}}", value)
                body: dict[str, Any] | None = {} if method in {"POST", "PATCH"} else None
                r = await client.request(method, path, json=body, headers=headers)
                tried += 1
                page = template in {"/{session_id:str}", "/embed/{session_id:str}"}
                # The pages' 404 is the framework's (HTML pages); the API's is the envelope.
                if r.status_code != 404 or (not page and r.json()["code"] != "validation_error"):
                    wrong.append((method, template, bad[-40:], r.status_code))
    assert not wrong, "\n".join(map(str, wrong))
    assert tried >= 18 * 10
    # Nothing was written: no key was made or removed by any of those calls.
    assert await stored_keys(redis, settings) == keys_before


@pytest.mark.parametrize("bad", ["cs_0000000000000000:x", "cs_000000000000000{", "cs_0ñ"])
async def test_browser_routes_answer_404_before_asking_for_a_credential(
    client: Client, bad: str
) -> None:
    # The id's shape is public (docs): a malformed one is unknown whoever asks.
    assert_not_found(await client.get(f"/v1/hosted-sessions/{bad}/config"))
