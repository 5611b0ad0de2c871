"""The local key pair: generation, persistence between runs, and Cognito-shaped tokens."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.devkeys import DevKeys, ensure_dev_keys, generate_dev_keys, mint_admin_token


@pytest.fixture(scope="module")
def keys() -> DevKeys:
    return generate_dev_keys()


def _verify(keys: DevKeys, token: str) -> dict[str, Any]:
    jwk = jwt.PyJWK(keys.jwks["keys"][0])
    claims: dict[str, Any] = jwt.decode(
        token, key=jwk, algorithms=["RS256"], options={"verify_iss": False}
    )
    return claims


def test_generated_keys_publish_a_matching_rs256_jwk(keys: DevKeys) -> None:
    assert keys.kid.startswith("dev-")
    assert len(keys.kid) == len("dev-") + 8
    (jwk,) = keys.jwks["keys"]
    assert jwk["kty"] == "RSA"
    assert jwk["alg"] == "RS256"
    assert jwk["use"] == "sig"
    assert jwk["kid"] == keys.kid
    private_key = serialization.load_pem_private_key(keys.private_key_pem, password=None)
    assert isinstance(private_key, rsa.RSAPrivateKey)
    assert private_key.key_size == 2048
    assert "d" not in jwk  # the JWKS is public: no private exponent


def test_each_generation_is_a_new_key() -> None:
    first, second = generate_dev_keys(), generate_dev_keys()
    assert first.kid != second.kid
    assert first.private_key_pem != second.private_key_pem


def test_ensure_creates_then_reloads_the_same_pair(tmp_path: Path) -> None:
    directory = tmp_path / "nested" / ".dev"
    created, jwks_path = ensure_dev_keys(directory)

    assert jwks_path == directory / "jwks.json"
    assert json.loads(jwks_path.read_text()) == created.jwks
    pem_path = directory / "jwt-private.pem"
    assert pem_path.read_bytes() == created.private_key_pem
    assert stat.S_IMODE(pem_path.stat().st_mode) == 0o600

    reloaded, again = ensure_dev_keys(directory)
    assert again == jwks_path
    assert reloaded == created


def test_ensure_regenerates_when_the_jwks_is_missing(tmp_path: Path) -> None:
    created, jwks_path = ensure_dev_keys(tmp_path)
    jwks_path.unlink()

    regenerated, _ = ensure_dev_keys(tmp_path)

    assert regenerated.kid != created.kid
    assert jwks_path.exists()


def test_ensure_regenerates_when_the_files_do_not_belong_together(tmp_path: Path) -> None:
    created, jwks_path = ensure_dev_keys(tmp_path)
    jwks_path.write_text(json.dumps(generate_dev_keys().jwks))

    regenerated, _ = ensure_dev_keys(tmp_path)

    assert regenerated.private_key_pem != created.private_key_pem
    token = mint_admin_token(regenerated, issuer="i", account_uids=["a"], groups=["g"])
    assert _verify(regenerated, token)["sub"] == "dev-admin"


def test_minted_token_looks_like_a_cognito_access_token(keys: DevKeys) -> None:
    token = mint_admin_token(
        keys,
        issuer="test-issuer",
        account_uids=["acct_1", "acct_2"],
        groups=["hosted-sessions-admin"],
        now=int(time.time()),
        ttl_seconds=600,
    )

    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    assert header["kid"] == keys.kid
    claims = _verify(keys, token)
    assert claims["iss"] == "test-issuer"
    assert claims["sub"] == "dev-admin"
    assert claims["username"] == "dev-admin"
    assert claims["token_use"] == "access"
    assert claims["cognito:groups"] == ["hosted-sessions-admin"]
    assert claims["custom:payment_account_uids"] == "acct_1,acct_2"
    assert claims["exp"] - claims["iat"] == 600
    assert isinstance(claims["client_id"], str)


def test_minted_token_honours_claim_name_and_extra_claims(keys: DevKeys) -> None:
    token = mint_admin_token(
        keys,
        issuer="test-issuer",
        account_uids=["acct_1"],
        groups=[],
        accounts_claim="custom:accounts",
        token_use="id",
        subject="alice",
        extra_claims={"iat": None, "custom:extra": "x", "token_use": "access"},
    )

    claims = _verify(keys, token)
    assert claims["custom:accounts"] == "acct_1"
    assert "custom:payment_account_uids" not in claims
    assert "iat" not in claims
    assert claims["custom:extra"] == "x"
    assert claims["token_use"] == "access"
    assert claims["sub"] == "alice"
