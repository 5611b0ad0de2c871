"""Fraud scoring through real workers on the real Redis: the scoring loop reads the `created`
events (consumer group `risk-scorer`), so sessions created through the app get their risk and
one `risk_scored` event; account thresholds apply; a batch keeps creation order for velocity;
sessions created before any scorer ran are scored; a redelivered event, and a worker SIGKILLed
mid-batch, still leave every session scored exactly once."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from shared.clock import ManualClock
from shared.config import Settings
from shared.crypto import DataCipher
from shared.events.model import SessionRiskScored
from shared.events.stored import decode_stored_event
from shared.ids import PARTITIONS, partition_of_account
from shared.redis.client import create_redis
from shared.redis.jobs import FRAUD_QUEUE
from shared.redis.keys import Keys
from shared.risk.service import velocity_digest
from shared.sessions.params import CreateSessionParams
from shared.wiring import wire_core
from tests.processes import start_worker, stop
from tests.support import ACCOUNT, OTHER_ACCOUNT, eventually, seed_body
from tests.support.events import account_events, partition_stream, stream_entries
from tests.support.sessions import create_session
from workers.fraud import CONSUMER_GROUP
from workers.main import run_workers

URL = "/v1/hosted-sessions"
Client = AsyncTestClient[Any]
RunWorker = Callable[[], Coroutine[Any, Any, None]]
_unique = itertools.count(1)


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[RunWorker]:
    """Starts a real fraud worker in this process; stops it (SIGTERM path) at teardown."""
    stop_event = asyncio.Event()
    started: list[asyncio.Task[None]] = []

    async def start() -> None:
        started.append(asyncio.create_task(run_workers(settings, [FRAUD_QUEUE], stop_event)))

    yield start
    stop_event.set()
    await asyncio.gather(*started)


def signals(now_ms: int, **overrides: Any) -> dict[str, Any]:
    """Clean signals (score 0), unique per call so velocity stays out of the way."""
    n = next(_unique)
    return {
        "ip_address": f"192.0.2.{n % 250 + 1}",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "email": f"shopper{n}@example.com",
        "phone": f"+1555{n:07d}",
        "account_type": "member",
        "request_timestamp": now_ms - 30_000,
        "is_authorized": True,
        "is_admin": False,
        **overrides,
    }


async def create(client: Client, headers: dict[str, str], fraud: dict[str, Any] | None) -> str:
    email = fraud["email"] if fraud and fraud.get("email") else "buyer@example.com"
    return await create_session(client, headers, customer_email=email, fraud_signals=fraud)


async def risk_events(redis: Redis, settings: Settings, account: str = ACCOUNT) -> Counter[str]:
    """session id -> number of risk_scored events in the account's partition stream."""
    counts: Counter[str] = Counter()
    for event in await account_events(redis, settings.key_prefix, account):
        if isinstance(event, SessionRiskScored):
            counts[event.session_id] += 1
    return counts


async def all_risk_events(redis: Redis, settings: Settings) -> Counter[str]:
    """risk_events over every partition."""
    keys = Keys(settings.key_prefix)
    counts: Counter[str] = Counter()
    for partition in range(PARTITIONS):
        for entry in await stream_entries(redis, keys.events(partition)):
            if isinstance(event := entry.event, SessionRiskScored):
                counts[event.session_id] += 1
    return counts


async def scored_event(
    redis: Redis, settings: Settings, session_id: str
) -> tuple[SessionRiskScored, bytes]:
    """The session's one risk_scored event, decoded and as JSON."""
    stream = partition_stream(settings.key_prefix)
    found = [
        (event, entry.json)
        for entry in await stream_entries(redis, stream)
        if isinstance(event := entry.event, SessionRiskScored) and event.session_id == session_id
    ]
    assert len(found) == 1, found
    return found[0]


async def group_state(redis: Redis, settings: Settings) -> tuple[int, int]:
    """(entries the scorer group holds unacked, entries it has not read yet) over all
    partitions; (0, 0) once it has read and acknowledged everything."""
    keys = Keys(settings.key_prefix)
    pending = unread = 0
    for partition in range(PARTITIONS):
        stream = keys.events(partition)
        if not await redis.exists(stream):
            continue
        for group in await redis.xinfo_groups(stream):
            if group["name"].decode() == CONSUMER_GROUP:
                pending += int(group["pending"])
                unread += int(group["lag"] or 0)
    return pending, unread


