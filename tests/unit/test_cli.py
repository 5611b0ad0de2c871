"""The `hosted-sessions` command line, run as `python -m services.cli` in a subprocess."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import pytest

from services.cli import ensure_data_key, main
from shared.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run_cli(
    *args: str, dev_dir: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # HS_* variables of the calling shell would change the expected claims: start clean.
    env = {key: value for key, value in os.environ.items() if not key.startswith("HS_")}
    env["HS_DEV_DIR"] = str(dev_dir)
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _verified_claims(token: str, dev_dir: Path) -> dict[str, Any]:
    jwks = jwt.PyJWKSet.from_json((dev_dir / "jwks.json").read_text())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        issuer=Settings().jwt_issuer,
        options={"require": ["exp", "iat", "iss"]},
    )
    return claims


def _accounts(claims: dict[str, Any]) -> list[str]:
    value = claims[Settings().jwt_accounts_claim]
    # Cognito custom attributes are strings; a list is accepted too.
    return value.split(",") if isinstance(value, str) else list(value)


def test_token_prints_only_a_jwt_for_the_requested_account(tmp_path: Path) -> None:
    dev_dir = tmp_path / "dev"
    result = _run_cli("token", "--account", "acct_123", dev_dir=dev_dir)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    token = lines[0]
    assert token.count(".") == 2

    unverified = jwt.decode(token, options={"verify_signature": False})
    assert _accounts(unverified) == ["acct_123"]
    # The token verifies against the JWKS the same run left in the dev dir.
    claims = _verified_claims(token, dev_dir)
    settings = Settings()
    assert settings.jwt_admin_group in json.dumps(claims)
    assert settings.jwt_platform_admin_group not in json.dumps(claims)
    assert claims["exp"] - claims["iat"] == 3600


def test_token_with_several_accounts_platform_admin_and_ttl(tmp_path: Path) -> None:
    dev_dir = tmp_path / "dev"
    result = _run_cli(
        "token",
        "--account",
        "acct_a",
        "--account",
        "acct_b",
        "--ttl",
        "120",
        "--platform-admin",
        dev_dir=dev_dir,
    )

    assert result.returncode == 0, result.stderr
    claims = _verified_claims(result.stdout.strip(), dev_dir)
    assert _accounts(claims) == ["acct_a", "acct_b"]
    assert Settings().jwt_platform_admin_group in json.dumps(claims)
    assert claims["exp"] - claims["iat"] == 120


def test_token_reuses_the_dev_keys_between_runs(tmp_path: Path) -> None:
    dev_dir = tmp_path / "dev"
    first = _run_cli("token", "--account", "acct_1", dev_dir=dev_dir)
    jwks_after_first = (dev_dir / "jwks.json").read_text()
    second = _run_cli("token", "--account", "acct_1", dev_dir=dev_dir)

    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert (dev_dir / "jwks.json").read_text() == jwks_after_first
    _verified_claims(first.stdout.strip(), dev_dir)
    _verified_claims(second.stdout.strip(), dev_dir)


def test_token_requires_an_account(tmp_path: Path) -> None:
    result = _run_cli("token", dev_dir=tmp_path / "dev")
    assert result.returncode == 2
    assert "--account" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("queues", ["bogus", "expiry,bogus", ","])
def test_worker_rejects_unknown_queues(queues: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["worker", "--queues", queues])
    assert exit_info.value.code == 2
    assert "comma-separated subset" in capsys.readouterr().err


def test_openapi_prints_the_schema_without_redis(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    result = _run_cli(
        "openapi",
        dev_dir=tmp_path / "dev",
        extra_env={"REDIS_URL": f"redis://127.0.0.1:{closed_port}/0"},
    )

    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["openapi"].startswith("3.")
    assert schema["paths"]


def test_ensure_data_key_creates_a_private_key_once(tmp_path: Path) -> None:
    path = tmp_path / "data.key"
    key = ensure_data_key(path)

    assert len(base64.b64decode(key)) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_data_key(path) == key


def test_ensure_data_key_refuses_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "data.key"
    path.write_text(base64.b64encode(b"short").decode())
    with pytest.raises(ValueError, match="32 bytes"):
        ensure_data_key(path)
