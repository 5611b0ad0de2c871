"""Idempotency-Key after a failure, through the real app on a real Redis.

Faults are real Redis errors, provoked under the test's own key prefix: a key the request
touches is made the wrong type (WRONGTYPE), then put right before the retry. A request that
failed that way must not keep its key "in progress": the retry runs at once. A request that
reached an answer about the resource (404 here) is answered the same on a retry (Stripe's
rule: a result is saved once the endpoint ran; rejected input and faults are not saved).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from shared.config import Settings
from shared.ids import partition_of_account
from shared.redis.keys import Keys
from shared.webhooks.model import new_delivery
from shared.webhooks.store import WebhookStore
from tests.support import ACCOUNT, seed_body
from tests.support.events import session_events

Client = AsyncTestClient[Any]
URL = "/v1/hosted-sessions"
HOOKS = "/v1/webhook-endpoints"
HOOK_BODY = {"url": "https://hooks.example.com/in", "enabled_events": ["hosted_session.created"]}
PARTITION = partition_of_account(ACCOUNT)


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def expired_events(redis: Redis, settings: Settings, session_id: str) -> int:
    events = await session_events(redis, settings.key_prefix, session_id)
    return sum(e.type == "hosted_session.expired" for e in events)


async def test_create_that_hit_a_redis_fault_is_retried_at_once(
    client: Client, admin_headers: dict[str, str], redis: Redis, settings: Settings
) -> None:
    """Before: the failed create kept its key pending, so the retry got 409 for 60 s."""
    index = Keys(settings.key_prefix).status_index(PARTITION, ACCOUNT, "open")
    await redis.set(index, "not a sorted set")  # the create's script fails with WRONGTYPE
    headers = keyed(admin_headers, "create-fault-1")
    failed = await client.post(URL, json=seed_body(), headers=headers)
    assert failed.status_code == 500, failed.text
    assert failed.json()["code"] == "processing_error"
    assert failed.json()["recoverable"] is True

    await redis.delete(index)  # the fault is gone
    retried = await client.post(URL, json=seed_body(), headers=headers)
    assert retried.status_code == 201, retried.text
    again = await client.post(URL, json=seed_body(), headers=headers)
    assert again.json() == retried.json()  # from now on, the replay
    listed = (await client.get(URL, headers=admin_headers)).json()["data"]
    assert [s["id"] for s in listed] == [retried.json()["session_id"]]


async def test_expire_that_hit_a_redis_fault_is_retried_at_once(
    client: Client, admin_headers: dict[str, str], redis: Redis, settings: Settings
) -> None:
    created = await client.post(URL, json=seed_body(), headers=admin_headers)
    session_id = created.json()["session_id"]
    key = Keys(settings.key_prefix).session(PARTITION, session_id)
    stored = await redis.get(key)
    assert stored is not None
    await redis.delete(key)
    # Reading the session fails with WRONGTYPE.
    await redis.hset(key, "x", "1")  # type: ignore[misc]  # redis-py types hash commands sync|async
    headers = keyed(admin_headers, "expire-fault-1")
    failed = await client.post(f"{URL}/{session_id}/expire", headers=headers)
    assert failed.status_code == 500, failed.text

    await redis.delete(key)
    await redis.set(key, stored)  # the session as it was
    retried = await client.post(f"{URL}/{session_id}/expire", headers=headers)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "expired"
    assert await expired_events(redis, settings, session_id) == 1


async def test_webhook_endpoint_create_that_hit_a_redis_fault_is_retried_at_once(
    client: Client, admin_headers: dict[str, str], redis: Redis, settings: Settings
) -> None:
    index = Keys(settings.key_prefix).webhook_endpoints(ACCOUNT)
    await redis.set(index, "not a sorted set")  # the script's first command fails
    headers = keyed(admin_headers, "hook-fault-1")
    failed = await client.post(HOOKS, json=HOOK_BODY, headers=headers)
    assert failed.status_code == 500, failed.text

    await redis.delete(index)
    retried = await client.post(HOOKS, json=HOOK_BODY, headers=headers)
    assert retried.status_code == 201, retried.text
    replay = await client.post(HOOKS, json=HOOK_BODY, headers=headers)
    assert replay.json() == retried.json()  # same endpoint, same secret
    listed = (await client.get(HOOKS, headers=admin_headers)).json()["data"]
    assert [e["id"] for e in listed] == [retried.json()["id"]]


async def test_redelivery_that_failed_after_its_change_is_answered_on_retry(
    client: Client, admin_headers: dict[str, str], redis: Redis, settings: Settings
) -> None:
    """The fault comes after the change (queueing the attempt): the change's own step stored
    the answer, so the release leaves it and the retry gets it (the due-delivery sweep
    queues the attempt). Before: 409 in progress, then a second run."""
    keys = Keys(settings.key_prefix)
    endpoint = await client.post(HOOKS, json=HOOK_BODY, headers=admin_headers)
    record = new_delivery(
        account_uid=ACCOUNT,
        endpoint_id=endpoint.json()["id"],
        event_id="evt_idem_fault_1",
        event_type="hosted_session.created",
        session_id="cs_0AAAAAAAAAAAAAAA",
        now_ms=1_750_000_000_000,
        schedule=(1.0,),
    )
    dead = msgspec.structs.replace(record, state="dead", dead_reason="exhausted")
    store = WebhookStore(redis, keys)
    assert await store.create_deliveries([(dead, b"{}")]) == [None]
    queue = keys.arq_queue("webhooks")
    await redis.set(queue, "not a sorted set")  # queueing the attempt fails with WRONGTYPE
    path = f"/v1/webhook-deliveries/{dead.id}/redeliver"
    headers = keyed(admin_headers, "redeliver-fault-1")
    failed = await client.post(path, headers=headers)
    assert failed.status_code == 500, failed.text

    await redis.delete(queue)
    retried = await client.post(path, headers=headers)
    assert retried.status_code == 202, retried.text
    assert retried.json()["id"] == dead.id
    assert retried.json()["state"] == "pending"
    stored = await store.load_delivery(ACCOUNT, dead.id)
    assert stored is not None
    assert stored.version == 2  # made, then redelivered once


async def test_an_answer_the_endpoint_reached_is_replayed(
    client: Client, admin_headers: dict[str, str]
) -> None:
    """A 404 (no such session) is the endpoint's result: the retry gets the same answer,
    request id included, instead of running again."""
    headers = keyed(admin_headers, "expire-missing-1")
    path = f"{URL}/cs_0AAAAAAAAAAAAAAA/expire"
    first = await client.post(path, headers=headers)
    assert first.status_code == 404
    again = await client.post(path, headers=headers)
    assert again.status_code == 404
    assert again.json() == first.json()
    assert again.json()["request_id"] == first.headers["x-request-id"]
    assert again.headers["x-request-id"] != first.headers["x-request-id"]


async def test_rejected_input_does_not_burn_the_key(
    client: Client, admin_headers: dict[str, str], redis: Redis, settings: Settings
) -> None:
    """A 422 on the items' total is rejected input, not a result: nothing is stored under
    the key, and the corrected body may use it."""
    headers = keyed(admin_headers, "bad-total-1")
    bad = await client.post(URL, json=seed_body(amount=1), headers=headers)
    assert bad.status_code == 422
    keys = [k async for k in redis.scan_iter(match=f"{settings.key_prefix}:*")]
    assert keys == []
    fixed = await client.post(URL, json=seed_body(), headers=headers)
    assert fixed.status_code == 201


async def test_concurrent_identical_expires_do_the_work_once(
    client: Client, admin_headers: dict[str, str], redis: Redis, settings: Settings
) -> None:
    created = await client.post(URL, json=seed_body(), headers=admin_headers)
    session_id = created.json()["session_id"]
    headers = keyed(admin_headers, "expire-burst-1")
    responses = await asyncio.gather(
        *(client.post(f"{URL}/{session_id}/expire", headers=headers) for _ in range(8))
    )
    assert {r.status_code for r in responses} <= {200, 409}
    done = [r.json() for r in responses if r.status_code == 200]
    assert done
    assert all(body == done[0] for body in done)  # the one answer, replayed
    assert await expired_events(redis, settings, session_id) == 1


async def test_concurrent_identical_endpoint_creates_make_one(
    client: Client, admin_headers: dict[str, str]
) -> None:
    headers = keyed(admin_headers, "hook-burst-1")
    responses = await asyncio.gather(
        *(client.post(HOOKS, json=HOOK_BODY, headers=headers) for _ in range(8))
    )
    assert {r.status_code for r in responses} <= {201, 409}
    ids = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(ids) == 1
    listed = (await client.get(HOOKS, headers=admin_headers)).json()["data"]
    assert [e["id"] for e in listed] == list(ids)