async def test_new_sessions_are_scored_with_level_reasons_and_one_event(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
    worker: RunWorker,
) -> None:
    now = clock.now_ms()
    cases = {
        "normal": (signals(now), 0, []),
        # timing_too_fast 30 + not_authorized 15
        "elevated": (
            signals(now, request_timestamp=now - 1_000, is_authorized=False),
            45,
            ["timing_too_fast", "not_authorized"],
        ),
        # timing_too_fast 30 + disposable 25 + missing UA 15 + not_authorized 15
        "highest": (
            signals(
                now,
                request_timestamp=now - 500,
                email="card.tester@mailinator.com",
                user_agent=None,
                is_authorized=False,
            ),
            85,
            ["timing_too_fast", "disposable_email", "missing_user_agent", "not_authorized"],
        ),
        "no_signals": (None, 35, ["no_signals"]),
    }
    ids = {
        name: await create(client, admin_headers, fraud) for name, (fraud, _, _) in cases.items()
    }
    pending = (await client.get(f"{URL}/{ids['normal']}", headers=admin_headers)).json()
    assert pending["risk"]["status"] == "pending"
    # Create enqueues nothing: no arq queue, no arq job.
    assert await redis.keys(f"*{settings.key_prefix}:queue:*") == []

    await worker()
    done = await eventually(
        lambda: risk_events(redis, settings), lambda c: len(c) == len(cases), 10
    )
    assert done == Counter(ids.values())  # exactly one event each

    for name, (_, score, reasons) in cases.items():
        level = "normal" if name == "no_signals" else name
        view = (await client.get(f"{URL}/{ids[name]}", headers=admin_headers)).json()
        expected = {"status": "scored", "score": score, "level": level, "reasons": reasons}
        assert view["risk"] == expected, name
        assert "fraud_signals" not in view
        event, raw = await scored_event(redis, settings, ids[name])
        assert event.sequence == 2  # created = 1
        assert event.data.risk.status == "scored"
        assert (event.data.risk.score, event.data.risk.level) == (score, level)
        assert list(event.data.risk.reasons) == reasons
        assert event.data.status == "open"
        # Only what scoring adds: not the session's view again.
        assert b'"object"' not in raw
        assert len(raw) < 500, len(raw)


async def test_account_thresholds_decide_the_level(
    client: Client,
    admin_headers: dict[str, str],
    token_for: Callable[..., str],
    redis: Redis,
    settings: Settings,
    worker: RunWorker,
) -> None:
    r = await client.patch(
        "/v1/account/settings",
        json={"risk": {"elevated_threshold": 10, "highest_threshold": 30}},
        headers=admin_headers,
    )
    assert r.status_code == 200, r.text
    strict = await create(client, admin_headers, None)  # no_signals: 35
    other_headers = {
        "Authorization": f"Bearer {token_for(OTHER_ACCOUNT)}",
        "X-Payment-Account-Uid": OTHER_ACCOUNT,
    }
    default = await create(client, other_headers, None)

    await worker()
    await eventually(lambda: risk_events(redis, settings), lambda c: strict in c, 10)
    await eventually(
        lambda: risk_events(redis, settings, OTHER_ACCOUNT), lambda c: default in c, 10
    )
    strict_view = (await client.get(f"{URL}/{strict}", headers=admin_headers)).json()
    assert (strict_view["risk"]["score"], strict_view["risk"]["level"]) == (35, "highest")
    default_view = (await client.get(f"{URL}/{default}", headers=other_headers)).json()
    assert (default_view["risk"]["score"], default_view["risk"]["level"]) == (35, "normal")


async def test_a_batch_keeps_creation_order_and_scores_each_session_once(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
    worker: RunWorker,
) -> None:
    total = 400
    shared_ip = "198.51.100.23"
    ids = []
    for _ in range(total):
        clock.advance(0.001)  # one ms apart: creation order is the velocity order
        ids.append(
            await create(client, admin_headers, signals(clock.now_ms(), ip_address=shared_ip))
        )

    def batches() -> float:
        return REGISTRY.get_sample_value("hs_fraud_batch_size_count") or 0.0

    batches_before = batches()
    await worker()
    counts = await eventually(lambda: risk_events(redis, settings), lambda c: len(c) == total, 20)
    assert counts == Counter(ids)  # each once
    # Scored in batches, not one by one (a backlog of 400 fits in a few reads).
    assert 0 < batches() - batches_before <= total / 20

    # velocity_ip hits from the 6th session of one IP within 10 min: the batch counted each
    # session after exactly the ones created before it.
    for n, session_id in enumerate(ids, start=1):
        event, _ = await scored_event(redis, settings, session_id)
        expected = ["velocity_ip"] if n > 5 else []
        assert list(event.data.risk.reasons) == expected, n
    digest = velocity_digest(DataCipher(settings.data_key_bytes), "ip", shared_ip)
    velocity = Keys(settings.key_prefix).risk_velocity(ACCOUNT, "ip", digest)
    assert await redis.zcard(velocity) == total


