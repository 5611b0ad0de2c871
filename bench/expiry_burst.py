"""Expiry burst: N sessions sharing one `expires_at`, one real worker process (`--queues
expiry`); prints the lag (the `hosted_session.expired` event's stream entry time minus
`expires_at`) percentiles as one JSON line. Usage:

    .venv/bin/python -m bench.expiry_burst [--sessions 10000] [--workers 1]

`run_expiry` is shared with the steady-rate phase (bench/expiry_steady.py). Runs against
`--redis-url` (default the machine's, database 9) under its own key prefix and deletes its
keys afterwards.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

from bench.load import percentile
from bench.seeding import (
    EXPIRED,
    EventWatch,
    accounts,
    delete_prefix,
    fresh_settings,
    seed_sessions,
    wait_worker_ready,
)
from tests.processes import start_worker, stop

# Sessions the seeder writes per second here, with margin (measured ~4,000/s on 2 cores).
SEED_RATE = 2000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def run_expiry(
    redis_url: str, count: int, due_offset_ms: Callable[[int], int], *, workers: int = 1
) -> tuple[dict[str, int], dict[str, int], dict[str, Any]]:
    """Seed `count` sessions (64 accounts, so every partition works) that fall due at
    `due_offset_ms(i)` after a start far enough ahead to seed them all first, with `workers`
    expiry worker processes running; wait until each one's `expired` event is in the stream.
    Returns (expires_at ms by session, lag ms by expired session, facts)."""
    settings = fresh_settings(redis_url)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-expiry-"))
    procs = [start_worker(settings, "expiry", log_dir / f"w{i}.log") for i in range(workers)]
    try:
        wait_worker_ready(settings, "expiry")
        start_ms = _now_ms() + int((0.5 + count / SEED_RATE) * 1000)
        made = uvloop.run(
            seed_sessions(
                settings,
                count,
                account_uids=accounts(64),
                due_ms=lambda i: start_ms + due_offset_ms(i),
            )
        )
        due = dict(made)
        first_due, last_due = min(due.values()), max(due.values())
        # Seeded in time (the usual case): read only what comes after the created events.
        late_ms = _now_ms() - first_due
        start = "$" if late_ms < 0 else "0-0"
        lags: dict[str, int] = {}
        with EventWatch(redis_url, settings.key_prefix, start=start) as watch:
            time.sleep(max(0.0, (last_due - _now_ms()) / 1000) + 0.2)
            watch.wait_quiet(within=10 + count / 1000)
            deadline = time.monotonic() + 10 + count / 1000
            while len(lags) < count and time.monotonic() < deadline:
                for seen in watch.poll():
                    session_id = seen.event.session_id
                    if seen.event.type == EXPIRED and session_id in due:
                        lags[session_id] = seen.entry_ms - due[session_id]
                if len(lags) < count:
                    time.sleep(0.1)
    finally:
        for proc in procs:
            stop(proc)
        delete_prefix(redis_url, settings.key_prefix)
    facts = {
        "seed_late_ms": max(0, late_ms),
        "due_span_ms": last_due - first_due,
        "key_prefix": settings.key_prefix,
    }
    return due, lags, facts


def lag_figures(lags: list[int]) -> dict[str, int]:
    ordered = sorted(lags)
    return {
        "lag_ms_p50": round(percentile(ordered, 50)),
        "lag_ms_p99": round(percentile(ordered, 99)),
        "lag_ms_max": ordered[-1] if ordered else 0,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    args = parser.parse_args(argv)
    _, lags, facts = run_expiry(args.redis_url, args.sessions, lambda _: 0, workers=args.workers)
    result = {
        "sessions": args.sessions,
        "workers": args.workers,
        "expired": len(lags),
        **lag_figures(list(lags.values())),
        **facts,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
