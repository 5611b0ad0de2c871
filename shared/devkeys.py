"""A local RSA key pair standing in for Cognito in dev and tests: a JWKS file and a token minter.

Production never uses this module: there the API reads the identity provider's JWKS URL and
tokens come from the provider. Here the same verification path runs against keys on disk.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PRIVATE_KEY_FILE = "jwt-private.pem"
JWKS_FILE = "jwks.json"
DEV_CLIENT_ID = "hosted-sessions-dev"


class DevKeys(msgspec.Struct, frozen=True, kw_only=True):
    """A private key (PEM) and the public JWKS document that verifies its signatures."""

    private_key_pem: bytes
    jwks: dict[str, Any]
    kid: str


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _public_jwk(public_key: rsa.RSAPublicKey, kid: str) -> dict[str, Any]:
    numbers = public_key.public_numbers()
    return {
        "kty": "RSA",
        "n": _b64url_uint(numbers.n),
        "e": _b64url_uint(numbers.e),
        "kid": kid,
        "alg": "RS256",
        "use": "sig",
    }


def generate_dev_keys() -> DevKeys:
    """Generate a fresh RSA-2048 key pair and its one-key JWKS."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = f"dev-{secrets.token_hex(4)}"
    pem = private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    return DevKeys(
        private_key_pem=pem,
        jwks={"keys": [_public_jwk(private_key.public_key(), kid)]},
        kid=kid,
    )


def _load_dev_keys(pem_path: Path, jwks_path: Path) -> DevKeys | None:
    """The keys on disk, or None when they are unreadable or do not belong together."""
    try:
        pem = pem_path.read_bytes()
        jwks = json.loads(jwks_path.read_bytes())
        private_key = serialization.load_pem_private_key(pem, password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(private_key, rsa.RSAPrivateKey) or not isinstance(jwks, dict):
        return None
    expected_n = _b64url_uint(private_key.public_key().public_numbers().n)
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        return None
    # The kid is whichever published key matches the private key: a JWKS edited by hand or
    # left from another key pair would otherwise mint tokens nobody can verify.
    for jwk in keys:
        if isinstance(jwk, dict) and jwk.get("n") == expected_n and isinstance(jwk.get("kid"), str):
            return DevKeys(private_key_pem=pem, jwks=jwks, kid=jwk["kid"])
    return None


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    # Write then rename, so a crash never leaves a half-written key that later loads fail on.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)  # the umask may have narrowed or widened the requested mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_dev_keys(directory: Path) -> tuple[DevKeys, Path]:
    """Load the key pair kept in `directory`, or generate and store one; returns it and jwks.json.

    Files that are unreadable or do not belong together are replaced by a fresh pair.
    """
    directory.mkdir(parents=True, exist_ok=True)
    pem_path = directory / PRIVATE_KEY_FILE
    jwks_path = directory / JWKS_FILE
    if pem_path.exists() and jwks_path.exists():
        loaded = _load_dev_keys(pem_path, jwks_path)
        if loaded is not None:
            return loaded, jwks_path
    keys = generate_dev_keys()
    _write_atomically(pem_path, keys.private_key_pem, 0o600)
    # The JWKS goes last: a private key without its JWKS reads as "absent" and is regenerated.
    _write_atomically(jwks_path, json.dumps(keys.jwks, indent=2).encode("utf-8"), 0o644)
    return keys, jwks_path


def mint_admin_token(
    keys: DevKeys,
    *,
    issuer: str,
    account_uids: Sequence[str],
    groups: Sequence[str],
    accounts_claim: str = "custom:payment_account_uids",
    token_use: str = "access",  # noqa: S107 - Cognito's token kind, not a secret
    ttl_seconds: int = 3600,
    now: int | None = None,
    subject: str = "dev-admin",
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """Sign an RS256 token shaped like a Cognito access token (for dev and tests only).

    `extra_claims` override the defaults; a claim set to None there is removed, which is how
    tests build tokens without exp, iat or iss.
    """
    issued_at = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "sub": subject,
        "iss": issuer,
        "iat": issued_at,
        "auth_time": issued_at,
        "exp": issued_at + ttl_seconds,
        "token_use": token_use,
        "cognito:groups": list(groups),
        "client_id": DEV_CLIENT_ID,
        "username": subject,
        "scope": "aws.cognito.signin.user.admin",
        "jti": str(uuid.uuid4()),
        # Cognito custom attributes are strings, so several accounts travel comma-separated.
        accounts_claim: ",".join(account_uids),
    }
    for name, value in (extra_claims or {}).items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return jwt.encode(claims, keys.private_key_pem, algorithm="RS256", headers={"kid": keys.kid})
