"""Production's refusals end to end: real `hosted-sessions` processes (api, worker,
check-config) started with HS_ENV=production, their exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis as SyncRedis

from shared.config import Settings
from shared.devkeys import DevKeys
from tests.processes import api_process, child_env, free_port
from tests.support import ACCOUNT, seed_body

pytestmark = pytest.mark.e2e
URL = "/v1/hosted-sessions"


def run_cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=child_env(settings, env),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def sync_redis(settings: Settings) -> Iterator[SyncRedis]:
    client = SyncRedis.from_url(settings.redis_url)
    yield client
    client.close()


@pytest.fixture
def issuer_jwks(dev_keys: tuple[DevKeys, Path], tmp_path: Path) -> str:
    """The test issuer's public keys alone (as a deployment mounts them), without the dev
    private key that production refuses to sit next to."""
    path = tmp_path / "issuer" / "jwks.json"
    path.parent.mkdir()
    path.write_text(json.dumps(dev_keys[0].jwks))
    return str(path)


@pytest.fixture
def production(issuer_jwks: str) -> dict[str, str]:
    """What a correct production deployment sets (the processor is a test stand-in)."""
    return {
        "HS_ENV": "production",
        "HS_PROCESSOR": "tests.processors:sandbox_adapter",
        "HS_JWKS_FILE": issuer_jwks,
        "HS_PUBLIC_BASE_URL": "https://checkout.example.com",
        # The SNS sender is tested against moto (tests/api/test_sms_sns.py); here no texts.
        "HS_SMS_CHALLENGES": "off",
    }


def test_the_api_refuses_to_start_on_the_simulator(
    settings: Settings, production: dict[str, str]
) -> None:
    port = free_port()
    done = run_cli(
        settings, "api", "--port", str(port), **{**production, "HS_PROCESSOR": "simulator"}
    )
    assert done.returncode == 2, done.stderr
    assert "hosted-sessions api: refusing to start in production (1 setting(s) to fix):" in (
        done.stderr
    )
    assert "HS_PROCESSOR: is 'simulator': the payment simulator" in done.stderr
    # It stopped before serving anything.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)


def test_the_api_refuses_an_unset_processor_and_names_every_setting(settings: Settings) -> None:
    done = run_cli(
        settings,
        "api",
        "--port",
        str(free_port()),
        HS_ENV="production",
        HS_DATA_KEY="",
        HS_CLOCK_OFFSET_MS="100",
        HS_PUBLIC_BASE_URL="http://checkout.example.com",
    )
    assert done.returncode == 2
    assert "refusing to start in production (6 setting(s) to fix):" in done.stderr
    for setting in (
        "HS_SMS_SENDER: no SMS sender",
        "HS_PROCESSOR: is not set",
        "HS_DATA_KEY: is required",
        "HS_CLOCK_OFFSET_MS: is a test seam",
        "HS_JWKS_FILE: is a dev key pair's JWKS",
        "HS_PUBLIC_BASE_URL: must be an https:// URL",
    ):
        assert f"\n  {setting}" in done.stderr, done.stderr


def test_the_worker_refuses_too(settings: Settings, production: dict[str, str]) -> None:
    done = run_cli(settings, "worker", **{**production, "HS_PROCESSOR": ""})
    assert done.returncode == 2
    assert "hosted-sessions worker: refusing to start in production" in done.stderr
    assert "\n  HS_PROCESSOR: is not set" in done.stderr


def test_a_correct_production_setup_starts_and_pays_through_the_adapter(
    settings: Settings,
    production: dict[str, str],
    tmp_path: Path,
    token_for: Callable[..., str],
    sync_redis: SyncRedis,
) -> None:
    admin = {"Authorization": f"Bearer {token_for(ACCOUNT)}", "X-Payment-Account-Uid": ACCOUNT}
    card = {"type": "card", "number": "4242424242424242", "exp_month": 12, "exp_year": 2040}
    with api_process(settings, tmp_path / "api.log", production) as base_url:
        signals = {
            "ip_address": "198.51.100.20",
            "user_agent": "Mozilla/5.0 (e2e)",
            "email": "hello@example.com",
            "phone": "+15555550199",
            # The form loaded a minute ago, as a shopper's does (low risk: no challenge).
            "request_timestamp": time.time_ns() // 1_000_000 - 60_000,
            "is_authorized": True,
            "is_admin": False,
        }
        body = seed_body(fraud_signals=signals)
        created = httpx.post(f"{base_url}{URL}", json=body, headers=admin, timeout=10)
        assert created.status_code == 201, created.text
        session_id = created.json()["session_id"]
        paid = httpx.post(
            f"{base_url}{URL}/{session_id}/confirm",
            json={
                "payment_method": {**card, "cvc": "123"},
                "billing_details": {"cardholder": "Ada Shopper"},
            },
            headers={"Authorization": f"Bearer {created.json()['client_secret']}"},
            timeout=10,
        )
        assert paid.status_code == 200, paid.text
    # The charge went through the adapter HS_PROCESSOR names, not the built-in simulator.
    assert sync_redis.llen(f"{settings.key_prefix}:sandbox:sim:charges") == 1
    assert sync_redis.llen(f"{settings.key_prefix}:sim:charges") == 0


def test_a_bad_processor_fails_start_up_outside_production(settings: Settings) -> None:
    done = run_cli(
        settings, "api", "--port", str(free_port()), HS_PROCESSOR="tests.processors:not_a_processor"
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "hosted-sessions api: HS_PROCESSOR: is 'tests.processors:not_a_processor', whose "
        "factory returned dict, not a Processor (no async charge or retrieve)"
    )


def test_check_config_on_a_correct_production_setup(
    settings: Settings, production: dict[str, str]
) -> None:
    done = run_cli(settings, "check-config", **production)
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines() == [
        "hosted-sessions check-config: HS_ENV=production",
        "no setting that production refuses: the API and the workers will start",
    ]


def test_check_config_in_production_lists_every_refusal_and_fails(
    settings: Settings, production: dict[str, str]
) -> None:
    done = run_cli(
        settings,
        "check-config",
        **{**production, "HS_PROCESSOR": "simulator", "HS_DATA_KEY": "c2hvcnQ="},
    )
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0] == "hosted-sessions check-config: HS_ENV=production"
    assert [line.split(":")[0] for line in lines[1:-1]] == ["  HS_PROCESSOR", "  HS_DATA_KEY"]
    assert lines[-1] == "2 setting(s) to fix: the API and the workers refuse to start"


def test_check_config_outside_production_advises_and_succeeds(settings: Settings) -> None:
    done = run_cli(settings, "check-config", HS_ENV="development", HS_PROCESSOR="")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0] == "hosted-sessions check-config: HS_ENV=development"
    assert any(line.startswith("  HS_PROCESSOR: is not set") for line in lines)
    assert lines[-1].endswith("production would refuse; in development they do not stop a start")
