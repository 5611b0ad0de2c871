"""Real API and worker processes for tests (subprocesses of `python -m services.cli`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from shared.config import Settings
from tests.logscan import register


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **settings.to_env(), "HS_LOG_JSON": "true", **(extra or {})}


def start_worker(
    settings: Settings,
    queues: str,
    log_path: Path,
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A worker process for `queues` (comma-separated), logging to `log_path` (appended)."""
    register(log_path)  # scanned for secrets when the test run ends (tests/logscan.py)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", "worker", "--queues", queues],
            env=child_env(settings, extra_env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def stop(proc: subprocess.Popen[bytes], *, kill: bool = False, timeout: float = 20) -> int:
    """SIGTERM (or SIGKILL with kill=True) and wait; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


@contextmanager
def api_process(
    settings: Settings, log_path: Path, extra_env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """An API process on a free port; yields its base URL once /readyz answers."""
    with api_process_handle(settings, log_path, extra_env) as (_, base_url):
        yield base_url


@contextmanager
def api_process_handle(
    settings: Settings, log_path: Path, extra_env: Mapping[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`api_process`, yielding the process too (for a test that signals it)."""
    port = free_port()
    register(log_path)
    env = child_env(settings, {"HS_API_PORT": str(port), **(extra_env or {})})
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "api"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"API exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("API did not become ready")
            time.sleep(0.1)
        yield proc, base_url
    finally:
        stop(proc)
