"""The SMS challenge through the real app: an elevated session is asked for a code, the dev
sender's outbox stands in for the shopper's phone, and confirm pays once the code passed.
Limits (attempts, expiry, resends), races, scope, and that no code or phone ever leaks."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import httpx
import msgspec
import pytest
import structlog
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from services.api.app import create_app
from services.api.lifespan import attach, build_services
from shared.challenge.sms import DevSmsSender, SmsNotConfigured, UnconfiguredSmsSender
from shared.challenge.store import DevSmsOutbox
from shared.clock import ManualClock
from shared.config import Settings
from shared.events.model import (
    EVENT_TYPES,
    Event,
    SessionChallengeFailed,
    SessionChallengeRequired,
)
from shared.redis.keys import Keys
from tests.api.test_logging_pii import LogCapture
from tests.support import seed_body
from tests.support.checkout import card, open_session
from tests.support.events import events_of, partition_stream, stream_entries

Client = httpx.AsyncClient  # helpers take the test client or the racing one
TestClient = AsyncTestClient[Any]
URL = "/v1/hosted-sessions"


def elevated_body(**signals: Any) -> dict[str, Any]:
    """The seed's body, whose signals score elevated (admin actor, other email, form loaded in
    1970: 45), with an IP, email and phone of its own so velocity never adds to it."""
    own = {
        **seed_body()["fraud_signals"],
        "ip_address": f"203.0.113.{secrets.randbelow(250) + 1}",
        "email": f"shopper.{secrets.token_hex(4)}@example.com",
        "phone": f"+1555{secrets.randbelow(10**7):07d}",
    }
    own.update(signals)
    return seed_body(fraud_signals={k: v for k, v in own.items() if v is not None})


class Elevated(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    browser: dict[str, str]
    phone: str


async def elevated_session(
    client: Client, headers: dict[str, str], *, scope: str = "payment", **signals: Any
) -> Elevated:
    body = elevated_body(**signals)
    body["scope"] = scope
    r = await client.post(URL, json=body, headers=headers)
    assert r.status_code == 201, r.text
    created = r.json()
    return Elevated(
        session_id=created["session_id"],
        browser={"Authorization": f"Bearer {created['client_secret']}"},
        phone=str(body["fraud_signals"].get("phone")),
    )


@pytest.fixture
def outbox(redis: Redis, settings: Settings) -> DevSmsOutbox:
    """The dev sender's outbox: where the shopper's phone would have shown the code."""
    return DevSmsOutbox(redis, Keys(settings.key_prefix), ttl_seconds=300)


async def ask(client: Client, s: Elevated) -> httpx.Response:
    return await client.post(f"{URL}/{s.session_id}/challenge", headers=s.browser)


async def verify(client: Client, s: Elevated, code: str) -> httpx.Response:
    return await client.post(
        f"{URL}/{s.session_id}/challenge/verify", json={"code": code}, headers=s.browser
    )


async def sent_code(outbox: DevSmsOutbox, session_id: str) -> str:
    code = await outbox.last_code(session_id)
    assert code is not None
    assert len(code) == 6
    assert code.isdigit()
    return code


def wrong(code: str, k: int = 1) -> str:
    """Another code than `code` (k in 1..999999 never wraps back to it)."""
    return f"{(int(code) + k) % 10**6:06d}"


def hint(phone: str) -> str:
    return f"{phone[:2]}{'*' * (len(phone) - 6)}{phone[-4:]}"


def of_type(events: list[Event], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def assert_error(r: httpx.Response, status: int, code: str, recoverable: bool) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code
    assert body["recoverable"] is recoverable
    return str(body["message"])


async def test_elevated_session_passes_the_challenge_then_pays(
    client: TestClient,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
    outbox: DevSmsOutbox,
) -> None:
    s = await elevated_session(client, admin_headers)
    r = await client.post(f"{URL}/{s.session_id}/confirm", json=card(), headers=s.browser)
    assert_error(r, 403, "challenge_required", True)

    r = await ask(client, s)
    assert r.status_code == 200, r.text
    sent = r.json()
    assert sent["status"] == "sent"
    assert sent["phone_hint"] == hint(s.phone)
    assert sent["phone_hint"].startswith("+1******")
    assert sent["resends_left"] == 2
    expires = datetime.fromisoformat(sent["expires_at"].replace("Z", "+00:00"))
    assert int(expires.timestamp() * 1000) == clock.now_ms() + 300_000
    code = await sent_code(outbox, s.session_id)
    assert code not in r.text

    r = await verify(client, s, wrong(code))
    assert "4 attempts left" in assert_error(r, 403, "challenge_failed", True)
    r = await verify(client, s, code)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "verified"}

    # Passed once: the code is used up, and there is nothing more to ask for.
    assert_error(await verify(client, s, code), 400, "validation_error", False)
    assert_error(await ask(client, s), 400, "validation_error", False)

    r = await client.post(f"{URL}/{s.session_id}/confirm", json=card(), headers=s.browser)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "complete"

    events = await events_of(redis, settings, s.session_id)
    assert [e.type for e in events] == [
        "hosted_session.created",
        "hosted_session.risk_scored",  # scored inline by the challenge: no worker ran
        "hosted_session.challenge_required",
        "hosted_session.challenge_failed",
        "hosted_session.challenge_succeeded",
        "hosted_session.completed",
    ]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    [required] = of_type(events, SessionChallengeRequired)
    assert (required.data.sends, required.data.resends_left) == (1, 2)
    assert required.data.attempts_left == 5
    assert required.data.expires_at == sent["expires_at"]
    [failed] = of_type(events, SessionChallengeFailed)
    assert (failed.data.reason, failed.data.attempts_left, failed.data.locked) == (
        "wrong_code",
        4,
        False,
    )
    # Events carry the merchant view only: no code, no phone, no hash.
    entries = await stream_entries(redis, partition_stream(settings.key_prefix))
    raw = b"".join(entry.json for entry in entries)
    for leaked in (code, s.phone, s.phone[2:], "code_hash"):
        assert leaked.encode() not in raw
    assert {e.type for e in events} <= set(EVENT_TYPES)


async def test_wrong_codes_lock_the_challenge_for_good(
    client: TestClient,
    admin_headers: dict[str, str],
    redis: Redis,
    settings: Settings,
    outbox: DevSmsOutbox,
) -> None:
    s = await elevated_session(client, admin_headers)
    assert (await ask(client, s)).status_code == 200
    code = await sent_code(outbox, s.session_id)
    for k, left in zip(range(1, 5), (4, 3, 2, 1), strict=True):
        message = assert_error(
            await verify(client, s, wrong(code, k)), 403, "challenge_failed", True
        )
        assert f"{left} attempt" in message
    message = assert_error(await verify(client, s, wrong(code, 5)), 403, "challenge_failed", False)
    assert "no longer" in message

    # Locked: the right code, a new code and confirm all stay refused.
    assert_error(await verify(client, s, code), 403, "challenge_failed", False)
    assert_error(await ask(client, s), 403, "challenge_failed", False)
    r = await client.post(f"{URL}/{s.session_id}/confirm", json=card(), headers=s.browser)
    assert_error(r, 403, "challenge_required", True)

    events = await events_of(redis, settings, s.session_id)
    failed = of_type(events, SessionChallengeFailed)
    assert [e.data.attempts_left for e in failed] == [4, 3, 2, 1, 0]
    assert [e.data.locked for e in failed] == [False] * 4 + [True]
    assert len(of_type(events, SessionChallengeRequired)) == 1  # no code after the lock
    assert "hosted_session.challenge_succeeded" not in {e.type for e in events}


async def test_an_expired_code_fails_without_spending_an_attempt(
    client: TestClient,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
    outbox: DevSmsOutbox,
) -> None:
    s = await elevated_session(client, admin_headers)
    assert (await ask(client, s)).status_code == 200
    first = await sent_code(outbox, s.session_id)
    clock.advance(300)
    message = assert_error(await verify(client, s, first), 403, "challenge_failed", True)
    assert "expired" in message
    assert "5 attempts left" in message
    # Told once with its event; asked again, the answer is the same and nothing is written.
    assert "expired" in assert_error(await verify(client, s, first), 403, "challenge_failed", True)

    r = await ask(client, s)
    assert r.status_code == 200, r.text
    assert r.json()["resends_left"] == 1
    second = await sent_code(outbox, s.session_id)
    if second != first:  # a new code replaces the old one (1 in a million they are equal)
        assert "4 attempts left" in assert_error(
            await verify(client, s, first), 403, "challenge_failed", True
        )
    assert (await verify(client, s, second)).status_code == 200

    events = await events_of(redis, settings, s.session_id)
    expired = [e for e in of_type(events, SessionChallengeFailed) if e.data.reason == "expired"]
    assert len(expired) == 1
    assert (expired[0].data.attempts_left, expired[0].data.locked) == (5, False)


async def test_resends_are_spaced_and_capped(
    client: TestClient,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
    outbox: DevSmsOutbox,
) -> None:
    s = await elevated_session(client, admin_headers)
    assert (await ask(client, s)).json()["resends_left"] == 2
    r = await ask(client, s)
    assert_error(r, 429, "rate_limited", True)
    assert r.headers["retry-after"] == "30"
    clock.advance(10.5)
    r = await ask(client, s)
    assert_error(r, 429, "rate_limited", True)
    assert r.headers["retry-after"] == "20"  # 19.5 s, rounded up
    clock.advance(19.5)
    assert (await ask(client, s)).json()["resends_left"] == 1
    clock.advance(30)
    assert (await ask(client, s)).json()["resends_left"] == 0
    clock.advance(30)
    r = await ask(client, s)
    assert "No more codes" in assert_error(r, 429, "rate_limited", False)
    assert "retry-after" not in r.headers  # waiting does not help

    # The last code still works.
    assert (await verify(client, s, await sent_code(outbox, s.session_id))).status_code == 200
    required = of_type(await events_of(redis, settings, s.session_id), SessionChallengeRequired)
    assert [(e.data.sends, e.data.resends_left) for e in required] == [(1, 2), (2, 1), (3, 0)]


@pytest.fixture
async def racing_client(settings: Settings, clock: ManualClock) -> AsyncIterator[Client]:
    """The app served in the test's own event loop, so gathered requests really interleave
    (the test client hands each request to a portal thread and waits for it). The services
    are opened as the lifespan opens them; its own context cannot span fixture tasks."""
    app = create_app(settings, clock=clock)
    services = build_services(settings, clock)
    attach(app, services)
    try:
        # Litestar types its ASGI callable more narrowly than httpx spells a generic one.
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as c:
            yield c
    finally:
        await services.aclose()


async def test_racing_verifies_are_counted_one_by_one(
    racing_client: Client,
    admin_headers: dict[str, str],
    redis: Redis,
    settings: Settings,
    outbox: DevSmsOutbox,
) -> None:
    # Wrong codes at once: every one spends an attempt, none is lost to the race.
    s = await elevated_session(racing_client, admin_headers)
    assert (await ask(racing_client, s)).status_code == 200
    code = await sent_code(outbox, s.session_id)
    responses = await asyncio.gather(
        *(verify(racing_client, s, wrong(code, k)) for k in range(1, 5))
    )
    messages = sorted(assert_error(r, 403, "challenge_failed", True) for r in responses)
    assert [m.rsplit("; ", 1)[1] for m in messages] == [
        "1 attempt left",
        "2 attempts left",
        "3 attempts left",
        "4 attempts left",
    ]
    failed = of_type(await events_of(redis, settings, s.session_id), SessionChallengeFailed)
    assert sorted(e.data.attempts_left for e in failed) == [1, 2, 3, 4]

    # The right code several times at once: one passes, the others find it used.
    s = await elevated_session(racing_client, admin_headers)
    assert (await ask(racing_client, s)).status_code == 200
    code = await sent_code(outbox, s.session_id)
    responses = await asyncio.gather(*(verify(racing_client, s, code) for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [200, 400, 400, 400]
    events = await events_of(redis, settings, s.session_id)
    assert [e.type for e in events].count("hosted_session.challenge_succeeded") == 1

    # Sends at once: one code goes out, the others wait.
    s = await elevated_session(racing_client, admin_headers)
    responses = await asyncio.gather(*(ask(racing_client, s) for _ in range(3)))
    assert sorted(r.status_code for r in responses) == [200, 429, 429]
    required = of_type(await events_of(redis, settings, s.session_id), SessionChallengeRequired)
    assert len(required) == 1


async def test_only_elevated_payment_sessions_with_a_phone_are_challenged(
    client: TestClient,
    admin_headers: dict[str, str],
    clock: ManualClock,
    redis: Redis,
    settings: Settings,
    outbox: DevSmsOutbox,
) -> None:
    # A wallet credential may not use the payment endpoints.
    s = await elevated_session(client, admin_headers, scope="wallet")
    assert_error(await ask(client, s), 403, "insufficient_scope", False)
    assert_error(await verify(client, s, "123456"), 403, "insufficient_scope", False)

    # Normal risk: nothing to verify.
    session_id, browser = await open_session(client, admin_headers, clock)
    normal = Elevated(session_id=session_id, browser=browser, phone="")
    message = assert_error(await ask(client, normal), 400, "validation_error", False)
    assert "No challenge needed" in message
    assert_error(await verify(client, normal, "123456"), 400, "validation_error", False)

    # Highest risk (signed out, no user agent: 75): refused, without saying why.
    s = await elevated_session(client, admin_headers, is_authorized=False, user_agent=None)
    message = assert_error(await ask(client, s), 403, "challenge_failed", False)
    assert not {"risk", "fraud", "score"} & set(message.lower().split())
    view = (await client.get(f"{URL}/{s.session_id}", headers=admin_headers)).json()
    assert view["risk"]["level"] == "highest"
    assert await outbox.last_message(s.session_id) is None

    # No phone to text.
    s = await elevated_session(client, admin_headers, phone=None)
    message = assert_error(await ask(client, s), 400, "validation_error", False)
    assert message.startswith("fraud_signals.phone")

    # A code that is not six digits is refused before it is looked at.
    s = await elevated_session(client, admin_headers)
    assert (await ask(client, s)).status_code == 200
    for bad in ("12345", "1234567", "12a456", 123456):
        r = await client.post(
            f"{URL}/{s.session_id}/challenge/verify", json={"code": bad}, headers=s.browser
        )
        assert_error(r, 400, "validation_error", False)
    types = [e.type for e in await events_of(redis, settings, s.session_id)]
    assert "hosted_session.challenge_failed" not in types


@pytest.fixture
def logs(
    client: TestClient, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> Iterator[LogCapture]:
    """Logging as the API process configures it (see tests/api/test_logging_pii.py)."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    yield LogCapture(settings, capsys)
    structlog.reset_defaults()
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


