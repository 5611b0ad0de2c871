"""The process's log output on real requests: one canonical line each, correlated, no PII.

Logging is configured exactly as the API process does (`configure_logging`, JSON lines on
stdout) and stdout is captured with `capsys`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import structlog
from litestar.testing import AsyncTestClient

from shared.config import Settings
from shared.logging import configure_logging, flush_log_lines
from tests.api.conftest import ACCOUNT, seed_body

URL = "/v1/hosted-sessions"

CUSTOMER_EMAIL = "buyer.pii.7731@example.org"
FRAUD = {
    "ip_address": "198.51.100.23",
    "user_agent": "PiiAgent/9.9 (ua-leak-probe-5d2e)",
    "email": "fraud.pii.7731@example.net",
    "phone": "+15550001234",
    "account_type": "guest",
    "request_timestamp": 1733000000123,
    "is_authorized": True,
    "is_admin": False,
}


class LogCapture:
    """Logging as the API process configures it, writing to the test's captured stdout."""

    def __init__(self, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
        self._settings = settings
        self._capsys = capsys

    def start(self) -> None:
        """Configure logging; call it in the test body (pytest swaps capture between phases)."""
        self._capsys.readouterr()
        assert self._settings.log_json is True
        configure_logging(self._settings)
        # configure_logging caches each module logger on first use, bound to the sys.stdout of
        # that moment (this test's capture). reset_defaults() cannot undo a cache held by the
        # module-level proxies, so caching is turned off to keep later tests from writing into
        # a closed capture. Nothing else of the configuration is changed.
        structlog.configure(cache_logger_on_first_use=False)

    def read(self) -> tuple[str, list[dict[str, Any]]]:
        """(raw text, parsed lines) of everything logged since the last read."""
        flush_log_lines()  # lines wait for the end of their loop turn (shared/logging.py)
        text = self._capsys.readouterr().out
        parsed: list[dict[str, Any]] = []
        for line in text.splitlines():
            if line.strip():
                event = json.loads(line)  # log_json=True: every line is one JSON object
                assert isinstance(event, dict), line
                parsed.append(event)
        return text, parsed


@pytest.fixture
def logs(
    client: AsyncTestClient[Any], settings: Settings, capsys: pytest.CaptureFixture[str]
) -> Iterator[LogCapture]:
    """Depends on `client` so logging is reset before the app shuts down."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    yield LogCapture(settings, capsys)
    structlog.reset_defaults()
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def request_lines(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == "request"]


def assert_one_request_line(
    events: list[dict[str, Any]], response: httpx.Response, method: str, path: str
) -> dict[str, Any]:
    request_id = response.headers["x-request-id"]
    assert request_id
    mine = [e for e in request_lines(events) if e.get("request_id") == request_id]
    assert len(mine) == 1, mine
    line = mine[0]
    assert line["method"] == method
    assert line["path"] == path
    assert line["status"] == response.status_code
    assert isinstance(line["duration_ms"], int | float)
    assert line["duration_ms"] >= 0
    assert line["level"] == "info"
    return line


async def test_requests_log_one_canonical_line_each_and_no_pii(
    client: AsyncTestClient[Any],
    admin_headers: dict[str, str],
    token_for: Callable[..., str],
    logs: LogCapture,
) -> None:
    logs.start()
    admin_token = admin_headers["Authorization"].removeprefix("Bearer ")
    body = seed_body(customer_email=CUSTOMER_EMAIL, fraud_signals=FRAUD)

    created = await client.post(URL, json=body, headers=admin_headers)
    assert created.status_code == 201, created.text
    secret = created.json()["client_secret"]
    session_id = created.json()["session_id"]

    fetched = await client.get(f"{URL}/{session_id}", headers=admin_headers)
    assert fetched.status_code == 200, fetched.text
    assert CUSTOMER_EMAIL in fetched.text  # the PII did pass through this request

    # Fails after the whole body (with its PII) was parsed: items do not sum to the amount.
    mismatch = await client.post(URL, json={**body, "amount": 1}, headers=admin_headers)
    assert mismatch.status_code == 422, mismatch.text

    # Fails on the credential: a whole, well-signed but expired token.
    expired_token = token_for(ACCOUNT, now=1_000_000_000, ttl_seconds=60)
    expired = await client.post(
        URL,
        json=body,
        headers={"Authorization": f"Bearer {expired_token}", "X-Payment-Account-Uid": ACCOUNT},
    )
    assert expired.status_code == 401, expired.text

    # Fails on a field, with a caller-chosen request id that must be echoed and logged.
    traced = await client.post(
        URL,
        json={**body, "currency": "XXX"},
        headers={**admin_headers, "X-Request-Id": "trace-0123456789"},
    )
    assert traced.status_code == 400, traced.text
    assert traced.headers["x-request-id"] == "trace-0123456789"

    text, events = logs.read()
    responses = [
        (created, "POST", URL),
        (fetched, "GET", f"{URL}/{session_id}"),
        (mismatch, "POST", URL),
        (expired, "POST", URL),
        (traced, "POST", URL),
    ]
    assert len(request_lines(events)) == len(responses)
    ids = [response.headers["x-request-id"] for response, _, _ in responses]
    assert len(set(ids)) == len(ids), "each request has its own id"
    for response, method, path in responses:
        assert_one_request_line(events, response, method, path)
        if response.status_code >= 400:
            assert response.json()["request_id"] == response.headers["x-request-id"]

    # A create logs one line, its canonical one, and it names the session it made.
    created_lines = [e for e in events if e.get("request_id") == created.headers["x-request-id"]]
    assert [e["event"] for e in created_lines] == ["request"]
    assert created_lines[0]["session_id"] == session_id
    assert created_lines[0]["account_uid"] == ACCOUNT

    for forbidden in [
        admin_token,
        expired_token,
        secret,
        secret.split("_secret_", 1)[1],
        CUSTOMER_EMAIL,
        FRAUD["email"],
        FRAUD["phone"],
        FRAUD["ip_address"],
        FRAUD["user_agent"],
        str(FRAUD["request_timestamp"]),
    ]:
        assert str(forbidden) not in text, f"{forbidden!r} reached the log"


async def test_request_id_is_fresh_when_the_incoming_one_is_unusable(
    client: AsyncTestClient[Any],
    admin_headers: dict[str, str],
    logs: LogCapture,
) -> None:
    """A hostile X-Request-Id (too short, or log-injection) is replaced, never echoed."""
    logs.start()
    sent_ids = ["short", 'x"}\n{"event":"forged', "a" * 65]
    responses = []
    for sent in sent_ids:
        response = await client.get(
            f"{URL}/cs_0000000000000000", headers={**admin_headers, "X-Request-Id": sent}
        )
        assert response.status_code == 404, response.text
        assert response.headers["x-request-id"] not in sent_ids
        assert response.json()["request_id"] == response.headers["x-request-id"]
        responses.append(response)
    text, events = logs.read()
    assert "forged" not in text
    assert len(request_lines(events)) == len(sent_ids)
    for response in responses:
        assert_one_request_line(events, response, "GET", f"{URL}/cs_0000000000000000")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/v1/no-such-route", 404, id="unknown-path"),
        pytest.param("DELETE", URL, 405, id="wrong-method"),
    ],
)
async def test_unrouted_requests_get_a_request_id_and_one_request_line(
    client: AsyncTestClient[Any],
    admin_headers: dict[str, str],
    logs: LogCapture,
    method: str,
    path: str,
    status: int,
) -> None:
    logs.start()
    response = await client.request(method, path, headers=admin_headers)
    assert response.status_code == status
    envelope = response.json()
    assert envelope["code"] == "validation_error"
    assert envelope["request_id"], "the envelope's request_id is empty"
    assert envelope["request_id"] == response.headers.get("x-request-id")
    _, events = logs.read()
    assert_one_request_line(events, response, method, path)
