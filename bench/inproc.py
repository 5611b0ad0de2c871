"""The API's own cost per request, without the HTTP server or the load generator: the ASGI
app driven in-process (32 concurrent callers) against the real Redis. What a change to the
request path saves, measured apart from uvicorn, the kernel's loopback and the machine's
drift. Usage:

    .venv/bin/python -m bench.inproc create|config|confirm|echo [--requests N]
    .venv/bin/python -m bench.inproc config --instructions

The first prints CPU microseconds per request (process time; it drifts with this machine's
speed as every timing here does). `--instructions` runs itself twice under valgrind's
callgrind (valgrind on PATH), with N and 8 N requests, and prints the difference in executed
instructions per request: start-up cancels out, and the count repeats within ~1 % from run
to run whatever else the machine is doing (docs/performance.md); not for `confirm`, whose
set-up grows with N. `confirm` pays fresh sessions, scored before the clock starts as the
fraud worker would have. Keys go under an own
prefix of the Redis database (default redis://127.0.0.1:6379/9) and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import uvloop
from litestar import Litestar
from litestar.types import Message

from bench.echo_app import create_echo_app
from bench.run import bench_settings
from bench.seeding import delete_prefix, distinct_shopper_body
from services.api.app import create_app
from shared.config import Settings
from shared.devkeys import ensure_dev_keys, mint_admin_token
from shared.heap import settle_heap
from shared.logging import configure_logging
from shared.wiring import Core
from tests.support import seed_body

ACCOUNT = "acct_inproc_1"
SESSIONS = "/v1/hosted-sessions"
CONCURRENCY = 32
WARMUP = 200
# The same key pair every run: generating one costs a random number of instructions.
KEYS_DIR = Path(__file__).resolve().parent / "out" / "inproc-keys"
CARD = json.dumps(
    {
        "payment_method": {
            "type": "card",
            "number": "4242 4242 4242 4242",
            "exp_month": 12,
            "exp_year": 2040,
            "cvc": "123",
        },
        "billing_details": {"cardholder": "Ada Shopper"},
    }
).encode()

Headers = list[tuple[bytes, bytes]]
Call = tuple[str, str, Headers, bytes]


def _settings(redis_url: str) -> Settings:
    _, jwks = ensure_dev_keys(KEYS_DIR)
    return bench_settings(redis_url, str(jwks), key_prefix="inproc")


def _scope(method: str, path: str, headers: Headers) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "state": {},
    }


async def _call(app: Litestar, call: Call) -> tuple[int, bytes]:
    method, path, headers, body = call
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    # Plain dicts, as an ASGI server passes them (Litestar's types are TypedDicts).
    await app(_scope(method, path, list(headers)), receive, send)  # type: ignore[arg-type]
    return status, b"".join(chunks)


def _json_headers(extra: Headers, body: bytes) -> Headers:
    return [
        (b"host", b"127.0.0.1"),
        *extra,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]


async def _created(app: Litestar, admin: Headers, body: bytes) -> tuple[str, str]:
    status, reply = await _call(app, ("POST", SESSIONS, _json_headers(admin, body), body))
    assert status == 201, reply
    created = json.loads(reply)
    return created["session_id"], created["client_secret"]


async def _calls(
    scenario: str, app: Litestar, settings: Settings, admin: Headers, total: int
) -> Iterator[Call]:
    """`total` calls of the scenario, set up (sessions made, scored) before any is timed."""
    seed = json.dumps(seed_body()).encode()
    if scenario == "echo":
        return iter([("POST", "/echo", _json_headers(admin, seed), seed)] * total)
    if scenario == "create":
        return iter([("POST", SESSIONS, _json_headers(admin, seed), seed)] * total)
    if scenario == "config":
        session_id, secret = await _created(app, admin, seed)
        auth = [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {secret}".encode())]
        return iter([("GET", f"{SESSIONS}/{session_id}/config", auth, b"")] * total)
    # A new shopper each (distinct_shopper_body): the velocity rules stay quiet.
    made = [
        await _created(app, admin, json.dumps(distinct_shopper_body(i)).encode())
        for i in range(total)
    ]
    core: Core = app.state.core  # the app's own (services/api/lifespan.py `attach`)
    risk = core.risk
    ids = [session_id for session_id, _ in made]
    for start in range(0, len(ids), 200):
        await risk.score_many(ids[start : start + 200])
    return iter(
        [
            (
                "POST",
                f"{SESSIONS}/{session_id}/confirm",
                _json_headers([(b"authorization", f"Bearer {secret}".encode())], CARD),
                CARD,
            )
            for session_id, secret in made
        ]
    )


class Timed(NamedTuple):
    """What the timed requests cost, and how many of them failed (answered other than 2xx)."""

    seconds_per_request: float
    requests: int
    errors: int
    first_error: str  # the first failure's status and reply head, for the message


async def timed_calls(
    app: Litestar, calls: Iterator[Call], requests: int, concurrency: int = CONCURRENCY
) -> Timed:
    """`requests` (rounded down to a multiple of `concurrency`) calls from `calls`, by
    `concurrency` callers at once; process time per request, and the non-2xx answers counted:
    a request refused fast must not pass for a fast request."""
    each = requests // concurrency
    failures: list[tuple[int, bytes]] = []

    async def caller() -> None:
        for _ in range(each):
            status, reply = await _call(app, next(calls))
            if not 200 <= status < 300:
                failures.append((status, reply))

    started = time.process_time()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    seconds = time.process_time() - started
    first = f"{failures[0][0]} {failures[0][1][:200]!r}" if failures else ""
    return Timed(seconds / (each * concurrency), each * concurrency, len(failures), first)


async def _run(scenario: str, requests: int, redis_url: str) -> Timed:
    settings = _settings(redis_url)
    keys, _ = ensure_dev_keys(KEYS_DIR)
    token = mint_admin_token(
        keys,
        issuer=settings.jwt_issuer,
        account_uids=[ACCOUNT],
        groups=[settings.jwt_admin_group],
        ttl_seconds=3600,
    )
    admin = [
        (b"authorization", f"Bearer {token}".encode()),
        (b"x-payment-account-uid", ACCOUNT.encode()),
    ]
    configure_logging(settings)
    app = create_echo_app() if scenario == "echo" else create_app(settings)
    try:
        async with app.lifespan():
            settle_heap()  # as `hosted-sessions api` does
            calls = await _calls(scenario, app, settings, admin, WARMUP + requests)
            for _ in range(WARMUP):
                status, reply = await _call(app, next(calls))
                assert status in (200, 201), reply
            return await timed_calls(app, calls, requests)
    finally:
        delete_prefix(redis_url, settings.key_prefix)


def _instructions(scenario: str, requests: int, redis_url: str) -> float:
    """Instructions per request: callgrind totals at N and 8 N requests, differenced."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind on PATH (Debian: apt install valgrind)")
    totals = []
    for n in (requests, 8 * requests):
        done = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                sys.executable,
                "-m",
                "bench.inproc",
                scenario,
                "--requests",
                str(n),
                "--redis-url",
                redis_url,
            ],
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        found = re.search(rb"Collected : (\d+)", done.stderr)
        assert found is not None, done.stderr[-2000:]
        totals.append(int(found.group(1)))
    return (totals[1] - totals[0]) / (7 * (requests // CONCURRENCY * CONCURRENCY))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["create", "config", "confirm", "echo"])
    parser.add_argument("--requests", type=int, default=3200)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--instructions", action="store_true", help="count under callgrind")
    args = parser.parse_args(argv)
    if args.instructions:
        if args.scenario == "confirm":
            parser.error("--instructions: confirm's set-up (a session per request) grows with N")
        per = _instructions(args.scenario, min(args.requests, 320), args.redis_url)
        print(f"{args.scenario}: {per:,.0f} instructions/request (callgrind)")
        return 0
    # The log lines go where a server's would (a file, not this terminal).
    with Path(os.devnull).open("w") as devnull:
        saved, sys.stdout = sys.stdout, devnull
        try:
            timed = uvloop.run(_run(args.scenario, args.requests, args.redis_url))
        finally:
            sys.stdout = saved
    if timed.errors:
        print(
            f"{args.scenario}: {timed.errors} of {timed.requests} timed requests failed "
            f"(first: {timed.first_error}); no figure",
            file=sys.stderr,
        )
        return 1
    print(
        f"{args.scenario}: {timed.seconds_per_request * 1e6:.1f} us CPU/request "
        "(in-process, process time)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
