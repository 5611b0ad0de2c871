"""Webhook endpoint management through the real app: CRUD, the secret shown once and stored
only encrypted, rotation, URL and event rules, account isolation, idempotent POSTs."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from services.api.app import create_app
from shared.clock import ManualClock
from shared.config import Settings
from shared.crypto import DataCipher
from shared.events.model import EVENT_TYPES
from shared.redis.keys import Keys
from shared.webhooks.model import MAX_ENDPOINTS_PER_ACCOUNT
from shared.webhooks.service import live_signing_secrets
from shared.webhooks.store import WebhookStore
from tests.support import ACCOUNT, OTHER_ACCOUNT

URL = "/v1/webhook-endpoints"
HOOK = "https://hooks.example.com/hosted-sessions"


def endpoint_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "url": HOOK,
        "enabled_events": ["hosted_session.created", "hosted_session.expired"],
        "description": "orders service",
    }
    body.update(overrides)
    return body


async def create(client: AsyncTestClient[Any], headers: dict[str, str], **body: Any) -> Any:
    response = await client.post(URL, json=endpoint_body(**body), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_create_shows_the_secret_once(
    client: AsyncTestClient[Any], admin_headers: dict[str, str]
) -> None:
    created = await create(client, admin_headers)
    assert created["id"].startswith("we_")
    assert created["object"] == "webhook_endpoint"
    assert created["url"] == HOOK
    assert created["enabled_events"] == ["hosted_session.created", "hosted_session.expired"]
    assert created["description"] == "orders service"
    assert created["enabled"] is True
    assert created["disabled_reason"] is None
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 24

    fetched = await client.get(f"{URL}/{created['id']}", headers=admin_headers)
    listed = await client.get(URL, headers=admin_headers)
    assert fetched.status_code == 200
    assert listed.status_code == 200
    assert "secret" not in fetched.json()
    assert [e["id"] for e in listed.json()["data"]] == [created["id"]]
    assert all("secret" not in e for e in listed.json()["data"])
    assert secret not in fetched.text + listed.text
    assert {k: v for k, v in created.items() if k != "secret"} == fetched.json()


async def test_secret_is_stored_only_encrypted(
    client: AsyncTestClient[Any],
    admin_headers: dict[str, str],
    redis: Redis,
    settings: Settings,
) -> None:
    created = await create(client, admin_headers)
    secret = created["secret"]
    raw_key = base64.b64decode(secret.removeprefix("whsec_"))
    stored_values = b""
    async for key in redis.scan_iter(match=f"{settings.key_prefix}:*"):
        if await redis.type(key) == b"hash":
            stored_values += b"".join(await redis.hvals(key))  # type: ignore[misc]
    assert stored_values  # the endpoint is there
    assert secret.encode() not in stored_values
    assert secret.removeprefix("whsec_").encode() not in stored_values
    assert raw_key not in stored_values
    # ... and it is what the worker signs with, once decrypted with the data key.
    store = WebhookStore(redis, Keys(settings.key_prefix))
    stored = await store.load_endpoint(ACCOUNT, created["id"])
    assert stored is not None
    cipher = DataCipher(settings.data_key_bytes)
    assert live_signing_secrets(cipher, stored, 0) == [secret]


async def test_rotation_shows_a_new_secret_once_and_keeps_the_old_one_for_24h(
    client: AsyncTestClient[Any],
    admin_headers: dict[str, str],
    redis: Redis,
    settings: Settings,
) -> None:
    created = await create(client, admin_headers)
    before = datetime.now().astimezone()
    r = await client.post(f"{URL}/{created['id']}/rotate-secret", headers=admin_headers)
    assert r.status_code == 200
    rotated = r.json()
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != created["secret"]
    overlap_end = parse(rotated["previous_secret_expires_at"])
    assert (
        before + timedelta(hours=24) - timedelta(seconds=5)
        <= overlap_end
        <= before + timedelta(hours=24, seconds=5)
    )
    fetched = (await client.get(f"{URL}/{created['id']}", headers=admin_headers)).json()
    assert "secret" not in fetched
    assert fetched["previous_secret_expires_at"] == rotated["previous_secret_expires_at"]

    stored = await WebhookStore(redis, Keys(settings.key_prefix)).load_endpoint(
        ACCOUNT, created["id"]
    )
    assert stored is not None
    cipher = DataCipher(settings.data_key_bytes)
    end_ms = int(overlap_end.timestamp() * 1000)
    # During the overlap both sign (new first); from its end only the new one.
    assert live_signing_secrets(cipher, stored, end_ms - 1) == [
        rotated["secret"],
        created["secret"],
    ]
    assert live_signing_secrets(cipher, stored, end_ms) == [rotated["secret"]]


async def test_update_and_delete(
    client: AsyncTestClient[Any], admin_headers: dict[str, str]
) -> None:
    created = await create(client, admin_headers)
    path = f"{URL}/{created['id']}"
    r = await client.patch(
        path,
        json={
            "url": "https://other.example.com/in",
            "enabled_events": ["*"],
            "description": "",
            "enabled": False,
        },
        headers=admin_headers,
    )
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["url"] == "https://other.example.com/in"
    assert updated["enabled_events"] == ["*"]
    assert updated["description"] == ""
    assert updated["enabled"] is False
    assert "secret" not in updated
    assert parse(updated["updated_at"]) >= parse(created["updated_at"])
    # Absent fields keep their value.
    r = await client.patch(path, json={"enabled": True}, headers=admin_headers)
    assert r.json()["url"] == "https://other.example.com/in"
    assert r.json()["enabled"] is True

    r = await client.delete(path, headers=admin_headers)
    assert r.status_code == 200
    assert r.json() == {"object": "webhook_endpoint", "id": created["id"], "deleted": True}
    assert (await client.get(path, headers=admin_headers)).status_code == 404
    assert (await client.delete(path, headers=admin_headers)).status_code == 404
    assert (await client.get(URL, headers=admin_headers)).json()["data"] == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"enabled_events": ["hosted_session.nope"]}, "unknown event type"),
        ({"enabled_events": []}, "enabled_events"),
        ({"enabled_events": ["*", "hosted_session.created"]}, "stands alone"),
        (
            {"enabled_events": ["hosted_session.created", "hosted_session.created"]},
            "must not repeat",
        ),
        ({"url": "https://user:pass@hooks.example.com/"}, "credentials"),
        ({"url": "https://hooks.example.com/" + "x" * 2048}, "url"),
        ({"url": "ftp://hooks.example.com/"}, "must start with"),
        ({"url": "http://127.0.0.1:8080/hook"}, "private, loopback"),
        ({"url": "http://169.254.169.254/latest"}, "private, loopback"),
        ({"url": "http://[::ffff:10.0.0.1]/hook"}, "private, loopback"),
        ({"url": "http://localhost:3000/hook"}, "private, loopback"),
        ({"url": 42}, "url"),
        ({"enabled": "yes"}, "enabled"),
        ({"secret": "whsec_mine"}, "secret"),
    ],
)
async def test_invalid_input_is_refused_and_creates_nothing(
    client: AsyncTestClient[Any],
    admin_headers: dict[str, str],
    body: dict[str, Any],
    message: str,
) -> None:
    r = await client.post(URL, json=endpoint_body(**body), headers=admin_headers)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "validation_error"
    assert message in r.json()["message"]
    assert (await client.get(URL, headers=admin_headers)).json()["data"] == []


# Every spelling a resolver (libc inet_aton, a browser) reads as an internal address, and
# local names with the root's trailing dot: refused when registered, not only when delivering.
INTERNAL_HOSTS = [
    "2130706433",  # 127.0.0.1 as one decimal number
    "0x7f000001",  # ... as one hex number
    "017700000001",  # ... as one octal number
    "127.1",  # a.b: the last part fills three bytes
    "0177.0.0.1",  # octal part
    "0x7f.1",  # hex part, short form
    "0x7F.0x0.0.01",  # mixed
    "0",  # 0.0.0.0
    "0xa9fea9fe",  # 169.254.169.254, cloud metadata
    "10.1",  # 10.0.0.1
    "100.64.0.1",  # carrier-grade NAT
    "localhost.",
    "api.localhost.",
    "LOCALHOST",
    "[fec0::1]",  # IPv6 site-local
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::127.0.0.1]",  # IPv4-compatible
    "[::ffff:7f00:1]",
    "[64:ff9b::a00:1]",  # NAT64 of 10.0.0.1
    "[2002:a9fe:a9fe::1]",  # 6to4 of 169.254.169.254
    "[fd00::1]",  # unique local
    "[ff02::1]",  # multicast
]


@pytest.mark.parametrize("host", INTERNAL_HOSTS)
async def test_internal_hosts_in_any_spelling_are_refused_and_create_nothing(
    client: AsyncTestClient[Any],
    admin_headers: dict[str, str],
    redis: Redis,
    settings: Settings,
    host: str,
) -> None:
    r = await client.post(
        URL, json=endpoint_body(url=f"http://{host}:8080/hook"), headers=admin_headers
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "validation_error"
    assert r.json()["message"].startswith("url: must not point at a private")
    assert await redis.keys(f"{settings.key_prefix}:*:we*") == []


@pytest.mark.parametrize("host", ["1.2.3.4.5", "256.0.0.1", "api.0x1", "%31%32%37.0.0.1"])
async def test_hosts_that_are_no_name_and_no_address_are_refused(
    client: AsyncTestClient[Any], admin_headers: dict[str, str], host: str
) -> None:
    r = await client.post(
        URL, json=endpoint_body(url=f"https://{host}/hook"), headers=admin_headers
    )
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith("url: ")
    assert (await client.get(URL, headers=admin_headers)).json()["data"] == []


async def test_patch_refuses_internal_hosts_in_any_spelling(
    client: AsyncTestClient[Any], admin_headers: dict[str, str]
) -> None:
    created = await create(client, admin_headers)
    path = f"{URL}/{created['id']}"
    for host in INTERNAL_HOSTS:
        r = await client.patch(path, json={"url": f"http://{host}/"}, headers=admin_headers)
        assert r.status_code == 400, (host, r.text)
        assert r.json()["message"].startswith("url: must not point at a private")
    assert (await client.get(path, headers=admin_headers)).json()["url"] == HOOK


async def test_every_event_type_and_the_wildcard_are_accepted(
    client: AsyncTestClient[Any], admin_headers: dict[str, str]
) -> None:
    assert (await create(client, admin_headers, enabled_events=list(EVENT_TYPES)))["enabled"]
    assert (await create(client, admin_headers, enabled_events=["*"]))["enabled_events"] == ["*"]
    # Plain http is fine outside production.
    assert (await create(client, admin_headers, url="http://hooks.example.com/in"))["id"]


async def test_https_is_required_in_production(
    settings: Settings, admin_headers: dict[str, str], redis: Redis
) -> None:
    production = msgspec.structs.replace(settings, env="production")
    async with AsyncTestClient(create_app(production, clock=ManualClock())) as client:
        r = await client.post(
            URL, json=endpoint_body(url="http://hooks.example.com/in"), headers=admin_headers
        )
        assert r.status_code == 400
        assert "https://" in r.json()["message"]
        assert (await create(client, admin_headers))["url"] == HOOK


async def test_patch_validates_like_create(
    client: AsyncTestClient[Any], admin_headers: dict[str, str]
) -> None:
    created = await create(client, admin_headers)
    path = f"{URL}/{created['id']}"
    for body in (
        {"url": "https://a:b@example.com/"},
        {"enabled_events": ["nope"]},
        {"unknown": 1},
        {"url": "http://10.0.0.8/"},
    ):
        r = await client.patch(path, json=body, headers=admin_headers)
        assert r.status_code == 400, (body, r.text)
    assert (await client.get(path, headers=admin_headers)).json() == {
        k: v for k, v in created.items() if k != "secret"
    }


async def test_another_account_sees_nothing(
    client: AsyncTestClient[Any],
    admin_headers: dict[str, str],
    token_for: Callable[..., str],
) -> None:
    created = await create(client, admin_headers)
    other = {
        "Authorization": f"Bearer {token_for(OTHER_ACCOUNT)}",
        "X-Payment-Account-Uid": OTHER_ACCOUNT,
    }
    path = f"{URL}/{created['id']}"
    assert (await client.get(URL, headers=other)).json()["data"] == []
    for method, target in (
        ("GET", path),
        ("PATCH", path),
        ("DELETE", path),
        ("POST", f"{path}/rotate-secret"),
        ("GET", f"{path}/deliveries"),
    ):
        r = await client.request(
            method, target, headers=other, json={} if method == "PATCH" else None
        )
        assert r.status_code == 404, (method, target, r.text)
        assert r.json()["code"] == "validation_error"
    # Unchanged for its owner.
    assert (await client.get(path, headers=admin_headers)).json()["enabled"] is True


async def test_admin_token_is_required(client: AsyncTestClient[Any]) -> None:
    for method, target in (
        ("GET", URL),
        ("POST", URL),
        ("POST", "/v1/webhook-deliveries/whd_000000000000000000000000/redeliver"),
    ):
        r = await client.request(method, target, headers={"X-Payment-Account-Uid": ACCOUNT})
        assert r.status_code == 401
        assert r.json()["code"] == "validation_error"


async def test_idempotent_create_replays_the_same_endpoint(
    client: AsyncTestClient[Any], admin_headers: dict[str, str]
) -> None:
    headers = {**admin_headers, "Idempotency-Key": "endpoint-1"}
    first = await client.post(URL, json=endpoint_body(), headers=headers)
    again = await client.post(URL, json=endpoint_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert len((await client.get(URL, headers=admin_headers)).json()["data"]) == 1
    other_body = await client.post(URL, json=endpoint_body(description="x"), headers=headers)
    assert other_body.status_code == 422


async def test_endpoint_limit_per_account(
    client: AsyncTestClient[Any], admin_headers: dict[str, str]
) -> None:
    for _ in range(MAX_ENDPOINTS_PER_ACCOUNT):
        await create(client, admin_headers)
    r = await client.post(URL, json=endpoint_body(), headers=admin_headers)
    assert r.status_code == 422
    assert str(MAX_ENDPOINTS_PER_ACCOUNT) in r.json()["message"]
    listed = (await client.get(URL, headers=admin_headers)).json()["data"]
    assert len(listed) == MAX_ENDPOINTS_PER_ACCOUNT
    # Newest first.
    assert [e["created_at"] for e in listed] == sorted(
        (e["created_at"] for e in listed), reverse=True
    )


async def test_deliveries_of_a_new_endpoint_and_unknown_redelivery(
    client: AsyncTestClient[Any], admin_headers: dict[str, str]
) -> None:
    created = await create(client, admin_headers)
    r = await client.get(f"{URL}/{created['id']}/deliveries", headers=admin_headers)
    assert r.status_code == 200
    assert r.json() == {"object": "list", "data": [], "has_more": False}
    r = await client.post(
        "/v1/webhook-deliveries/whd_000000000000000000000000/redeliver", headers=admin_headers
    )
    assert r.status_code == 404
    assert r.json()["code"] == "validation_error"


async def test_secrets_never_reach_the_logs(
    client: AsyncTestClient[Any],
    admin_headers: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    created = await create(client, admin_headers)
    r = await client.post(f"{URL}/{created['id']}/rotate-secret", headers=admin_headers)
    rotated = r.json()["secret"]
    out = capsys.readouterr().out
    assert "webhook_endpoint.created" in out  # the log lines were captured
    assert "webhook_endpoint.secret_rotated" in out
    for secret in (created["secret"], rotated):
        assert secret not in out
        assert secret.removeprefix("whsec_") not in out


async def test_endpoints_page_by_the_last_endpoints_id_like_every_list(
    client: AsyncTestClient[Any],
    admin_headers: dict[str, str],
    token_for: Callable[..., str],
) -> None:
    made = [(await create(client, admin_headers, description=f"n{n}"))["id"] for n in range(5)]
    everything = (await client.get(URL, headers=admin_headers)).json()
    newest_first = [e["id"] for e in everything["data"]]
    assert sorted(newest_first) == sorted(made)
    assert everything["has_more"] is False

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        r = await client.get(URL, params=params, headers=admin_headers)
        assert r.status_code == 200, r.text
        seen += [e["id"] for e in r.json()["data"]]
        if not r.json()["has_more"]:
            break
        params["starting_after"] = r.json()["data"][-1]["id"]
    assert seen == newest_first

    # Another account's endpoint id (or an unknown one) is no position here.
    other = {
        "Authorization": f"Bearer {token_for(OTHER_ACCOUNT)}",
        "X-Payment-Account-Uid": OTHER_ACCOUNT,
    }
    theirs = await create(client, other)
    for cursor in (theirs["id"], "we_" + "A" * 24):
        r = await client.get(URL, params={"starting_after": cursor}, headers=admin_headers)
        assert r.status_code == 400, r.text
        assert r.json()["message"].startswith("starting_after: no such webhook endpoint")
        assert theirs["url"] not in r.text
    r = await client.get(URL, params={"starting_after": made[0]}, headers=other)
    assert r.status_code == 400
