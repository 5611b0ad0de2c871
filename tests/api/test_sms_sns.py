"""The Amazon SNS sender against real local endpoints: moto's SNS server (started here on a
loopback port, read back through its /moto-api/ data), and a tiny HTTP server answering
SNS's own errors (throttling, faults, refusals, a late answer). Also HS_SMS_CHALLENGES=off."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import msgspec
import pytest
from aiohttp import web
from litestar.testing import AsyncTestClient
from moto.server import ThreadedMotoServer

from services.api.app import create_app
from shared.challenge.model import ChallengeLimits, code_in, sms_text
from shared.challenge.senders import SnsSmsSender
from shared.challenge.sms import SmsRejected, SmsUnavailable
from shared.clock import ManualClock
from shared.config import Settings
from tests.api.test_challenge import (
    URL,
    Elevated,
    ask,
    assert_error,
    elevated_session,
    verify,
)
from tests.processes import api_process
from tests.support.checkout import card

_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    # Nothing of the machine's own AWS set-up may leak in.
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}
_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN")


def _aws(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    for name in _UNSET:
        monkeypatch.delenv(name, raising=False)
    for name, value in _AWS_ENV.items():
        monkeypatch.setenv(name, value)
    # The standard AWS way to point one service elsewhere, which botocore honours.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", endpoint)


@pytest.fixture
def moto_sns() -> Iterator[str]:
    """moto's server on a free loopback port; stopped after the test."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def moto_sms(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(phone, text) of every SMS in moto's /moto-api/data.json, oldest first."""
    return [(m["phone_number"], m["message"]) for m in data["sns"]["SMS"]]


def moto_texts(moto_url: str, phone: str) -> list[str]:
    """Every SMS moto's SNS took for `phone`, oldest first."""
    data = httpx.get(f"{moto_url}/moto-api/data.json", timeout=5).json()
    return [text for to, text in moto_sms(data) if to == phone]


async def moto_texts_async(moto_url: str, phone: str | None = None) -> list[tuple[str, str]]:
    """`moto_texts` from async code: (phone, text) pairs, for `phone` or all."""
    async with httpx.AsyncClient(timeout=5) as http:
        data = (await http.get(f"{moto_url}/moto-api/data.json")).json()
    return [(to, text) for to, text in moto_sms(data) if phone in (None, to)]


def sns_settings(settings: Settings, **changes: Any) -> Settings:
    return msgspec.structs.replace(settings, sms_sender="sns", **changes)


def new_phone() -> str:
    return f"+1555{secrets.randbelow(10**7):07d}"


def expected_text(code: str) -> str:
    # The seed's branding names the merchant "example": the only other thing in the text.
    return sms_text(code, "example", ChallengeLimits())


# --- moto ----------------------------------------------------------------------------


