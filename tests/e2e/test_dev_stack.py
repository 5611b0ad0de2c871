"""End to end: `hosted-sessions dev` (API + arq worker processes) on the real Redis, driven
over HTTP as a merchant backend would; expiry observed in the event stream alone."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis as SyncRedis

from shared.config import Settings
from shared.events.model import EVENT_DECODER
from shared.ids import partition_of_account
from shared.redis.keys import Keys
from tests.support import ACCOUNT, seed_body

pytestmark = pytest.mark.e2e

# The API process's clock runs 298 s behind real time (a test seam refused in production), so
# a session created with the seed's minimum expires_in_seconds=300 is due 2 s from now for the
# worker, which keeps real time.
LEAD_S = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Stack:
    def __init__(self, base_url: str, log_path: Path) -> None:
        self.base_url = base_url
        self.log_path = log_path


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    port = _free_port()
    env = {
        **os.environ,
        **settings.to_env(),
        "HS_API_PORT": str(port),
        "HS_DEV_DIR": str(tmp_path / "dev"),
        "HS_CLOCK_OFFSET_MS": str(-(300 - LEAD_S) * 1000),
        "HS_LOG_JSON": "true",
    }
    log_path = tmp_path / "stack.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "dev"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "stack did not become ready"
                time.sleep(0.1)
            yield Stack(base_url, log_path)
        finally:
            proc.send_signal(signal.SIGINT)  # what Ctrl-C on `make run` sends
            try:
                assert proc.wait(timeout=20) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()


def _expired_event(redis: SyncRedis, settings: Settings, session_id: str) -> tuple[int, Any] | None:
    stream = Keys(settings.key_prefix).events(partition_of_account(ACCOUNT))
    entries: list[tuple[bytes, dict[bytes, bytes]]] = redis.xrange(stream)  # type: ignore[assignment]  # sync client
    for entry_id, fields in entries:
        event = EVENT_DECODER.decode(fields[b"e"])
        if event.session_id == session_id and event.type == "hosted_session.expired":
            return int(entry_id.split(b"-")[0]), event
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
