"""Client traffic for fault tests, and the check that a fault left nothing half-written."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.config import Settings
from tests.faults.conftest import RedisServer, assert_error_envelope, stored_events
from tests.support import seed_body

# The API's HS_IDEMPOTENCY_LOCK_SECONDS in fault tests: how long a retry of a create whose
# outcome was unknown may answer 409 (in flight) before it runs again.
LOCK_S = 4


@dataclass
class Attempt:
    key: str
    status: int
    elapsed: float
    started: float
    body: dict[str, Any] | None
    retry_after: str | None


@dataclass
class Load:
    """Creates from a few client threads, each with its own Idempotency-Key."""

    base_url: str
    headers: dict[str, str]
    attempts: list[Attempt] = field(default_factory=list)
    # With read_back, each created session is read at once: (status, body) of each GET.
    read_back: bool = False
    reads: list[tuple[int, dict[str, Any] | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, headers=self.headers, timeout=30) as http:
            while not self.stop.is_set():
                key = uuid.uuid4().hex
                started = time.monotonic()
                try:
                    r = http.post(
                        "/v1/hosted-sessions",
                        json=seed_body(),
                        headers={"Idempotency-Key": key},
                    )
                except httpx.TransportError:  # must not happen: recorded as a failure
                    status, body, retry_after = 0, None, None
                else:
                    status, retry_after = r.status_code, r.headers.get("retry-after")
                    body = r.json() if r.content else None
                with self.lock:
                    self.attempts.append(
                        Attempt(key, status, time.monotonic() - started, started, body, retry_after)
                    )
                if status != 201:
                    time.sleep(0.05)
                elif self.read_back and body is not None:
                    self._read(http, body["session_id"])

    def _read(self, http: httpx.Client, session_id: str) -> None:
        try:
            r = http.get(f"/v1/hosted-sessions/{session_id}")
        except httpx.TransportError:
            status, body = 0, None
        else:
            status, body = r.status_code, (r.json() if r.content else None)
        with self.lock:
            self.reads.append((status, body))


def check_nothing_half_written(
    settings: Settings,
    server: RedisServer,
    base_url: str,
    headers: dict[str, str],
    attempts: list[Attempt],
    lock_s: int,
) -> None:
    """Every 201 a whole session with its created event; every other create, retried with
    its Idempotency-Key, ends as exactly one session; no session nobody was told of."""
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as http:
        created: dict[str, str] = {}  # idempotency key -> session id
        for a in attempts:
            if a.status == 201:
                assert a.body is not None
                created[a.key] = a.body["session_id"]
        # Every 503'd create, retried with its key, ends as exactly one session: replayed when
        # its script ran after all, created now when it did not.
        for a in attempts:
            if a.status == 201:
                continue
            give_up = time.monotonic() + lock_s + 10
            while True:
                r = http.post(
                    "/v1/hosted-sessions", json=seed_body(), headers={"Idempotency-Key": a.key}
                )
                if r.status_code == 201:
                    created[a.key] = r.json()["session_id"]
                    break
                # The first request's outcome is unknown until its lock lapses: in flight.
                assert assert_error_envelope(r, 409, "validation_error")["recoverable"] is True
                assert time.monotonic() < give_up, "a retried create never settled"
                time.sleep(float(r.headers.get("retry-after", "1")))
            again = http.post(
                "/v1/hosted-sessions", json=seed_body(), headers={"Idempotency-Key": a.key}
            )
            assert again.status_code == 201, again.text
            assert again.json()["session_id"] == created[a.key]
        assert len(set(created.values())) == len(created)
        for session_id in created.values():
            r = http.get(f"/v1/hosted-sessions/{session_id}")
            assert r.status_code == 200, (session_id, r.text)
    client = server.client()
    try:
        events = stored_events(client, settings.key_prefix)
    finally:
        client.close()
    # Exactly the sessions the clients were told of, each with its created event, once.
    assert set(events) == set(created.values())
    for session_id, types in events.items():
        assert types == ["hosted_session.created"], (session_id, types)