async def test_sessions_created_before_any_scorer_ran_are_scored(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
    worker: RunWorker,
) -> None:
    ids = [await create(client, admin_headers, signals(clock.now_ms())) for _ in range(5)]
    ended = ids.pop()
    r = await client.post(f"{URL}/{ended}/expire", headers=admin_headers)
    assert r.status_code == 200, r.text
    stream = Keys(settings.key_prefix).events(partition_of_account(ACCOUNT))
    assert await redis.xinfo_groups(stream) == []  # no scorer has ever read the streams

    await worker()
    counts = await eventually(lambda: risk_events(redis, settings), lambda c: len(c) == 4, 10)
    assert counts == Counter(ids)
    # The group starts at the streams' start and reads everything: the expired session's
    # events too, left alone (a terminal session is never scored).
    assert await eventually(lambda: group_state(redis, settings), lambda s: s == (0, 0), 10) == (
        0,
        0,
    )
    assert ended not in await risk_events(redis, settings)
    view = (await client.get(f"{URL}/{ended}", headers=admin_headers)).json()
    assert view["risk"]["status"] == "pending"


async def test_a_redelivered_created_event_changes_nothing(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
    worker: RunWorker,
) -> None:
    fraud = signals(clock.now_ms(), email="repeat@example.com")
    session_id = await create(client, admin_headers, fraud)
    await worker()
    await eventually(lambda: risk_events(redis, settings), lambda c: session_id in c, 10)
    await eventually(lambda: group_state(redis, settings), lambda s: s == (0, 0), 10)
    before = (await client.get(f"{URL}/{session_id}", headers=admin_headers)).json()

    # At least once: rewind the group, so the worker reads the `created` event again.
    keys = Keys(settings.key_prefix)
    stream = keys.events(partition_of_account(ACCOUNT))
    # The rewind is read back in the same transaction: the running worker may catch up with
    # it at once, so a later read could not tell a rewind from none.
    pipe = redis.pipeline(transaction=True)
    pipe.xgroup_setid(stream, CONSUMER_GROUP, "0")
    pipe.xinfo_groups(stream)
    _, groups = await pipe.execute()
    rewound = next(g for g in groups if g["name"] in (CONSUMER_GROUP, CONSUMER_GROUP.encode()))
    assert rewound["last-delivered-id"] in ("0-0", b"0-0")
    await eventually(lambda: group_state(redis, settings), lambda s: s == (0, 0), 10)

    assert (await risk_events(redis, settings))[session_id] == 1
    after = (await client.get(f"{URL}/{session_id}", headers=admin_headers)).json()
    assert after["risk"] == before["risk"]
    assert after["updated_at"] == before["updated_at"]
    digest = velocity_digest(DataCipher(settings.data_key_bytes), "email", "repeat@example.com")
    velocity = keys.risk_velocity(ACCOUNT, "email", digest)
    assert await redis.zrange(velocity, 0, -1) == [session_id.encode()]


# --- worker processes ------------------------------------------------------------------------


def tail(log: Path, chars: int = 3000) -> str:
    """The end of the workers' log (for failure messages)."""
    return log.read_text()[-chars:]


async def create_directly(
    settings: Settings, accounts: list[str], per_account: int, phone: str
) -> list[str]:
    """Sessions created through the session service (what the API's create runs), faster
    than over HTTP; every one with the same phone (one velocity counter per account)."""
    redis = create_redis(settings)
    clock = ManualClock()
    sessions = wire_core(settings, redis, clock).sessions
    ids = []
    try:
        for _ in range(per_account):
            clock.advance(0.001)
            for account in accounts:
                fraud = signals(clock.now_ms(), phone=phone)
                body = seed_body(customer_email=fraud["email"], fraud_signals=fraud)
                params = msgspec.convert(body, CreateSessionParams)
                ids.append((await sessions.create(account, params)).session_id)
    finally:
        await redis.aclose(close_connection_pool=True)
    return ids


