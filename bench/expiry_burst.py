"""Expiry burst: N sessions sharing one `expires_at`, one real worker process; prints the lag
(event written minus expires_at) percentiles. Usage:

    .venv/bin/python -m bench.expiry_burst [--sessions 10000] [--workers 1]

Runs against REDIS_URL (default the machine's, database 9) under its own key prefix and deletes
its keys afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from shared.clock import ManualClock
from shared.config import Settings
from shared.events.model import EVENT_DECODER, SessionExpiredEvent
from shared.ids import PARTITIONS
from shared.redis.client import create_redis
from shared.sessions.params import CreateSessionParams
from shared.wiring import build_session_service
from tests.processes import start_worker, stop


def _settings(redis_url: str) -> Settings:
    return Settings(
        env="test",
        redis_url=redis_url,
        key_prefix="bench" + secrets.token_hex(3),
        data_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        log_level="warning",
    )


async def _create(settings: Settings, n: int, lead_s: float) -> int:
    """Create n sessions (across many accounts, so every partition works) due together."""
    redis = create_redis(settings)
    now = time.time_ns() // 1_000_000
    clock = ManualClock(start_ms=now - int((300 - lead_s) * 1000))
    sessions, _ = build_session_service(settings, redis, clock)
    params = CreateSessionParams(
        amount=14650,
        currency="USD",
        success_url="https://example.com/ok",
        cancel_url="https://example.com/cancel",
        expires_in_seconds=300,
    )
    sem = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with sem:
            await sessions.create(f"acct_{i % 64}", params)

    await asyncio.gather(*(one(i) for i in range(n)))
    await redis.aclose(close_connection_pool=True)
    return clock.now_ms() + 300_000


async def _lags(settings: Settings, expires_ms: int) -> list[int]:
    redis = Redis.from_url(settings.redis_url)
    lags = []
    from shared.redis.keys import Keys

    keys = Keys(settings.key_prefix)
    for partition in range(PARTITIONS):
        for entry_id, fields in await redis.xrange(keys.events(partition)):
            event = EVENT_DECODER.decode(fields[b"e"])
            if isinstance(event, SessionExpiredEvent):
                lags.append(int(entry_id.split(b"-")[0]) - expires_ms)
    await redis.aclose()
    return lags


async def _cleanup(settings: Settings) -> None:
    redis = Redis.from_url(settings.redis_url)
    for pattern in (f"{settings.key_prefix}:*", f"arq:*{settings.key_prefix}:*"):
        async for key in redis.scan_iter(match=pattern, count=1000):
            await redis.delete(key)
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    args = parser.parse_args()
    settings = _settings(args.redis_url)
    lead_s = 5 + args.sessions / 1500  # time to create them all before they fall due
    log_dir = Path(tempfile.mkdtemp(prefix="bench-expiry-"))
    procs = [start_worker(settings, "expiry", log_dir / f"w{i}.log") for i in range(args.workers)]
    try:
        expires_ms = asyncio.run(_create(settings, args.sessions, lead_s))
        wait_s = max(0.0, expires_ms / 1000 - time.time()) + 3 + args.sessions / 2000
        time.sleep(wait_s)
        lags = asyncio.run(_lags(settings, expires_ms))
    finally:
        for proc in procs:
            stop(proc)
        asyncio.run(_cleanup(settings))
    lags.sort()
    q = statistics.quantiles(lags, n=100) if len(lags) > 1 else [0] * 99
    result = {
        "sessions": args.sessions,
        "workers": args.workers,
        "expired": len(lags),
        "lag_ms_p50": round(q[49]),
        "lag_ms_p99": round(q[98]),
        "lag_ms_max": lags[-1] if lags else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
