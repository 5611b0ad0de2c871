"""What the bench phases share beyond HTTP load: sessions written through the real create
path without HTTP (`seed_sessions`, also a command for the big seeds), the event streams read
back (`EventWatch`), workers waited for, and a prefix's keys deleted. Seeding usage (settings
from the environment, `HS_*` and `REDIS_URL`, as a worker reads them):

    .venv/bin/python -m bench.seeding --count 500000 [--accounts 64] [--expires-in 86400]

Sessions are made by `SessionService.create` as wired for the API and workers
(`shared.wiring.wire_core`): the same record, secret hash, encrypted fraud signals,
indexes, `created` event and follow-up work as a create through the API, minus HTTP and the
admin token. Nothing here knows a key beyond `shared.redis.keys.Keys`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import msgspec
import uvloop
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from shared.config import Settings
from shared.events.model import (
    SessionCreated,
    SessionExpiredEvent,
    SessionRiskScored,
    SessionUpdated,
    event_name,
)
from shared.events.stream import StreamTail
from shared.logging import configure_logging
from shared.redis.client import create_redis
from shared.redis.keys import Keys
from shared.sessions.params import CreateSessionParams
from shared.wiring import wire_core
from tests.processes import child_env
from tests.support import seed_body

# The bench reads only event heads (`Envelope`): it compares their names, taken from the classes.
CREATED = event_name(SessionCreated)
UPDATED = event_name(SessionUpdated)
EXPIRED = event_name(SessionExpiredEvent)
RISK_SCORED = event_name(SessionRiskScored)


def fresh_settings(redis_url: str) -> Settings:
    """Settings of a phase with its own key prefix and data key (and quiet logs)."""
    return Settings(
        env="test",
        redis_url=redis_url,
        key_prefix="bench" + secrets.token_hex(3),
        data_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        log_level="warning",
    )


def accounts(n: int, first: str | None = None) -> list[str]:
    """n account ids (so many partitions share the work), `first` among them when given."""
    names = [f"acct_seed_{i}" for i in range(n)]
    if first is not None:
        names[0] = first
    return names


def iso_to_ms(value: str) -> int:
    """Epoch ms of an RFC 3339 timestamp as the API writes them (`...T12:00:00.123Z`)."""
    return round(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


class _SettableClock:
    """The seeder's clock: set just before each create, which reads it once, synchronously,
    before its first await. Whatever a create really used is taken from its answer."""

    def __init__(self) -> None:
        self.now = time.time_ns() // 1_000_000

    def now_ms(self) -> int:
        return self.now


def distinct_shopper_body(i: int, **overrides: Any) -> dict[str, Any]:
    """Session `i`'s body with a shopper of its own (email, phone, IP address, customer id)
    who loaded the form a minute ago: confirm proceeds unchallenged, and sessions share no
    per-shopper state (velocity counters) that real shoppers' sessions would not."""
    email = f"shopper{i}.{secrets.token_hex(3)}@example.com"
    signals = {
        "ip_address": f"198.51.{(i // 250) % 250}.{i % 250 + 1}",
        "user_agent": "Mozilla/5.0 (bench)",
        "email": email,
        "phone": f"+1555{i % 10_000_000:07d}",
        "request_timestamp": int(time.time() * 1000) - 60_000,
        "is_authorized": True,
        "is_admin": False,
    }
    return seed_body(
        fraud_signals=signals, customer_email=email, customer_id=f"cust_{i}", **overrides
    )


async def seed_sessions(
    settings: Settings,
    count: int,
    *,
    account_uids: Sequence[str],
    params: CreateSessionParams | None = None,
    due_ms: Callable[[int], int] | None = None,
    concurrency: int = 64,
    distinct_shoppers: bool = False,
    first_index: int = 0,
) -> list[tuple[str, int]]:
    """Create `count` sessions (round-robin over the accounts) through the real create path;
    (session id, expires_at ms) of each, in order. `due_ms(i)`: when session i should expire
    (its creation is back-dated by its lifetime); else they are created now.
    `distinct_shoppers`: session i gets `distinct_shopper_body(first_index + i)` (with the
    lifetime of `params`) instead of `params`' one shopper for all."""
    params = params or msgspec.convert(seed_body(), CreateSessionParams)
    lifetime_s = params.expires_in_seconds

    def params_of(i: int) -> CreateSessionParams:
        if not distinct_shoppers:
            return params
        body = distinct_shopper_body(first_index + i, expires_in_seconds=lifetime_s)
        return msgspec.convert(body, CreateSessionParams)

    lifetime_ms = params.expires_in_seconds * 1000
    configure_logging(settings)  # the service logs each create at info: not to our stdout
    redis = create_redis(settings, client_name="bench-seed")
    clock = _SettableClock()
    sessions = wire_core(settings, redis, clock).sessions
    out: list[tuple[str, int]] = [("", 0)] * count
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            clock.now = due_ms(i) - lifetime_ms if due_ms else time.time_ns() // 1_000_000
            one_params = params_of(i)
            created = await sessions.create(account_uids[i % len(account_uids)], one_params)
            out[i] = (created.session_id, iso_to_ms(created.expires_at))

    try:
        # In slices: a million pending coroutines would cost more memory than the sessions.
        for start in range(0, count, 20_000):
            await asyncio.gather(*(one(i) for i in range(start, min(count, start + 20_000))))
    finally:
        await redis.aclose(close_connection_pool=True)
    return out