async def pending_sessions(redis: Redis, settings: Settings) -> set[str]:
    """Sessions of the `created` entries the scorer group has read and not acknowledged."""
    keys = Keys(settings.key_prefix)
    found: set[str] = set()
    for partition in range(PARTITIONS):
        stream = keys.events(partition)
        if not await redis.exists(stream):
            continue
        for entry in await redis.xpending_range(stream, CONSUMER_GROUP, "-", "+", 10_000):
            for _, fields in await redis.xrange(stream, entry["message_id"], entry["message_id"]):
                event = decode_stored_event(fields[b"e"])
                if event.type == "hosted_session.created":
                    found.add(event.session_id)
    return found


async def freeze_mid_batch(
    proc: subprocess.Popen[bytes], redis: Redis, settings: Settings, log: Path
) -> tuple[set[str], Counter[str]]:
    """SIGSTOP the worker at a moment it holds a batch it has read but not finished: entries
    unacknowledged, some of their sessions not scored yet. Returns those sessions and the
    scored ones. The caller kills it while frozen, so the batch is certainly orphaned."""
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, tail(log)
        assert time.monotonic() < deadline, tail(log)
        if (await group_state(redis, settings))[0]:
            proc.send_signal(signal.SIGSTOP)
            held = await pending_sessions(redis, settings)
            scored = await all_risk_events(redis, settings)
            if scored and held - set(scored):
                return held, scored
            proc.send_signal(signal.SIGCONT)  # between batches: let it run on a little
        await asyncio.sleep(0.002)


@pytest.mark.e2e
async def test_sigkilled_worker_mid_batch_loses_nothing_and_scores_nothing_twice(
    redis: Redis, settings: Settings, tmp_path: Path
) -> None:
    shared_phone = "+15550001111"
    accounts = [f"acct_kill_{i}" for i in range(4)]
    ids = await create_directly(settings, accounts, 500, shared_phone)
    total = len(ids)

    log = tmp_path / "workers.log"
    first = start_worker(settings, FRAUD_QUEUE, log)
    try:
        held, scored = await freeze_mid_batch(first, redis, settings, log)
    finally:
        killed = stop(first, kill=True)  # no clean-up: its leases and entries are orphaned
    assert killed == -9
    assert 0 < len(scored) < total
    assert held - set(scored)  # read, not scored: lost unless redelivered

    # The killed worker's partitions pass to the next one once its leases lapse
    # (CLAIM_IDLE_MS); the entries it had read are redelivered then.
    second = start_worker(settings, FRAUD_QUEUE, log)
    try:
        counts = await eventually(
            lambda: all_risk_events(redis, settings), lambda c: len(c) == total, 45
        )
        state = await eventually(lambda: group_state(redis, settings), lambda s: s == (0, 0), 15)
    finally:
        stop(second)
    assert set(counts) == set(ids), tail(log)
    assert set(counts.values()) == {1}  # exactly one risk_scored event per session
    assert state == (0, 0)  # every entry acknowledged, none left behind
    keys = Keys(settings.key_prefix)
    for account in accounts:
        partition = partition_of_account(account)
        assert await redis.xlen(keys.event_dead_letters(partition, CONSUMER_GROUP)) == 0
        digest = velocity_digest(
            DataCipher(settings.data_key_bytes), "phone", "".join(filter(str.isdigit, shared_phone))
        )
        # Re-scoring never counted a session twice.
        assert await redis.zcard(keys.risk_velocity(account, "phone", digest)) == 500

    # Reason codes and scores are logged; no signal value ever is.
    text = tail(log, 10**9)
    assert '"session.risk_scored"' in text
    for pii in (shared_phone, "5550001111", "shopper", "192.0.2."):
        assert pii not in text


@pytest.mark.e2e
async def test_two_workers_share_the_scoring(
    redis: Redis, settings: Settings, tmp_path: Path
) -> None:
    keys = Keys(settings.key_prefix)
    members = keys.lease_members(f"events:{CONSUMER_GROUP}")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    workers = [start_worker(settings, FRAUD_QUEUE, path) for path in logs]
    try:
        # Both have joined the group's leases before there is work to share.
        await eventually(lambda: redis.zcard(members), lambda n: n == 2, 20)
        await asyncio.sleep(2.5)  # a refresh or two: the first gives back half its partitions
        accounts = [f"acct_share_{i}" for i in range(32)]
        ids = await create_directly(settings, accounts, 20, "+15550002222")
        counts = await eventually(
            lambda: all_risk_events(redis, settings), lambda c: len(c) == len(ids), 30
        )
    finally:
        for proc in workers:
            stop(proc)
    assert counts == Counter(ids)
    for path in logs:
        assert '"session.risk_scored"' in path.read_text(), tail(path)