async def test_codes_and_phones_never_reach_logs_or_responses(
    client: TestClient,
    admin_headers: dict[str, str],
    outbox: DevSmsOutbox,
    logs: LogCapture,
) -> None:
    logs.start()
    s = await elevated_session(client, admin_headers)
    responses = [await ask(client, s)]
    code = await sent_code(outbox, s.session_id)
    responses.append(await verify(client, s, wrong(code)))
    responses.append(await verify(client, s, code))
    responses.append(
        await client.post(f"{URL}/{s.session_id}/confirm", json=card(), headers=s.browser)
    )
    assert [r.status_code for r in responses] == [200, 403, 200, 200]

    text, events = logs.read()
    national = s.phone[2:]
    for leaked in (national, national[-7:]):
        assert leaked not in text, f"{leaked!r} reached the log"
    # Codes are looked for in every logged value but the timestamp, whose microseconds are
    # six digits too.
    logged = " ".join(str(v) for e in events for k, v in e.items() if k != "timestamp")
    for leaked in (code, wrong(code)):
        assert leaked not in logged, f"{leaked!r} reached the log"
    for leaked in (code, wrong(code), national, national[-7:]):
        for r in responses:
            assert leaked not in r.text
    [dev_line] = [e for e in events if e.get("event") == "sms.dev_sent"]
    assert dev_line["to"] == hint(s.phone)
    assert dev_line["reference"] == s.session_id
    verified = [e for e in events if e.get("event") == "challenge.verified"]
    assert [e["outcome"] for e in verified] == ["wrong_code", "passed"]


async def test_production_without_a_sender_sends_nothing_and_has_no_dev_outbox(
    settings: Settings, redis: Redis, admin_headers: dict[str, str], clock: ManualClock
) -> None:
    # Production refuses to start so (shared/challenge/senders.py:sms_config_problems); a
    # process built anyway answers every ask with a refusal that waiting does not cure.
    production = msgspec.structs.replace(settings, env="production")
    with pytest.raises(ValueError, match="refused in production"):
        DevSmsSender(production, DevSmsOutbox(redis, Keys(settings.key_prefix), 300))
    with pytest.raises(SmsNotConfigured, match="no SMS provider configured"):
        await UnconfiguredSmsSender().send("+15555550123", "123456 is the code")

    app = create_app(production, clock=clock)
    async with AsyncTestClient(app, base_url="http://testserver.local") as client:
        s = await elevated_session(client, admin_headers)
        r = await ask(client, s)
        assert_error(r, 502, "processing_error", False)
        assert "retry-after" not in r.headers
    assert await redis.keys(f"{settings.key_prefix}:*:dev:sms:*") == []