async def test_sns_sender_publishes_one_text_to_moto(
    moto_sns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _aws(monkeypatch, moto_sns)
    sender = SnsSmsSender(sender_id="Example")
    await sender.start()
    try:
        phone = new_phone()
        await sender.send(phone, "123456 is the code", reference="cs_test")
        assert await moto_texts_async(moto_sns, phone) == [(phone, "123456 is the code")]
        # Not E.164: refused before anything is sent.
        for bad in ("15555550123", "+0555550123", "+1 555 555 0123", "+1234"):
            with pytest.raises(SmsRejected):
                await sender.send(bad, "654321 is the code")
        assert [to for to, _ in await moto_texts_async(moto_sns)] == [phone]
    finally:
        await sender.aclose()


async def test_challenge_through_sns_verifies_and_pays(
    moto_sns: str,
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    clock: ManualClock,
    admin_headers: dict[str, str],
) -> None:
    _aws(monkeypatch, moto_sns)
    app = create_app(sns_settings(settings), clock=clock)
    async with AsyncTestClient(app, base_url="http://testserver.local") as client:
        s = await elevated_session(client, admin_headers)
        r = await ask(client, s)
        assert r.status_code == 200, r.text
        [(_, text)] = await moto_texts_async(moto_sns, s.phone)
        code = code_in(text)
        assert code is not None
        assert text == expected_text(code)
        assert code not in r.text
        r = await verify(client, s, code)
        assert r.status_code == 200, r.text
        r = await client.post(f"{URL}/{s.session_id}/confirm", json=card(), headers=s.browser)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "complete"


@pytest.mark.e2e
def test_api_process_with_sns_sender_challenge_then_pay(
    moto_sns: str,
    settings: Settings,
    tmp_path: Path,
    admin_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _aws(monkeypatch, moto_sns)  # the API process inherits this environment
    with (
        api_process(sns_settings(settings), tmp_path / "api.log") as base_url,
        httpx.Client(base_url=base_url, timeout=10) as http,
    ):
        phone = new_phone()
        r = http.post(URL, json=_elevated_body(phone), headers=admin_headers)
        assert r.status_code == 201, r.text
        created = r.json()
        sid = created["session_id"]
        browser = {"Authorization": f"Bearer {created['client_secret']}"}
        r = http.post(f"{URL}/{sid}/confirm", json=card(), headers=browser)
        assert (r.status_code, r.json()["code"]) == (403, "challenge_required"), r.text
        r = http.post(f"{URL}/{sid}/challenge", headers=browser)
        assert r.status_code == 200, r.text
        assert r.json()["phone_hint"] == f"+1******{phone[-4:]}"
        [text] = moto_texts(moto_sns, phone)
        code = code_in(text)
        assert code is not None
        assert text == expected_text(code)
        r = http.post(f"{URL}/{sid}/challenge/verify", json={"code": code}, headers=browser)
        assert r.status_code == 200, r.text
        r = http.post(f"{URL}/{sid}/confirm", json=card(), headers=browser)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "complete"
    log = (tmp_path / "api.log").read_text()
    assert "sms.sns_sent" in log
    assert phone not in log
    assert code not in log


def _elevated_body(phone: str) -> dict[str, Any]:
    from tests.api.test_challenge import elevated_body

    return elevated_body(phone=phone)


# --- an SNS endpoint that answers errors ------------------------------------------------

_NS = "http://sns.amazonaws.com/doc/2010-03-31/"


def _error(code: str, kind: str = "Sender") -> str:
    return (
        f'<ErrorResponse xmlns="{_NS}"><Error><Type>{kind}</Type><Code>{code}</Code>'
        f"<Message>{code} for +15555550123</Message></Error>"
        "<RequestId>r-1</RequestId></ErrorResponse>"
    )


_OK = (
    f'<PublishResponse xmlns="{_NS}"><PublishResult><MessageId>m-1</MessageId>'
    "</PublishResult><ResponseMetadata><RequestId>r-2</RequestId></ResponseMetadata>"
    "</PublishResponse>"
)


@dataclass
class FlakySns:
    """Answers each Publish by the next step of `script` (the last one repeats):
    throttle | fault | reject | slow (answers OK too late) | ok. Keeps every request's form."""

    url: str = ""
    script: list[str] = field(default_factory=lambda: ["ok"])
    requests: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        form = {k: v[0] for k, v in parse_qs(await request.text()).items()}
        self.requests.append(form)
        step = self.script[min(len(self.requests), len(self.script)) - 1]
        xml = "text/xml"
        if step == "throttle":
            return web.Response(status=400, text=_error("Throttling"), content_type=xml)
        if step == "fault":
            return web.Response(
                status=500, text=_error("InternalError", "Receiver"), content_type=xml
            )
        if step == "reject":
            return web.Response(status=400, text=_error("InvalidParameter"), content_type=xml)
        if step == "slow":
            await asyncio.sleep(1.5)
        return web.Response(status=200, text=_OK, content_type=xml)

    def messages(self) -> list[str]:
        return [r["Message"] for r in self.requests]


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> Iterator[FlakySns]:
    """FlakySns on a free loopback port, served from its own thread and event loop (the
    in-process API's test client runs the app on another loop)."""
    sns = FlakySns()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/", sns.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        # aiohttp types `_server` as a base without `sockets` (an asyncio Server here).
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        sns.url = f"http://127.0.0.1:{port}"
        return runner

    runner = asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
    _aws(monkeypatch, sns.url)
    try:
        yield sns
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def test_throttling_and_faults_are_retried_with_the_same_text(flaky: FlakySns) -> None:
    flaky.script = ["throttle", "fault", "throttle", "ok"]
    sender = SnsSmsSender(sender_id="Example", budget_seconds=10, first_backoff_seconds=0.05)
    try:
        await sender.send("+15555550123", "123456 is the code")
    finally:
        await sender.aclose()
    assert flaky.messages() == ["123456 is the code"] * 4
    first = flaky.requests[0]
    assert first["Action"] == "Publish"
    assert first["PhoneNumber"] == "+15555550123"
    attributes = {
        first[f"MessageAttributes.entry.{i}.Name"]: first[
            f"MessageAttributes.entry.{i}.Value.StringValue"
        ]
        for i in (1, 2)
    }
    assert attributes == {"AWS.SNS.SMS.SMSType": "Transactional", "AWS.SNS.SMS.SenderID": "Example"}


async def test_a_late_answer_is_retried_with_the_same_code_never_another(
    flaky: FlakySns,
) -> None:
    # The first publish is answered after the per-try timeout: SNS may have taken it, so the
    # retry may deliver it twice, but always the same text.
    flaky.script = ["slow", "ok"]
    sender = SnsSmsSender(budget_seconds=6, first_backoff_seconds=0.05, try_timeout_seconds=0.5)
    try:
        await sender.send("+15555550123", "123456 is the code")
    finally:
        await sender.aclose()
    assert flaky.messages() == ["123456 is the code"] * 2


async def test_throttling_past_the_budget_gives_up_and_a_refusal_is_not_retried(
    flaky: FlakySns,
) -> None:
    flaky.script = ["throttle"]
    sender = SnsSmsSender(budget_seconds=2, first_backoff_seconds=0.05)
    try:
        started = time.monotonic()
        with pytest.raises(SmsUnavailable):
            await sender.send("+15555550123", "123456 is the code")
        assert time.monotonic() - started < 4  # the budget, not the code's 5 minutes
        assert len(flaky.requests) >= 2
        assert set(flaky.messages()) == {"123456 is the code"}

        flaky.requests.clear()
        flaky.script = ["reject", "ok"]
        with pytest.raises(SmsRejected):
            await sender.send("+15555550123", "123456 is the code")
        assert len(flaky.requests) == 1
    finally:
        await sender.aclose()


async def test_the_api_answers_a_throttled_send_recoverable_and_a_refused_one_not(
    flaky: FlakySns,
    settings: Settings,
    clock: ManualClock,
    admin_headers: dict[str, str],
) -> None:
    app = create_app(sns_settings(settings, sms_send_budget_seconds=3), clock=clock)
    async with AsyncTestClient(app, base_url="http://testserver.local") as client:
        flaky.script = ["throttle"]
        s: Elevated = await elevated_session(client, admin_headers)
        r = await ask(client, s)
        assert_error(r, 502, "processing_error", True)
        assert r.headers["retry-after"] == "30"
        assert len(flaky.requests) >= 2
        [code] = {code_in(m) for m in flaky.messages()}  # one code, however many tries
        assert code is not None
        # A code counts as sent (it may have gone out): the next waits out the interval.
        assert_error(await ask(client, s), 429, "rate_limited", True)

        # Once SNS takes it again, a later ask sends a new code, which verifies.
        flaky.requests.clear()
        flaky.script = ["ok"]
        clock.advance(30)
        r = await ask(client, s)
        assert r.status_code == 200, r.text
        [text] = flaky.messages()
        new = code_in(text)
        assert new is not None
        assert (await verify(client, s, new)).status_code == 200

        flaky.requests.clear()
        flaky.script = ["reject"]
        other = await elevated_session(client, admin_headers)
        r = await ask(client, other)
        assert_error(r, 502, "processing_error", False)
        assert "retry-after" not in r.headers
        assert len(flaky.requests) == 1


# --- challenges switched off -------------------------------------------------------------


async def test_with_challenges_off_elevated_sessions_are_refused_for_good(
    settings: Settings, clock: ManualClock, admin_headers: dict[str, str]
) -> None:
    off = msgspec.structs.replace(settings, sms_challenges="off")
    app = create_app(off, clock=clock)
    async with AsyncTestClient(app, base_url="http://testserver.local") as client:
        s = await elevated_session(client, admin_headers)
        r = await client.post(f"{URL}/{s.session_id}/confirm", json=card(), headers=s.browser)
        message = assert_error(r, 403, "challenge_required", False)
        assert "switched off" in message
        message = assert_error(await ask(client, s), 403, "challenge_required", False)
        assert "switched off" in message
