"""The README's local webhook receiver, run as written against a `hosted-sessions dev` stack
in development mode (what `make run` starts): the endpoint on 127.0.0.1 is accepted without
any setting, the worker delivers to it, and the receiver verifies the signature with the
`standardwebhooks` library (and refuses a forged delivery)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from shared.config import Settings
from tests.logscan import register
from tests.processes import free_port
from tests.support import ACCOUNT, seed_body

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
READY_TIMEOUT_S = 45  # 2 shared cores: three Python processes import the app side by side
DELIVERY_TIMEOUT_S = 30


def readme_receiver() -> str:
    """The Python block under the README's local receiver heading, exactly as written."""
    text = README.read_text()
    section = text.split("### Webhooks to a receiver on your machine", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the README lost its receiver"
    return found.group(1)


@pytest.fixture
def dev_stack(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """`hosted-sessions dev` with HS_ENV=development and no HS_WEBHOOK_ALLOW_PRIVATE."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "HS_WEBHOOK_ALLOW_PRIVATE"},
        **settings.to_env(),
        "HS_ENV": "development",
        "HS_API_PORT": str(port),
        "HS_DEV_DIR": str(tmp_path / "dev"),
        "HS_LOG_JSON": "true",
    }
    assert "HS_WEBHOOK_ALLOW_PRIVATE" not in env  # the environment's default decides
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
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "stack did not become ready"
            time.sleep(0.1)
        yield base_url
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C on `make run` sends
        try:
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def wait_for_line(path: Path, wanted: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while wanted not in path.read_text():
        assert proc.poll() is None, path.read_text()
        assert time.monotonic() < deadline, f"no {wanted!r} in: {path.read_text()[-2000:]}"
        time.sleep(0.1)


def test_the_readme_receiver_verifies_a_delivery_in_development(
    dev_stack: str, token_for: Callable[..., str], tmp_path: Path
) -> None:
    receiver_port = free_port()
    headers = {"Authorization": f"Bearer {token_for(ACCOUNT)}", "X-Payment-Account-Uid": ACCOUNT}
    with httpx.Client(base_url=dev_stack, headers=headers, timeout=10) as http:
        r = http.post(
            "/v1/webhook-endpoints",
            json={"url": f"http://127.0.0.1:{receiver_port}/hooks", "enabled_events": ["*"]},
        )
        assert r.status_code == 201, r.text  # loopback accepted: development's default
        endpoint = r.json()

        out_path = tmp_path / "receiver.out"
        with out_path.open("wb") as out:
            receiver = subprocess.Popen(
                [sys.executable, "-c", readme_receiver()],
                env={
                    **os.environ,
                    "WEBHOOK_SECRET": endpoint["secret"],
                    "PORT": str(receiver_port),
                },
                stdout=out,
                stderr=subprocess.DEVNULL,  # the request lines http.server prints
                stdin=subprocess.DEVNULL,
            )
        try:
            r = http.post("/v1/hosted-sessions", json=seed_body())
            assert r.status_code == 201, r.text
            session_id = r.json()["session_id"]
            # Delivered by the worker, verified by the receiver with the endpoint's secret.
            wait_for_line(out_path, f"hosted_session.created {session_id}", receiver)

            # The same receiver refuses what was not signed with its secret.
            forged = httpx.post(
                f"http://127.0.0.1:{receiver_port}/hooks",
                content=b'{"type":"hosted_session.created","session_id":"cs_forged"}',
                headers={
                    "webhook-id": "evt_forged",
                    "webhook-timestamp": str(int(time.time())),
                    "webhook-signature": "v1," + "A" * 43 + "=",
                },
                timeout=5,
            )
            assert forged.status_code == 400
            assert "cs_forged" not in out_path.read_text()
        finally:
            receiver.terminate()
            receiver.wait(timeout=10)

        deliveries = http.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries").json()
        [delivery] = [
            d
            for d in deliveries["data"]
            if d["session_id"] == session_id and d["event_type"] == "hosted_session.created"
        ]
        assert delivery["state"] == "delivered", delivery
