"""A real API process and a real worker process write nothing but JSON log lines, on stdout
and stderr alike: our structlog lines, and the lines of libraries that log through the
stdlib (uvicorn starting and stopping, arq refusing a job), with the same fields."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from shared.config import Settings
from shared.redis.client import create_redis
from shared.redis.keys import Keys
from shared.wiring import arq_client
from tests.logscan import register
from tests.processes import child_env, free_port, stop
from tests.support import seed_body

WAIT_S = 30


def _spawn(args: list[str], env: dict[str, str], out: Path, err: Path) -> subprocess.Popen[bytes]:
    register(out)  # scanned for secrets when the run ends (tests/logscan.py)
    register(err)
    with out.open("ab") as stdout, err.open("ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", *args],
            env=env,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )


def _lines(*paths: Path) -> list[dict[str, Any]]:
    """Every line of the files as a JSON object (a line that is not one fails the test)."""
    parsed = []
    for path in paths:
        for number, text in enumerate(path.read_text().splitlines(), 1):
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                raise AssertionError(f"{path.name}:{number} is not JSON: {text!r}") from None
            assert isinstance(line, dict), f"{path.name}:{number}: {text!r}"
            assert {"event", "level", "timestamp"} <= line.keys(), f"{path.name}:{number}"
            parsed.append(line)
    return parsed


def _wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_the_api_process_logs_only_json_lines(
    settings: Settings, tmp_path: Path, admin_headers: dict[str, str]
) -> None:
    out, err = tmp_path / "api.out", tmp_path / "api.err"
    port = free_port()
    proc = _spawn(["api"], child_env(settings, {"HS_API_PORT": str(port)}), out, err)
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, err.read_text()[-2000:] + out.read_text()[-2000:]
            try:
                return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        _wait_for(ready, "the API")
        created = httpx.post(
            f"{base}/v1/hosted-sessions", json=seed_body(), headers=admin_headers, timeout=10
        )
        assert created.status_code == 201, created.text
        missing = httpx.get(f"{base}/v1/hosted-sessions/cs_nope", headers=admin_headers)
        assert missing.status_code in (400, 404)
    finally:
        stop(proc)  # uvicorn shuts down, then re-raises SIGTERM: the exit code says -15
    lines = _lines(out, err)
    requests = [line for line in lines if line["event"] == "request"]
    assert len(requests) >= 3  # /readyz, the create, the miss
    assert all(line["request_id"].startswith("req_") for line in requests)
    # uvicorn's own lines (start-up, shutdown) as JSON with their logger's name.
    uvicorn = [line for line in lines if line.get("logger", "").startswith("uvicorn")]
    assert any("Started server process" in line["event"] for line in uvicorn), lines
    assert any("Shutting down" in line["event"] for line in uvicorn), lines
    assert {line["level"] for line in uvicorn} == {"info"}


def test_the_worker_process_logs_only_json_lines(settings: Settings, tmp_path: Path) -> None:
    out, err = tmp_path / "worker.out", tmp_path / "worker.err"
    proc = _spawn(["worker", "--queues", "webhooks"], child_env(settings), out, err)
    job_id = f"{settings.key_prefix}-unknown-task"
    try:
        _wait_for(lambda: "worker.started" in out.read_text(), "the worker")

        async def enqueue_unknown_task() -> None:
            redis = create_redis(settings, client_name="test-process-logs")
            try:
                arq = arq_client(redis)
                queue = Keys(settings.key_prefix).arq_queue("webhooks")
                assert await arq.enqueue_job("no_such_task", _job_id=job_id, _queue_name=queue)
            finally:
                await redis.aclose(close_connection_pool=True)

        asyncio.run(enqueue_unknown_task())
        _wait_for(lambda: "no_such_task" in out.read_text() + err.read_text(), "arq's warning")
    finally:
        assert stop(proc) == 0

        async def delete_job() -> None:  # arq's own keys, outside our prefix
            redis = create_redis(settings, client_name="test-process-logs")
            try:
                await redis.delete(*(f"arq:{kind}:{job_id}" for kind in ("job", "result")))
            finally:
                await redis.aclose(close_connection_pool=True)

        asyncio.run(delete_job())
    lines = _lines(out, err)
    assert any(line["event"] == "worker.stopped" for line in lines)
    (refused,) = [line for line in lines if line.get("logger") == "arq.worker"]
    assert refused["level"] == "warning"
    assert refused["event"] == f"job {job_id}, function 'no_such_task' not found"
    # A library's traceback is the line's `exception` text, not lines of its own.
    assert all("Traceback" not in line["event"] for line in lines)
