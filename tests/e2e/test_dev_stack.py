"""End to end: `hosted-sessions dev` (API + arq worker processes) on the real Redis, driven
over HTTP as a merchant backend would; expiry observed in the event stream alone."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from redis import Redis as SyncRedis

from shared.config import Settings
from tests.e2e.conftest import LEAD_S, Stack
from tests.support import ACCOUNT, seed_body
from tests.support.events import partition_stream, stream_entries_sync

pytestmark = pytest.mark.e2e


def _expired_event(redis: SyncRedis, settings: Settings, session_id: str) -> tuple[int, Any] | None:
    for entry in stream_entries_sync(redis, partition_stream(settings.key_prefix)):
        event = entry.event
        if event.session_id == session_id and event.type == "hosted_session.expired":
            return entry.entry_ms, event
    return None


def test_merchant_flow_and_on_time_expiry_across_processes(
    stack: Stack, settings: Settings, token_for: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {token_for(ACCOUNT)}", "X-Payment-Account-Uid": ACCOUNT}
    with httpx.Client(base_url=stack.base_url, headers=headers, timeout=5) as http:
        r = http.post("/v1/hosted-sessions", json=seed_body(), headers={"Idempotency-Key": "e2e-1"})
        assert r.status_code == 201, r.text
        created = r.json()
        assert r.headers["x-request-id"].startswith("req_")
        again = http.post(
            "/v1/hosted-sessions", json=seed_body(), headers={"Idempotency-Key": "e2e-1"}
        )
        assert again.json() == created

        session_id = created["session_id"]
        assert http.get(f"/v1/hosted-sessions/{session_id}").json()["status"] == "open"
        r = http.patch(f"/v1/hosted-sessions/{session_id}", json={"description": "changed"})
        assert r.json()["description"] == "changed"
        listed = http.get("/v1/hosted-sessions", params={"status": "open"}).json()
        assert [s["id"] for s in listed["data"]] == [session_id]
        r = http.post(f"/v1/hosted-sessions/{session_id}/expire")
        assert r.json()["status"] == "expired"

        # Expiry on time with nobody touching the session: watched in Redis only.
        r = http.post("/v1/hosted-sessions", json=seed_body(expires_in_seconds=300))
        timed = r.json()
        expires_at_ms = round(datetime.fromisoformat(timed["expires_at"]).timestamp() * 1000)

    redis = SyncRedis.from_url(settings.redis_url)
    try:
        deadline = time.monotonic() + LEAD_S + 8
        found = None
        while found is None and time.monotonic() < deadline:
            found = _expired_event(redis, settings, timed["session_id"])
            time.sleep(0.05)
    finally:
        redis.close()
    assert found is not None, stack.log_path.read_text()[-3000:]
    written_ms, event = found
    assert 0 <= written_ms - expires_at_ms <= 2000, written_ms - expires_at_ms
    assert event.data.reason == "time"

    with httpx.Client(base_url=stack.base_url, headers=headers, timeout=5) as http:
        view = http.get(f"/v1/hosted-sessions/{timed['session_id']}").json()
    assert view["status"] == "expired"

    # Nothing secret in any process's logs.
    logs = stack.log_path.read_text()
    for secret in (
        created["client_secret"],
        headers["Authorization"][7:],
        "shopper@example.com",
        "+15555550123",
        "203.0.113.7",
        "hello@example.com",
    ):
        assert secret not in logs
