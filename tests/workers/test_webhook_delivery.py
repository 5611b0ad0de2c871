"""Webhook delivery end to end: sessions created through the real app, a real webhooks worker
(in this process, or as processes killed with SIGKILL), and a real HTTP receiver on
127.0.0.1 that verifies signatures the way a merchant would."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from services.api.app import create_app
from shared.clock import ManualClock, SystemClock
from shared.config import Settings
from shared.events.stored import read_stored_event
from shared.ids import partition_of_account
from shared.redis.jobs import JobQueue, webhook_job_id
from shared.redis.keys import Keys
from shared.webhooks.delivery import USER_AGENT
from shared.webhooks.model import (
    AttemptOutcome,
    after_attempt,
    new_delivery,
    parse_retry_schedule,
    redelivered,
)
from shared.webhooks.service import WebhookDispatcher
from shared.webhooks.store import WebhookStore
from tests.processes import start_worker, stop
from tests.support import ACCOUNT, eventually, seed_body
from tests.support.events import partition_stream, stream_entries
from workers.main import run_workers

SESSIONS = "/v1/hosted-sessions"
ENDPOINTS = "/v1/webhook-endpoints"
# Retries 0.3 s apart (plus jitter) instead of minutes: three attempts in all.
FAST_SCHEDULE = "0.3,0.3"
T = TypeVar("T")

# --- the retry rules (pure) ------------------------------------------------------------------


def test_default_schedule_retries_for_at_least_three_days() -> None:
    schedule = parse_retry_schedule(Settings().webhook_retry_schedule)
    assert schedule[:3] == (5, 300, 1800)
    assert list(schedule) == sorted(schedule)  # backing off
    assert sum(schedule) >= 3 * 86_400


def test_attempt_outcomes_drive_the_delivery() -> None:
    schedule = parse_retry_schedule("5,300")
    record = new_delivery(
        account_uid=ACCOUNT,
        endpoint_id="we_x",
        event_id="evt_1",
        event_type="hosted_session.created",
        session_id="cs_x",
        now_ms=0,
        schedule=schedule,
    )
    failed = after_attempt(record, 1, AttemptOutcome(status_code=500), 1000, schedule, 0.0)
    assert (failed.state, failed.attempts, failed.next_attempt_at_ms) == ("pending", 1, 6000)
    # Jitter only ever lengthens a wait (by up to 20 %), never shortens it.
    late = after_attempt(record, 1, AttemptOutcome(error="timeout"), 1000, schedule, 0.999)
    assert 6000 < (late.next_attempt_at_ms or 0) <= 7000
    redirected = after_attempt(failed, 2, AttemptOutcome(status_code=302), 9000, schedule, 0)
    assert redirected.state == "pending"
    dead = after_attempt(redirected, 3, AttemptOutcome(status_code=503), 400_000, schedule, 0)
    assert (dead.state, dead.dead_reason, dead.next_attempt_at_ms) == ("dead", "exhausted", None)
    gone = after_attempt(record, 1, AttemptOutcome(status_code=410), 1000, schedule, 0)
    assert (gone.state, gone.dead_reason) == ("dead", "gone")
    ok = after_attempt(failed, 2, AttemptOutcome(status_code=204), 7000, schedule, 0)
    assert (ok.state, ok.delivered_at_ms, ok.attempts) == ("delivered", 7000, 2)
    # A redelivery is one manual attempt: its failure makes the delivery dead again.
    again = redelivered(dead, 500_000)
    assert (again.state, again.final_attempt, again.manual_attempt) == ("pending", 4, 4)
    failed_again = after_attempt(again, 4, AttemptOutcome(status_code=500), 500_001, schedule, 0)
    assert failed_again.state == "dead"
    assert failed_again.history[-1].manual


async def current(value: T) -> T:
    """`value` as an awaitable, for `eventually` probes of in-process state."""
    return value


# --- a merchant's receiver -------------------------------------------------------------------


def merchant_verifies(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a merchant's code does (Standard Webhooks), independent of the service's code."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > 300:  # the specification's replay window
        return False
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        version == "v1" and hmac.compare_digest(signature, expected)
        for version, _, signature in (
            part.partition(",") for part in headers["webhook-signature"].split(" ")
        )
    )


class Received(msgspec.Struct, kw_only=True):
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int = 0

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def event_id(self) -> str:
        return str(msgspec.json.decode(self.body)["id"])


class Receiver:
    """An HTTP/1.1 server (keep-alive) on 127.0.0.1 answering each POST with `respond(r)`;
    with `hold_after` set, requests beyond that many wait (unanswered) until `release()`."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.respond: Callable[[Received], int] = lambda _: 200
        self.hold_after: int | None = None
        self._released = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    def to(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def release(self) -> None:
        self._released.set()

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self.release()
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                _, target, _ = request_line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                received = Received(path=target, headers=headers, body=body, at=time.monotonic())
                self.requests.append(received)
                if self.hold_after is not None and len(self.requests) > self.hold_after:
                    await self._released.wait()
                received.status = self.respond(received)
                writer.write(f"HTTP/1.1 {received.status} X\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the worker went away (killed) mid-request
        finally:
            self._writers.discard(writer)
            writer.close()
            self._handlers.discard(task)


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test's settings with a loopback receiver allowed and fast retries."""
    return msgspec.structs.replace(
        settings, webhook_allow_private=True, webhook_retry_schedule=FAST_SCHEDULE
    )


@pytest.fixture
async def client(settings: Settings, redis: Redis) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(settings, clock=ManualClock())) as test_client:
        yield test_client


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as server:
        yield server


RunWorker = Callable[[], Coroutine[Any, Any, None]]


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[RunWorker]:
    """Starts a real webhooks worker in this process on demand; stops it at teardown."""
    stop_event = asyncio.Event()
    started: list[asyncio.Task[None]] = []

    async def start() -> None:
        started.append(asyncio.create_task(run_workers(settings, ["webhooks"], stop_event)))

    yield start
    stop_event.set()
    await asyncio.gather(*started)


class Merchant:
    """The merchant's side of the API: endpoints, sessions and deliveries."""

    def __init__(self, client: AsyncTestClient[Any], headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    async def endpoint(self, url: str, events: list[str] | None = None) -> dict[str, Any]:
        r = await self.client.post(
            ENDPOINTS,
            json={"url": url, "enabled_events": events or ["*"]},
            headers=self.headers,
        )
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    async def session(self) -> str:
        r = await self.client.post(SESSIONS, json=seed_body(), headers=self.headers)
        assert r.status_code == 201, r.text
        return str(r.json()["session_id"])

    async def deliveries(self, endpoint_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if cursor:
                params["starting_after"] = cursor
            r = await self.client.get(
                f"{ENDPOINTS}/{endpoint_id}/deliveries", params=params, headers=self.headers
            )
            assert r.status_code == 200, r.text
            page = r.json()
            out += page["data"]
            if not page["has_more"]:
                return out
            cursor = page["data"][-1]["id"]

    async def get_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        r = await self.client.get(f"{ENDPOINTS}/{endpoint_id}", headers=self.headers)
        assert r.status_code == 200
        body: dict[str, Any] = r.json()
        return body


@pytest.fixture
def merchant(client: AsyncTestClient[Any], admin_headers: dict[str, str]) -> Merchant:
    return Merchant(client, admin_headers)


async def stream_bodies(redis: Redis, settings: Settings) -> dict[str, bytes]:
    """event id -> the exact JSON envelope stored in the account's partition stream."""
    entries = await stream_entries(redis, partition_stream(settings.key_prefix))
    return {entry.event.id: entry.json for entry in entries}


async def settled(merchant: Merchant, endpoint_id: str, count: int) -> list[dict[str, Any]]:
    """The endpoint's deliveries once `count` exist and none is pending (or after 15 s)."""
    return await eventually(
        lambda: merchant.deliveries(endpoint_id),
        lambda ds: len(ds) == count and all(d["state"] != "pending" for d in ds),
        15,
    )


# --- delivery --------------------------------------------------------------------------------


async def test_events_reach_subscribed_endpoints_signed_and_exact(
    merchant: Merchant,
    receiver: Receiver,
    worker: RunWorker,
    redis: Redis,
    settings: Settings,
) -> None:
    everything = await merchant.endpoint(receiver.url)
    await merchant.endpoint(receiver.url + "/expired", ["hosted_session.expired"])
    first = await merchant.session()
    # An endpoint created now receives only later events, never history.
    late = await merchant.endpoint(receiver.url + "/late")
    second = await merchant.session()
    await worker()

    await eventually(lambda: current(receiver.requests), lambda r: len(r) >= 3, 10)
    await asyncio.sleep(0.5)  # nothing else is on its way
    bodies = await stream_bodies(redis, settings)
    main, later = receiver.to("/hook"), receiver.to("/hook/late")
    assert receiver.to("/hook/expired") == []
    assert sorted(msgspec.json.decode(r.body)["session_id"] for r in main) == sorted(
        [first, second]
    )
    assert [msgspec.json.decode(r.body)["session_id"] for r in later] == [second]
    for request in main:
        assert request.webhook_id == request.event_id()
        assert request.body == bodies[request.webhook_id]  # the stored envelope, byte for byte
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"] == USER_AGENT
        assert request.headers["host"] == receiver.url.split("/")[2]
        assert "cookie" not in request.headers
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 30
        assert merchant_verifies(everything["secret"], request.headers, request.body)
        assert not merchant_verifies(late["secret"], request.headers, request.body)
    assert merchant_verifies(late["secret"], later[0].headers, later[0].body)

    deliveries = await settled(merchant, everything["id"], 2)
    assert {d["event_id"] for d in deliveries} == {r.webhook_id for r in main}
    for delivery in deliveries:
        assert delivery["state"] == "delivered"
        assert delivery["attempts"] == 1
        assert [a["status_code"] for a in delivery["attempt_history"]] == [200]
        assert delivery["event_type"] == "hosted_session.created"


async def test_a_500_is_retried_with_backoff_until_a_success(
    merchant: Merchant, receiver: Receiver, worker: RunWorker
) -> None:
    receiver.respond = lambda _: 500 if len(receiver.requests) <= 2 else 200
    endpoint = await merchant.endpoint(receiver.url)
    await merchant.session()
    await worker()
    [delivery] = await settled(merchant, endpoint["id"], 1)
    assert delivery["state"] == "delivered"
    assert delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["attempt_history"]] == [200, 500, 500]
    assert [a["attempt"] for a in delivery["attempt_history"]] == [3, 2, 1]
    assert len(receiver.requests) == 3
    # Every attempt is the same message: same webhook-id and body, signed afresh.
    assert len({(r.webhook_id, r.body) for r in receiver.requests}) == 1
    assert all(merchant_verifies(endpoint["secret"], r.headers, r.body) for r in receiver.requests)
    gaps = [b.at - a.at for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
    assert all(gap >= 0.3 for gap in gaps), gaps


async def test_410_gone_disables_the_endpoint(
    merchant: Merchant, receiver: Receiver, worker: RunWorker
) -> None:
    receiver.respond = lambda _: 410
    endpoint = await merchant.endpoint(receiver.url)
    await merchant.session()
    await worker()
    [delivery] = await settled(merchant, endpoint["id"], 1)
    assert (delivery["state"], delivery["dead_reason"], delivery["attempts"]) == (
        "dead",
        "gone",
        1,
    )
    disabled = await merchant.get_endpoint(endpoint["id"])
    assert (disabled["enabled"], disabled["disabled_reason"]) == (False, "gone")

    await merchant.session()  # a disabled endpoint gets no new deliveries
    await asyncio.sleep(1.5)
    assert len(receiver.requests) == 1
    assert len(await merchant.deliveries(endpoint["id"])) == 1

    r = await merchant.client.patch(
        f"{ENDPOINTS}/{endpoint['id']}", json={"enabled": True}, headers=merchant.headers
    )
    assert (r.json()["enabled"], r.json()["disabled_reason"]) == (True, None)


async def test_exhausted_delivery_is_dead_until_redelivered(
    merchant: Merchant, receiver: Receiver, worker: RunWorker
) -> None:
    receiver.respond = lambda _: 503
    endpoint = await merchant.endpoint(receiver.url)
    await merchant.session()
    await worker()
    [delivery] = await settled(merchant, endpoint["id"], 1)
    assert (delivery["state"], delivery["dead_reason"], delivery["attempts"]) == (
        "dead",
        "exhausted",
        3,  # the first attempt and one per schedule step
    )
    assert delivery["next_attempt_at"] is None
    await asyncio.sleep(1)  # dead means no more attempts by itself
    assert len(receiver.requests) == 3

    receiver.respond = lambda _: 200
    redeliver = f"/v1/webhook-deliveries/{delivery['id']}/redeliver"
    r = await merchant.client.post(redeliver, headers=merchant.headers)
    assert r.status_code == 202, r.text
    assert r.json()["state"] == "pending"
    [done] = await settled(merchant, endpoint["id"], 1)
    assert (done["state"], done["attempts"]) == ("delivered", 4)
    assert done["attempt_history"][0]["manual"] is True
    assert not any(a["manual"] for a in done["attempt_history"][1:])
    assert len({r.webhook_id for r in receiver.requests}) == 1

    r = await merchant.client.post(redeliver, headers=merchant.headers)
    assert r.status_code == 409  # only a dead delivery can be redelivered
    assert r.json()["code"] == "validation_error"


async def test_during_a_rotation_both_secrets_verify(
    merchant: Merchant, receiver: Receiver, worker: RunWorker
) -> None:
    endpoint = await merchant.endpoint(receiver.url)
    r = await merchant.client.post(
        f"{ENDPOINTS}/{endpoint['id']}/rotate-secret", headers=merchant.headers
    )
    new_secret = r.json()["secret"]
    await merchant.session()
    await worker()
    await eventually(lambda: current(receiver.requests), lambda r: len(r) == 1, 10)
    [request] = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    # A merchant still on the old secret and one already on the new one both accept it.
    assert merchant_verifies(endpoint["secret"], request.headers, request.body)
    assert merchant_verifies(new_secret, request.headers, request.body)


async def test_dispatching_the_same_events_again_makes_nothing_twice(
    merchant: Merchant, receiver: Receiver, redis: Redis, settings: Settings
) -> None:
    endpoint = await merchant.endpoint(receiver.url)
    for _ in range(3):
        await merchant.session()
    keys = Keys(settings.key_prefix)
    entries = await redis.xrange(keys.events(partition_of_account(ACCOUNT)))
    items = [(raw_id.decode(), *read_stored_event(fields[b"e"])) for raw_id, fields in entries]
    store = WebhookStore(redis, keys)
    dispatcher = WebhookDispatcher(
        store, JobQueue(redis, keys), SystemClock(), parse_retry_schedule("1")
    )
    # A dispatcher that crashed before acking reads the same events again.
    assert await dispatcher.dispatch(items) == 3
    assert await dispatcher.dispatch(items) == 0
    deliveries = await merchant.deliveries(endpoint["id"])
    assert len(deliveries) == 3
    queued = await redis.zrange(keys.arq_queue("webhooks"), 0, -1)
    assert sorted(q.decode() for q in queued) == sorted(
        webhook_job_id(settings.key_prefix, d["id"], 1) for d in deliveries
    )


async def test_killed_worker_loses_no_event_and_records_none_twice(
    merchant: Merchant,
    receiver: Receiver,
    redis: Redis,
    settings: Settings,
    tmp_path: Path,
) -> None:
    total = 300
    endpoint = await merchant.endpoint(receiver.url)
    for _ in range(total):
        await merchant.session()
    bodies = await stream_bodies(redis, settings)
    events = set(bodies)
    assert len(events) == total
    # Past the first 100 requests the receiver holds every request unanswered: whatever the
    # worker has in flight when it is killed was sent but never recorded.
    receiver.hold_after = 100
    log = tmp_path / "workers.log"
    env = {"HS_WORKER_MAX_JOBS": "20"}
    first = start_worker(settings, "webhooks", log, extra_env=env)
    second = None
    try:
        # Several held (in flight) at once: a worker keeps up to 8 per receiving host.
        held = await eventually(lambda: current(len(receiver.requests)), lambda n: n >= 105, 30)
        assert held >= 105
        stop(first, kill=True)
        in_flight = len(receiver.requests) - 100
        receiver.release()
        second = start_worker(settings, "webhooks", log, extra_env=env)

        def all_received(requests: list[Received]) -> bool:
            return {r.webhook_id for r in requests} >= events

        # The killed worker's jobs run again once arq's in-progress lock lapses (job
        # timeout + 10 s), and its unacked events are redelivered once its leases lapse.
        await eventually(lambda: current(receiver.requests), all_received, 90)
        deliveries = await eventually(
            lambda: merchant.deliveries(endpoint["id"]),
            lambda ds: len(ds) == total and all(d["state"] == "delivered" for d in ds),
            30,
        )
    finally:
        stop(first, kill=True)
        if second is not None:
            stop(second)
    assert in_flight > 0
    received_ids = [r.webhook_id for r in receiver.requests]
    assert set(received_ids) == events
    # Duplicates are allowed (at least once) and carry the same webhook-id and body.
    for request in receiver.requests:
        assert request.webhook_id == request.event_id()
        assert request.body == bodies[request.webhook_id]
        assert merchant_verifies(endpoint["secret"], request.headers, request.body)
    assert len(received_ids) > total  # the requests in flight at the kill were sent again
    # The service's records: one delivery per event, delivered, one success recorded.
    assert sorted(d["event_id"] for d in deliveries) == sorted(events)
    for delivery in deliveries:
        successes = [a for a in delivery["attempt_history"] if a["status_code"] == 200]
        assert len(successes) == 1, delivery
        assert delivery["attempts"] == 1, delivery["attempt_history"]


async def test_the_sweep_recovers_an_attempt_whose_job_was_lost(
    merchant: Merchant,
    receiver: Receiver,
    worker: RunWorker,
    redis: Redis,
    settings: Settings,
) -> None:
    endpoint = await merchant.endpoint(receiver.url)
    await merchant.session()
    keys = Keys(settings.key_prefix)
    stream = keys.events(partition_of_account(ACCOUNT))
    entries = await redis.xrange(stream)
    items = [(raw_id.decode(), *read_stored_event(fields[b"e"])) for raw_id, fields in entries]
    # Dispatched (and acknowledged) two minutes ago, then the attempt's job was lost, as a
    # crash between recording an attempt and queueing the next would lose it.
    await redis.xgroup_create(stream, "webhooks", id="$", mkstream=True)
    past = ManualClock(start_ms=time.time_ns() // 1_000_000 - 120_000)
    dispatcher = WebhookDispatcher(WebhookStore(redis, keys), JobQueue(redis, keys), past, (1.0,))
    assert await dispatcher.dispatch(items) == 1
    [delivery] = await merchant.deliveries(endpoint["id"])
    job_id = webhook_job_id(settings.key_prefix, delivery["id"], 1)
    assert await redis.zrem(keys.arq_queue("webhooks"), job_id) == 1
    await redis.delete(f"arq:job:{job_id}")
    # Only the sweep (at start-up, then every 30 s) can find it: the event was acknowledged.
    await worker()
    await eventually(lambda: current(receiver.requests), lambda r: len(r) >= 1, 10)
    [done] = await settled(merchant, endpoint["id"], 1)
    assert (done["state"], done["attempts"]) == ("delivered", 1)
    assert receiver.requests[0].webhook_id == delivery["event_id"]