def seed_in_processes(
    settings: Settings,
    count: int,
    *,
    processes: int,
    account_uids: Sequence[str],
    expires_in: int = 86_400,
    timeout: float = 3600,
    distinct_shoppers: bool = False,
) -> dict[str, Any]:
    """`count` sessions now from `processes` seeding processes at once (they share the CPU
    with Redis, nothing else runs meanwhile); created count and rate. `distinct_shoppers`:
    a shopper per session (`seed_sessions`), none shared across the processes either."""
    started = time.perf_counter()
    share = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    firsts = [sum(share[:i]) for i in range(processes)]
    shoppers = ["--distinct-shoppers"] if distinct_shoppers else []
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.seeding",
                "--count",
                str(n),
                "--expires-in",
                str(expires_in),
                "--accounts",
                ",".join(account_uids),
                "--first-index",
                str(first),
                *shoppers,
            ],
            env=child_env(settings, {"HS_LOG_LEVEL": "warning"}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n, first in zip(share, firsts, strict=True)
        if n
    ]
    created = 0
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"seeding failed: {err.decode()[-3000:]}")
        created += int(json.loads(out.decode().strip().splitlines()[-1])["created"])
    seconds = time.perf_counter() - started
    return {
        "created": created,
        "seconds": round(seconds, 1),
        "per_s": round(created / seconds, 1) if seconds else 0.0,
    }


# --- reading the event streams back ---------------------------------------------------------


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """The part of an event a bench phase looks at (the rest of the JSON is skipped)."""

    type: str
    session_id: str = ""
    created_at: str = ""


_ENVELOPE = msgspec.json.Decoder(Envelope)


class Seen(msgspec.Struct, frozen=True, kw_only=True):
    entry_ms: int  # when Redis appended it: the time of the change
    event: Envelope


class EventWatch:
    """Follows every partition stream of a prefix through the project's group-less reader
    (`shared.events.stream.StreamTail`: no group, nothing written, each entry's stored form
    turned back into the JSON envelope every consumer sees) from where the streams end when
    it is made (`start="$"`) or from their beginning (`"0-0"`). Synchronous, for the
    orchestrating scripts: it runs its own event loop. A context manager (closes its client)."""

    def __init__(self, redis_url: str, prefix: str, *, start: str = "$") -> None:
        self._loop = asyncio.new_event_loop()
        self._redis = AsyncRedis.from_url(redis_url)
        self._streams = Keys(prefix).all_event_streams()
        self._tail = StreamTail(self._redis, Keys(prefix), start_id=start, count=2000, block_ms=0)
        self._loop.run_until_complete(self._tail.start())

    def wait_quiet(self, *, quiet_s: float = 0.5, within: float = 60) -> None:
        """Until no entry was added for `quiet_s` (at most `within` s), looking only at the
        streams' lengths (16 XLEN every 0.1 s): reading the entries themselves while a worker
        is still writing them would take CPU from what is being measured."""

        async def length() -> int:
            pipe = self._redis.pipeline(transaction=False)
            for stream in self._streams:
                pipe.xlen(stream)
            return sum(int(n) for n in await pipe.execute())

        deadline = time.monotonic() + within
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now_length = self._loop.run_until_complete(length())
            if now_length != last:
                last, since = now_length, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.1)

    def poll(self) -> list[Seen]:
        """Everything appended since the last poll (all of it, read in batches)."""
        seen: list[Seen] = []
        while True:
            batch = self._loop.run_until_complete(self._tail.read())
            if not batch:
                return seen
            for entry_id, envelope in batch:
                entry_ms = int(entry_id.split("-", 1)[0])
                seen.append(Seen(entry_ms=entry_ms, event=_ENVELOPE.decode(envelope)))

    def close(self) -> None:
        self._loop.run_until_complete(self._redis.aclose())
        self._loop.close()

    def __enter__(self) -> EventWatch:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# --- processes and keys ------------------------------------------------------------------------


def wait_worker_ready(settings: Settings, queue: str, within: float = 30) -> None:
    """Until a worker process of this host reports `queue` (its health key), at most `within`."""
    client = Redis.from_url(settings.redis_url)
    key = Keys(settings.key_prefix).worker_health(socket.gethostname(), queue)
    deadline = time.monotonic() + within
    try:
        while not client.exists(key):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {queue} worker became ready within {within} s")
            time.sleep(0.05)
    finally:
        client.close()


def delete_prefix(redis_url: str, prefix: str) -> int:
    """Delete every key under `prefix` (and arq's keys of its jobs); nothing else. UNLINK in
    batches: a million sessions go in seconds, without blocking the server."""
    client = Redis.from_url(redis_url)
    deleted = 0
    try:
        for pattern in (f"{prefix}:*", f"arq:*{prefix}:*"):
            batch: list[bytes] = []
            for key in client.scan_iter(match=pattern, count=5000):
                batch.append(key)
                if len(batch) >= 5000:
                    deleted += cast(int, client.unlink(*batch))
                    batch.clear()
            if batch:
                deleted += cast(int, client.unlink(*batch))
    finally:
        client.close()
    return deleted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seed sessions through the real create path.")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--accounts", default="acct_seed_0", help="comma-separated account ids")
    parser.add_argument("--expires-in", type=int, default=86_400, help="seconds (300-86400)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--distinct-shoppers", action="store_true", help="a shopper of its own per session"
    )
    parser.add_argument("--first-index", type=int, default=0, help="first shopper's number")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    params = msgspec.convert(seed_body(expires_in_seconds=args.expires_in), CreateSessionParams)
    started = time.perf_counter()
    made = uvloop.run(
        seed_sessions(
            settings,
            args.count,
            account_uids=args.accounts.split(","),
            params=params,
            concurrency=args.concurrency,
            distinct_shoppers=args.distinct_shoppers,
            first_index=args.first_index,
        )
    )
    seconds = time.perf_counter() - started
    print(json.dumps({"created": len(made), "seconds": round(seconds, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
