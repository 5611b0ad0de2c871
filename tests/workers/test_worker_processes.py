"""Worker processes as ops run them: kill -9 mid-expiry loses nothing and doubles nothing,
SIGTERM hands partitions over at once, health check and metrics answer."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from shared.clock import ManualClock
from shared.config import Settings
from tests.processes import child_env, free_port, start_worker, stop
from tests.support import eventually, seed_body
from tests.workers.test_expiry_worker import expired_events

URL = "/v1/hosted-sessions"
LEAD_S = 3.0


async def _create_spread(
    client: AsyncTestClient[Any],
    headers: dict[str, str],
    clock: ManualClock,
    n: int,
    spread_s: float,
) -> list[str]:
    """n sessions whose expiries are spread over `spread_s` seconds after LEAD_S."""
    ids = []
    for i in range(n):
        if i and i % 50 == 0:
            clock.advance(spread_s * 50 / n)
        r = await client.post(URL, json=seed_body(expires_in_seconds=300), headers=headers)
        ids.append(r.json()["session_id"])
    return ids


def _health_check(settings: Settings) -> int:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "worker", "--queues", "expiry", "--check"],
        env=child_env(settings),
        capture_output=True,
        check=False,
        timeout=30,
    ).returncode


async def test_kill_9_mid_expiry_loses_nothing_and_doubles_nothing(
    client: AsyncTestClient[Any],
    admin_headers: dict[str, str],
    redis: Redis,
    settings: Settings,
    clock: ManualClock,
    tmp_path: Path,
) -> None:
    assert _health_check(settings) == 1  # nobody serves the queue yet
    port = free_port()
    first = start_worker(
        settings, "expiry", tmp_path / "a.log", {"HS_WORKER_METRICS_PORT": str(port)}
    )
    ids = await _create_spread(client, admin_headers, clock, 300, spread_s=3.0)
    started = time.monotonic()
    # Kill it while expiries are still coming due.
    done = await eventually(lambda: expired_events(redis, settings), lambda d: len(d) >= 50, 15)
    assert 0 < len(done) < len(ids), len(done)
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
    assert "hs_expiry_lag_seconds_count" in metrics
    assert await asyncio.to_thread(_health_check, settings) == 0
    assert stop(first, kill=True) == -9
    second = start_worker(settings, "expiry", tmp_path / "b.log")
    try:
        done = await eventually(
            lambda: expired_events(redis, settings), lambda d: len(d) == len(ids), 20
        )
        assert set(done) == set(ids), (
            f"{len(done)} of {len(ids)} after {time.monotonic() - started:.1f}s"
        )
        await asyncio.sleep(1)
        # expired_events asserts one event per session; every session is expired.
        assert len(await expired_events(redis, settings)) == len(ids)
        lags = sorted(written - expires for written, expires in done.values())
        # Sessions due while no live worker held their partition wait for the lease TTL (2 s).
        assert lags[-1] <= 5_000, lags[-10:]
    finally:
        assert stop(second) == 0


async def test_sigterm_hands_partitions_over_at_once(
    client: AsyncTestClient[Any],
    admin_headers: dict[str, str],
    redis: Redis,
    settings: Settings,
    tmp_path: Path,
) -> None:
    first = start_worker(settings, "expiry", tmp_path / "a.log")
    await eventually(lambda: asyncio.to_thread(_health_check, settings), lambda rc: rc == 0, 20)
    assert stop(first) == 0  # graceful: leases released, health key removed
    second = start_worker(settings, "expiry", tmp_path / "b.log")
    try:
        r = await client.post(URL, json=seed_body(expires_in_seconds=300), headers=admin_headers)
        session_id = r.json()["session_id"]
        done = await eventually(
            lambda: expired_events(redis, settings), lambda d: session_id in d, LEAD_S + 10
        )
        written, expires = done[session_id]
        assert written - expires <= 1_000  # no lease TTL to wait out after a clean stop
    finally:
        assert stop(second) == 0
