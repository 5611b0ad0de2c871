"""`CLIENT KILL TYPE normal` during traffic: the API's connections (pooled and multiplexed)
are cut again and again. Requests recover on a new connection (a lost connection is retried
within the deadline) or answer 503 network_error; never a 500, nothing half-written."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shared.config import Settings
from tests.faults.conftest import RedisServer
from tests.faults.traffic import LOCK_S, Load, check_nothing_half_written
from tests.processes import api_process

pytestmark = pytest.mark.timeout(120)


def test_client_kill_during_traffic(
    fault_settings: Settings,
    own_redis: RedisServer,
    merchant_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    killed = 0
    with api_process(
        fault_settings, tmp_path / "api.log", {"HS_IDEMPOTENCY_LOCK_SECONDS": str(LOCK_S)}
    ) as base_url:
        load = Load(base_url, merchant_headers, read_back=True)
        admin = own_redis.client()
        try:
            with ThreadPoolExecutor(max_workers=4) as pool:
                for _ in range(4):
                    pool.submit(load.run)
                time.sleep(0.5)
                for _ in range(15):
                    # SKIPME yes (the default): only the API's connections are cut.
                    count: int = admin.client_kill_filter(_type="normal")  # type: ignore[assignment]  # the sync client's stub says Awaitable too
                    killed += count
                    time.sleep(0.2)
                time.sleep(1.0)
                load.stop.set()
        finally:
            admin.close()
        attempts = load.attempts
        assert killed >= 15, f"only {killed} connections were killed"
        statuses = [a.status for a in attempts] + [status for status, _ in load.reads]
        assert 500 not in statuses
        assert set(statuses) <= {200, 201, 503}, sorted(set(statuses))
        for a in attempts:
            if a.status == 503:
                assert a.body is not None, a
                assert a.body["code"] == "network_error", a.body
                assert a.body["recoverable"] is True, a.body
                assert a.retry_after is not None, a
        # Recovered: most requests succeed although every connection was cut 15 times.
        ok = sum(1 for status in statuses if status in (200, 201))
        assert ok >= 0.9 * len(statuses), (ok, len(statuses))
        check_nothing_half_written(
            fault_settings, own_redis, base_url, merchant_headers, attempts, LOCK_S
        )
