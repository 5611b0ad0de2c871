"""Fraud scoring through real arq workers on the real Redis: sessions created through the app
get their risk and one `risk_scored` event; account thresholds apply; a repeated job and a
SIGKILLed worker still leave every session scored exactly once."""

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

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from shared.clock import ManualClock
from shared.config import Settings
from shared.crypto import DataCipher
from shared.events.model import EVENT_DECODER, SessionRiskScored
from shared.ids import partition_of_account
from shared.jobs import FRAUD_QUEUE, TASK_SCORE_SESSION
from shared.redis.client import create_redis
from shared.redis.keys import Keys
from shared.risk.service import velocity_digest
from shared.wiring import arq_client
from tests.processes import start_worker, stop
from tests.support import ACCOUNT, OTHER_ACCOUNT, eventually, seed_body
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
    r = await client.post(
        URL, json=seed_body(customer_email=email, fraud_signals=fraud), headers=headers
    )
    assert r.status_code == 201, r.text
    session_id: str = r.json()["session_id"]
    return session_id


async def risk_events(redis: Redis, settings: Settings, account: str = ACCOUNT) -> Counter[str]:
    """session id -> number of risk_scored events in the account's partition stream."""
    stream = Keys(settings.key_prefix).events(partition_of_account(account))
    counts: Counter[str] = Counter()
    for _, fields in await redis.xrange(stream):
        event = EVENT_DECODER.decode(fields[b"e"])
        if isinstance(event, SessionRiskScored):
            counts[event.session_id] += 1
    return counts


async def scored_event(redis: Redis, settings: Settings, session_id: str) -> SessionRiskScored:
    stream = Keys(settings.key_prefix).events(partition_of_account(ACCOUNT))
    found = [
        event
        for _, fields in await redis.xrange(stream)
        if isinstance(event := EVENT_DECODER.decode(fields[b"e"]), SessionRiskScored)
        and event.session_id == session_id
    ]
    assert len(found) == 1, found
    return found[0]


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
        event = await scored_event(redis, settings, ids[name])
        assert event.sequence == 2  # created = 1
        assert event.data.risk.status == "scored"
        assert (event.data.risk.score, event.data.risk.level) == (score, level)
        assert list(event.data.risk.reasons) == reasons
        assert event.data.object.risk == event.data.risk


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


async def test_a_repeated_job_changes_nothing(
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
    before = (await client.get(f"{URL}/{session_id}", headers=admin_headers)).json()

    # arq runs jobs at least once: the same job again (under another id) must be a no-op.
    keys = Keys(settings.key_prefix)
    arq = arq_client(create_redis(settings))
    try:
        job = await arq.enqueue_job(
            TASK_SCORE_SESSION,
            session_id,
            _job_id=f"{settings.key_prefix}:score-again:{session_id}",
            _queue_name=keys.arq_queue(FRAUD_QUEUE),
        )
        assert job is not None
        assert await job.result(timeout=10, poll_delay=0.05) is False  # ran, wrote nothing
    finally:
        await arq.aclose(close_connection_pool=True)

    assert (await risk_events(redis, settings))[session_id] == 1
    after = (await client.get(f"{URL}/{session_id}", headers=admin_headers)).json()
    assert after["risk"] == before["risk"]
    assert after["updated_at"] == before["updated_at"]
    digest = velocity_digest(DataCipher(settings.data_key_bytes), "email", "repeat@example.com")
    velocity = keys.risk_velocity(ACCOUNT, "email", digest)
    assert await redis.zrange(velocity, 0, -1) == [session_id.encode()]


def tail(log: Path, chars: int = 3000) -> str:
    """The end of the workers' log (for failure messages)."""
    return log.read_text()[-chars:]


async def freeze_holding_jobs(
    proc: subprocess.Popen[bytes],
    redis: Redis,
    settings: Settings,
    queue: str,
    left: int,
    log: Path,
) -> set[str]:
    """Once at most `left` jobs remain queued, SIGSTOP the worker at a moment it holds jobs
    (arq in-progress keys); returns their ids. The caller kills it while frozen, so those
    jobs are certainly orphaned, not merely possibly."""
    pattern = f"arq:in-progress:{settings.key_prefix}:score:*"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, tail(log)
        assert time.monotonic() < deadline, tail(log)
        if await redis.zcard(queue) <= left:
            proc.send_signal(signal.SIGSTOP)
            held = {
                key.decode().removeprefix("arq:in-progress:")
                async for key in redis.scan_iter(match=pattern)
            }
            if held:
                return held
            proc.send_signal(signal.SIGCONT)  # between jobs: let it run on a little
        await asyncio.sleep(0.002)


@pytest.mark.e2e
async def test_sigkilled_worker_still_scores_every_session_exactly_once(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
    tmp_path: Path,
) -> None:
    total = 300
    shared_phone = "+15550001111"  # one velocity counter every run touches
    ids = []
    for _ in range(total):
        ids.append(await create(client, admin_headers, signals(clock.now_ms(), phone=shared_phone)))
    queue = Keys(settings.key_prefix).arq_queue(FRAUD_QUEUE)
    assert await redis.zcard(queue) == total

    log = tmp_path / "workers.log"
    # Small batches (arq reads max_jobs per poll, 0.25 s apart), so the kill lands mid-way.
    first = start_worker(settings, FRAUD_QUEUE, log, {"HS_WORKER_MAX_JOBS": "50"})
    try:
        held = await freeze_holding_jobs(first, redis, settings, queue, total - 110, log)
    finally:
        stop(first, kill=True)  # SIGKILL: no clean-up of what it held
    scored_at_kill = sum((await risk_events(redis, settings)).values())
    assert 0 < scored_at_kill < total

    # arq re-runs what the killed worker held once its in-progress keys lapse (job timeout +
    # 10 s); everything else the new worker takes at once.
    async def progress() -> tuple[Counter[str], int]:
        return await risk_events(redis, settings), await redis.zcard(queue)

    second = start_worker(settings, FRAUD_QUEUE, log)
    try:
        # Done = every session scored and every job finished (a held job whose session was
        # already scored still runs, and finds nothing to do).
        counts, queued = await eventually(progress, lambda p: len(p[0]) == total and p[1] == 0, 45)
    finally:
        stop(second)
    assert set(counts) == set(ids), tail(log)
    assert queued == 0
    assert set(counts.values()) == {1}  # exactly one risk_scored event per session
    records = await asyncio.gather(
        *(client.get(f"{URL}/{session_id}", headers=admin_headers) for session_id in ids[::30])
    )
    assert {r.json()["risk"]["status"] for r in records} == {"scored"}
    digest = velocity_digest(
        DataCipher(settings.data_key_bytes), "phone", "".join(filter(str.isdigit, shared_phone))
    )
    velocity = Keys(settings.key_prefix).risk_velocity(ACCOUNT, "phone", digest)
    assert await redis.zcard(velocity) == total  # re-runs never counted a session twice

    # Each job the killed worker held was run to the end by the new one: a held job has no
    # result (arq writes it as it drops the in-progress key), so a result now is the re-run's.
    for job_id in held:
        assert await redis.exists(f"arq:result:{job_id}"), job_id

    # Reason codes and scores are logged; no signal value ever is.
    text = tail(log, 10**9)
    assert '"session.risk_scored"' in text
    for pii in (shared_phone, "5550001111", "shopper", "192.0.2."):
        assert pii not in text
