"""bench.inproc counts timed requests answered other than 2xx as errors: a request refused
fast (a 404, a 422) must not pass for a fast request in the figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.inproc import Call, timed_calls
from services.api.app import create_app
from shared.config import Settings
from tests.support import seed_body

BODY = json.dumps(seed_body()).encode()
HOST = [(b"host", b"127.0.0.1")]
JSON = [*HOST, (b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
GOOD: Call = ("GET", "/healthz", HOST, b"")
MISSING: Call = ("GET", "/no-such-route", HOST, b"")
UNAUTHENTICATED: Call = ("POST", "/v1/hosted-sessions", JSON, BODY)


async def test_every_2xx_timed_request_counts_as_a_success(settings: Settings) -> None:
    app = create_app(settings)
    async with app.lifespan():
        timed = await timed_calls(app, iter([GOOD] * 64), 64, concurrency=8)
    assert timed.requests == 64
    assert timed.errors == 0
    assert timed.first_error == ""
    assert timed.seconds_per_request > 0


async def test_non_2xx_timed_requests_are_counted_as_errors(settings: Settings) -> None:
    app = create_app(settings)
    calls = [GOOD, MISSING, GOOD, UNAUTHENTICATED] * 16
    async with app.lifespan():
        timed = await timed_calls(app, iter(calls), len(calls), concurrency=8)
    assert timed.requests == 64
    assert timed.errors == 32  # every MISSING (404) and UNAUTHENTICATED (401)
    assert timed.first_error.split()[0] in {"404", "401"}


def test_the_command_prints_a_figure_only_without_errors(redis_url: str) -> None:
    """The echo scenario end to end: a figure on stdout and exit 0 (no timed request failed)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.inproc", "echo", "--requests=64", f"--redis-url={redis_url}"],
        capture_output=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().startswith("echo: ")
    assert b"failed" not in done.stderr
