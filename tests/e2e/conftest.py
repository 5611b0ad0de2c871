"""A running stack for end-to-end tests: `hosted-sessions dev` (API + worker processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.config import Settings
from tests.logscan import register
from tests.processes import free_port

# The API process's clock runs 298 s behind real time (a test seam refused in production), so
# a session created with the seed's minimum expires_in_seconds=300 is due 2 s from now for the
# worker, which keeps real time.
LEAD_S = 2
API_CLOCK_OFFSET_MS = -(300 - LEAD_S) * 1000


class Stack:
    def __init__(self, base_url: str, log_path: Path) -> None:
        self.base_url = base_url
        self.log_path = log_path


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    port = free_port()
    env = {
        **os.environ,
        **settings.to_env(),
        "HS_API_PORT": str(port),
        "HS_DEV_DIR": str(tmp_path / "dev"),
        "HS_CLOCK_OFFSET_MS": str(API_CLOCK_OFFSET_MS),
        "HS_LOG_JSON": "true",
    }
    log_path = register(tmp_path / "stack.log")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "dev"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "stack did not become ready"
                time.sleep(0.1)
            yield Stack(base_url, log_path)
        finally:
            proc.send_signal(signal.SIGINT)  # what Ctrl-C on `make run` sends
            try:
                assert proc.wait(timeout=20) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
