"""Redis killed (SIGKILL) mid-traffic and restarted on the same AOF and port: every create
the API acknowledged (201) is there afterwards with its created event; meanwhile the API
answers 503 network_error (recoverable, Retry-After), never 500, and resumes by itself.

SIGKILL of the Redis process leaves the OS alive: Redis write()s the AOF before it sends a
reply, so the kernel holds every acknowledged write even with `appendfsync everysec`. Only a
machine crash loses what was not yet fsynced (at most ~1 s with everysec; architecture.md)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import pytest

from shared.config import Settings
from tests.faults.conftest import RedisServer
from tests.faults.traffic import LOCK_S, Load, check_nothing_half_written
from tests.processes import api_process

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("appendfsync", ["always", "everysec"])
def test_sigkill_and_aof_restart_keeps_every_acknowledged_create(
    settings: Settings, merchant_headers: dict[str, str], tmp_path: Path, appendfsync: str
) -> None:
    server = RedisServer(tmp_path / "redis", appendfsync=appendfsync)
    server.start()
    try:
        api_settings = msgspec.structs.replace(settings, redis_url=server.url)
        with api_process(
            api_settings, tmp_path / "api.log", {"HS_IDEMPOTENCY_LOCK_SECONDS": str(LOCK_S)}
        ) as base_url:
            load = Load(base_url, merchant_headers)
            with ThreadPoolExecutor(max_workers=4) as pool:
                for _ in range(4):
                    pool.submit(load.run)
                time.sleep(2.0)
                server.kill()  # SIGKILL mid-traffic: no shutdown, no final fsync
                killed_at = time.monotonic()
                time.sleep(1.0)
                server.start()  # same dir (the AOF), same port
                restarted_at = time.monotonic()
                deadline = restarted_at + 10
                while time.monotonic() < deadline:
                    with load.lock:
                        after = [
                            a for a in load.attempts if a.started > restarted_at and a.status == 201
                        ]
                    if len(after) >= 5:
                        break
                    time.sleep(0.2)
                load.stop.set()
            attempts = load.attempts
            acknowledged = [a for a in attempts if a.status == 201 and a.started < killed_at]
            assert len(acknowledged) >= 10, "too little traffic before the kill"
            assert len(after) >= 5, "the API did not resume by itself after the restart"
            for a in attempts:
                if a.status == 201:
                    continue
                assert a.status == 503, (a.status, a.body)
                assert a.body is not None, a
                assert a.body["code"] == "network_error", a.body
                assert a.body["recoverable"] is True, a.body
                assert a.retry_after is not None, a
            assert any(a.status == 503 for a in attempts), "the kill was not seen"
            # Every 201 readable with its created event; every 503'd create retried with
            # its key ends as exactly one session.
            check_nothing_half_written(
                api_settings, server, base_url, merchant_headers, attempts, LOCK_S
            )
    finally:
        server.stop()
