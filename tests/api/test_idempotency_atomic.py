"""Every state-changing POST under an Idempotency-Key stores its answer in the change's own
atomic step: a process that dies right after the change leaves the answer behind, so the
retry replays it instead of doing the work again (or waiting out a 60 s lock).

"Dies right after the change": the test takes the key and runs the service call with its
`ReplayWrite`, exactly as `run_idempotent` and the route's handler do (the same wiring,
settings and Redis as the app, on the test's own event loop), and then nothing more of the
request (no finish, no release), as a SIGKILL at that point would. The retry goes to the
app over HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from shared.clock import ManualClock
from shared.config import Settings
from shared.idempotency.service import Claim, ReplayWrite, request_fingerprint
from shared.ids import partition_of_account
from shared.sessions.params import CreateSessionParams
from shared.webhooks.model import CreateEndpointParams, new_delivery
from shared.webhooks.service import WebhookService
from shared.webhooks.store import WebhookStore
from shared.wiring import Core, build_core
from tests.support import ACCOUNT, seed_body
from tests.support.events import session_events
from tests.support.sessions import create_session as created_session

Client = AsyncTestClient[Any]
URL = "/v1/hosted-sessions"
HOOKS = "/v1/webhook-endpoints"
HOOK_BODY = b'{"url":"https://hooks.example.com/in","enabled_events":["hosted_session.created"]}'
PARTITION = partition_of_account(ACCOUNT)


class Services(msgspec.Struct, kw_only=True):
    core: Core
    webhooks: WebhookService
    store: WebhookStore
    clock: ManualClock


@pytest.fixture
async def services(settings: Settings, clock: ManualClock) -> AsyncIterator[Services]:
    """The app's core services, wired as the app's are (shared/wiring.py; the app's own run
    on its test client's event loop, which this test's coroutines cannot share)."""
    core = build_core(settings, clock, client_name="test-idempotency")
    yield Services(core=core, webhooks=core.webhooks, store=core.webhook_store, clock=clock)
    await core.aclose()


def as_json(value: msgspec.Struct) -> Any:
    """`value` as a client reads it back."""
    return msgspec.json.decode(msgspec.json.encode(value))


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key, "Content-Type": "application/json"}


async def claim(
    services: Services, key: str, path: str, status: int, body: bytes = b""
) -> ReplayWrite:
    """What `run_idempotent` does before the handler: take the key for this request."""
    idem = services.core.idempotency
    begun = await idem.begin(PARTITION, ACCOUNT, key, request_fingerprint("POST", path, body))
    assert isinstance(begun, Claim)
    return idem.replay_write(begun, status)


async def stored_answer(redis: Redis, replay: ReplayWrite) -> tuple[str, int]:
    """State and status of the key's record, read with the raw client (msgpack array:
    state, fingerprint, token, status, encrypted body)."""
    raw = await redis.get(replay.key)
    assert raw is not None
    state, _, _, status, body = msgspec.msgpack.decode(raw)
    assert isinstance(body, bytes)
    assert body  # the encrypted answer, not a pending lock's empty body
    return state, status


async def event_count(redis: Redis, settings: Settings, session_id: str, kind: str) -> int:
    events = await session_events(redis, settings.key_prefix, session_id)
    return sum(e.type == kind for e in events)


async def test_create_stores_its_answer_with_the_session(
    client: Client, services: Services, admin_headers: dict[str, str], redis: Redis
) -> None:
    body = msgspec.json.encode(seed_body())
    replay = await claim(services, "create-crash", URL, 201, body)
    params = msgspec.json.decode(body, type=CreateSessionParams)
    created = await services.core.sessions.create(ACCOUNT, params, replay)
    assert replay.written
    # The process dies here.
    assert await stored_answer(redis, replay) == ("done", 201)
    retry = await client.post(URL, content=body, headers=keyed(admin_headers, "create-crash"))
    assert retry.status_code == 201
    assert retry.json() == as_json(created)
    listed = (await client.get(URL, headers=admin_headers)).json()["data"]
    assert [s["id"] for s in listed] == [created.session_id]


async def test_expire_stores_its_answer_in_the_expiring_step(
    client: Client,
    services: Services,
    admin_headers: dict[str, str],
    redis: Redis,
    settings: Settings,
) -> None:
    session_id = await created_session(client, admin_headers)
    path = f"{URL}/{session_id}/expire"
    replay = await claim(services, "expire-crash", path, 200)
    view = await services.core.sessions.expire(ACCOUNT, session_id, replay)
    assert replay.written
    # The process dies here.
    assert await stored_answer(redis, replay) == ("done", 200)
    retry = await client.post(path, headers=keyed(admin_headers, "expire-crash"))
    assert retry.status_code == 200
    assert retry.json() == as_json(view)
    assert retry.json()["status"] == "expired"
    assert await event_count(redis, settings, session_id, "hosted_session.expired") == 1


async def test_expire_answer_stored_is_the_answer_sent(
    client: Client, admin_headers: dict[str, str]
) -> None:
    session_id = await created_session(client, admin_headers)
    path = f"{URL}/{session_id}/expire"
    first = await client.post(path, headers=keyed(admin_headers, "expire-bytes"))
    again = await client.post(path, headers=keyed(admin_headers, "expire-bytes"))
    assert first.status_code == again.status_code == 200
    assert again.content == first.content


async def test_webhook_endpoint_create_stores_its_answer_with_the_endpoint(
    client: Client, services: Services, admin_headers: dict[str, str], redis: Redis
) -> None:
    replay = await claim(services, "hook-crash", HOOKS, 201, HOOK_BODY)
    params = msgspec.json.decode(HOOK_BODY, type=CreateEndpointParams)
    created = await services.webhooks.create(ACCOUNT, params, replay)
    assert replay.written
    # The process dies here.
    assert await stored_answer(redis, replay) == ("done", 201)
    retry = await client.post(HOOKS, content=HOOK_BODY, headers=keyed(admin_headers, "hook-crash"))
    assert retry.status_code == 201
    assert retry.json() == as_json(created)  # the secret too, shown once
    listed = (await client.get(HOOKS, headers=admin_headers)).json()["data"]
    assert [e["id"] for e in listed] == [created.id]


async def test_secret_rotation_stores_its_answer_with_the_new_secret(
    client: Client, services: Services, admin_headers: dict[str, str], redis: Redis
) -> None:
    r = await client.post(HOOKS, content=HOOK_BODY, headers=keyed(admin_headers, "hook-make"))
    endpoint_id = r.json()["id"]
    path = f"{HOOKS}/{endpoint_id}/rotate-secret"
    replay = await claim(services, "rotate-crash", path, 200)
    rotated = await services.webhooks.rotate_secret(ACCOUNT, endpoint_id, replay)
    assert replay.written
    # The process dies here.
    assert await stored_answer(redis, replay) == ("done", 200)
    retry = await client.post(path, headers=keyed(admin_headers, "rotate-crash"))
    assert retry.status_code == 200
    # The same secret: a second rotation would have retired the one the merchant got.
    assert retry.json()["secret"] == rotated.secret


@pytest.fixture
async def dead_delivery(client: Client, services: Services, admin_headers: dict[str, str]) -> str:
    """A dead delivery of a live endpoint (stored through the webhook store)."""
    r = await client.post(HOOKS, content=HOOK_BODY, headers=keyed(admin_headers, "hook-dead"))
    record = new_delivery(
        account_uid=ACCOUNT,
        endpoint_id=r.json()["id"],
        event_id="evt_idem_dead_1",
        event_type="hosted_session.created",
        session_id="cs_0AAAAAAAAAAAAAAA",
        now_ms=services.clock.now_ms(),
        schedule=(1.0,),
    )
    dead = msgspec.structs.replace(record, state="dead", dead_reason="exhausted")
    assert await services.store.create_deliveries([(dead, b"{}")]) == [None]
    return dead.id


async def test_redelivery_stores_its_answer_with_the_delivery_change(
    client: Client,
    services: Services,
    admin_headers: dict[str, str],
    redis: Redis,
    dead_delivery: str,
) -> None:
    path = f"/v1/webhook-deliveries/{dead_delivery}/redeliver"
    replay = await claim(services, "redeliver-crash", path, 202)
    view = await services.webhooks.redeliver(ACCOUNT, dead_delivery, replay)
    assert replay.written
    # The process dies here.
    assert await stored_answer(redis, replay) == ("done", 202)
    retry = await client.post(path, headers=keyed(admin_headers, "redeliver-crash"))
    assert retry.status_code == 202
    assert retry.json() == as_json(view)
    stored = await services.store.load_delivery(ACCOUNT, dead_delivery)
    assert stored is not None
    assert stored.version == 2  # made, then redelivered once
