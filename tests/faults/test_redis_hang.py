"""A hung Redis (SIGSTOP, CLIENT PAUSE, DEBUG SLEEP): the API answers within its Redis
deadline with 503 network_error (recoverable, Retry-After), /readyz fails fast, service
resumes by itself, and nothing is half-written: every 201 is a whole session with its event,
every 503'd create retried with its Idempotency-Key ends as exactly one session.

Measured on the code before the deadlines (2026-12-04): SIGSTOP for 8 s held a create 7.8 s
and answered some with 500; /readyz gave no answer within 5 s."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from shared.config import Settings
from tests.faults.conftest import RedisServer
from tests.faults.traffic import LOCK_S, Load, check_nothing_half_written
from tests.processes import api_process

pytestmark = pytest.mark.timeout(120)

DEADLINE_S = 2.0  # the API's HS_REDIS_TIMEOUT_SECONDS default
# A request may spend the deadline on Redis plus the watchdog's tick (a quarter of it) and
# its own work; a client's patience is well above this.
ANSWER_WITHIN_S = DEADLINE_S + 1.0
READY_WITHIN_S = 1.5


def _readyz_during(base_url: str, results: list[tuple[int, float]]) -> None:
    started = time.monotonic()
    try:
        status = httpx.get(f"{base_url}/readyz", timeout=10).status_code
    except httpx.TransportError:
        status = 0
    results.append((status, time.monotonic() - started))


def _run_hang(
    settings: Settings,
    server: RedisServer,
    headers: dict[str, str],
    tmp_path: Path,
    hang: Callable[[], None],
    hang_s: float,
) -> None:
    with api_process(
        settings, tmp_path / "api.log", {"HS_IDEMPOTENCY_LOCK_SECONDS": str(LOCK_S)}
    ) as base_url:
        load = Load(base_url, headers)
        with ThreadPoolExecutor(max_workers=4) as pool:
            for _ in range(4):
                pool.submit(load.run)
            time.sleep(1.0)
            hang_started = time.monotonic()
            hang()
            ready: list[tuple[int, float]] = []
            time.sleep(min(1.0, hang_s / 3))  # the hang has begun for everyone
            _readyz_during(base_url, ready)
            resume_at = hang_started + hang_s
            time.sleep(max(0.0, resume_at - time.monotonic()))
            # Service resumes by itself: 201s again within a few seconds of the resume.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with load.lock:
                    resumed = [
                        a for a in load.attempts if a.started > resume_at + 0.5 and a.status == 201
                    ]
                if len(resumed) >= 5:
                    break
                time.sleep(0.2)
            load.stop.set()
        attempts = load.attempts
        # In flight during the hang: the hang must show as 503s, not be waited out.
        during = [
            a for a in attempts if a.started < resume_at and a.started + a.elapsed > hang_started
        ]

        # Answers came within the deadline: no request waited out the hang.
        slow = [(a.status, round(a.elapsed, 2)) for a in attempts if a.elapsed > ANSWER_WITHIN_S]
        assert not slow, f"answers slower than {ANSWER_WITHIN_S} s: {slow}"
        # Only 201 or a recoverable 503 network_error with Retry-After; never a 500.
        for a in attempts:
            if a.status == 201:
                continue
            assert a.status == 503, (a.status, a.body)
            assert a.body is not None, a
            assert a.body["code"] == "network_error", a.body
            assert a.body["recoverable"] is True, a.body
            assert a.retry_after is not None, a
            assert int(a.retry_after) >= 1, a
        assert any(a.status == 503 for a in during), [(a.status, a.elapsed) for a in during]
        # /readyz failed fast while Redis hung.
        assert ready[0][0] == 503, ready
        assert ready[0][1] < READY_WITHIN_S, ready
        assert len(resumed) >= 5, "service did not resume by itself"
        assert httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200

        check_nothing_half_written(settings, server, base_url, headers, attempts, LOCK_S)


def test_sigstopped_redis(
    fault_settings: Settings,
    own_redis: RedisServer,
    merchant_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    def hang() -> None:
        own_redis.signal(signal.SIGSTOP)
        threading.Timer(8.0, own_redis.signal, (signal.SIGCONT,)).start()

    _run_hang(fault_settings, own_redis, merchant_headers, tmp_path, hang, 8.0)


def test_client_pause_all(
    fault_settings: Settings,
    own_redis: RedisServer,
    merchant_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    def hang() -> None:
        client = own_redis.client()
        try:
            client.client_pause(3000, all=True)
        finally:
            client.close()

    _run_hang(fault_settings, own_redis, merchant_headers, tmp_path, hang, 3.0)


def test_debug_sleep(
    fault_settings: Settings,
    own_redis: RedisServer,
    merchant_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    def sleep() -> None:
        client = own_redis.client()
        try:
            client.execute_command("DEBUG", "SLEEP", 3)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        finally:
            client.close()

    def hang() -> None:
        threading.Thread(target=sleep, daemon=True).start()

    _run_hang(fault_settings, own_redis, merchant_headers, tmp_path, hang, 3.0)
