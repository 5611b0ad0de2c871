"""Workers through a hung Redis: an expiry + fraud worker process lives through a SIGSTOP'd
Redis (its loops log and retry; they neither die nor crash-loop) and, once Redis is back,
expires the sessions that fell due meanwhile and scores new ones, by itself."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from shared.config import Settings
from shared.redis.keys import Keys
from tests.faults.conftest import RedisServer, stored_events
from tests.processes import api_process, start_worker, stop
from tests.support import seed_body

pytestmark = pytest.mark.timeout(120)

# The API's clock runs (300 - LEAD_S) s behind the worker's: a session created with the
# minimum expires_in_seconds=300 is due LEAD_S seconds later for the worker.
LEAD_S = 2
STOPPED_S = 6.0


def _events_by_session(server: RedisServer, settings: Settings) -> dict[str, list[str]]:
    client = server.client()
    try:
        return stored_events(client, settings.key_prefix)
    finally:
        client.close()


def test_expiry_and_fraud_worker_survive_a_sigstopped_redis(
    fault_settings: Settings,
    own_redis: RedisServer,
    merchant_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "worker.log"
    worker = start_worker(fault_settings, "expiry,fraud", log_path)
    try:
        with (
            api_process(
                fault_settings,
                tmp_path / "api.log",
                {"HS_CLOCK_OFFSET_MS": str(-(300 - LEAD_S) * 1000)},
            ) as base_url,
            httpx.Client(base_url=base_url, headers=merchant_headers, timeout=10) as http,
        ):

            def create(expires_in: int) -> str:
                r = http.post("/v1/hosted-sessions", json=seed_body(expires_in_seconds=expires_in))
                assert r.status_code == 201, r.text
                session_id: str = r.json()["session_id"]
                return session_id

            # Due LEAD_S from now: they fall due while Redis is stopped.
            due = [create(300) for _ in range(10)]
            own_redis.signal(signal.SIGSTOP)
            time.sleep(STOPPED_S)
            assert worker.poll() is None, log_path.read_text()[-3000:]
            own_redis.signal(signal.SIGCONT)
            resumed_at = time.monotonic()
            # Created after the resume with a long expiry: the scorer must get to them.
            fresh = [create(1800) for _ in range(5)]

            deadline = resumed_at + 15
            while True:
                events = _events_by_session(own_redis, fault_settings)
                expired = [s for s in due if "hosted_session.expired" in events.get(s, [])]
                scored = [s for s in fresh if "hosted_session.risk_scored" in events.get(s, [])]
                if len(expired) == len(due) and len(scored) == len(fresh):
                    break
                assert time.monotonic() < deadline, (len(expired), len(scored))
                time.sleep(0.2)
            for session_id in due:
                assert events[session_id].count("hosted_session.expired") == 1
        assert worker.poll() is None, "the worker died"
    finally:
        assert stop(worker) == 0, log_path.read_text()[-3000:]


def test_webhook_queue_polls_again_after_a_sigstopped_redis(
    fault_settings: Settings, own_redis: RedisServer, tmp_path: Path
) -> None:
    """arq's poll loop ends at the first Redis error it meets; the worker must run it again,
    or the webhook queue stops for good while the process (and its health key) lives on.
    Seen through arq's own liveness key, which only a polling worker renews (TTL 3 s)."""
    log_path = tmp_path / "worker.log"
    health_key = f"{Keys(fault_settings.key_prefix).arq_queue('webhooks')}:health-check"
    worker = start_worker(fault_settings, "webhooks", log_path)
    client = own_redis.client()
    try:
        deadline = time.monotonic() + 15
        while not client.exists(health_key):
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        own_redis.signal(signal.SIGSTOP)
        time.sleep(STOPPED_S)
        own_redis.signal(signal.SIGCONT)
        time.sleep(5.0)  # two health intervals past the resume, the key's TTL past its lapse
        client.delete(health_key)
        deadline = time.monotonic() + 6
        while not client.exists(health_key):
            assert time.monotonic() < deadline, "the webhook queue is no longer polled"
            time.sleep(0.2)
        assert worker.poll() is None, "the worker died"
    finally:
        client.close()
        assert stop(worker) == 0, log_path.read_text()[-3000:]
