"""Admin authentication against real RS256 tokens, a JWKS on disk and one served over HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from services.api.auth.admin import (
    AdminAuthenticator,
    AdminPrincipal,
    JWKSCache,
    SigningKeysUnavailable,
)
from shared.config import Settings
from shared.devkeys import DevKeys, generate_dev_keys, mint_admin_token
from shared.errors import InsufficientScope, NotAuthenticated, ValidationFailed
from tests.support import FakeMonotonic

ISSUER = "test-issuer"
ADMIN = "hosted-sessions-admin"
PLATFORM = "platform-admin"
ACCOUNT = "acct_1"


@pytest.fixture(scope="module")
def keys() -> DevKeys:
    return generate_dev_keys()


@pytest.fixture(scope="module")
def other_keys() -> DevKeys:
    return generate_dev_keys()


@pytest.fixture
def jwks_path(tmp_path: Path, keys: DevKeys) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(keys.jwks))
    return path


@pytest.fixture
def settings(jwks_path: Path) -> Settings:
    return Settings(env="test", jwks_file=str(jwks_path), jwt_issuer=ISSUER)


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def jwks(settings: Settings, clock: FakeMonotonic) -> JWKSCache:
    return JWKSCache(settings, monotonic=clock)


@pytest.fixture
def auth(settings: Settings, jwks: JWKSCache) -> AdminAuthenticator:
    return AdminAuthenticator(settings, jwks)


def _token(keys: DevKeys, **overrides: Any) -> str:
    kwargs: dict[str, Any] = {"issuer": ISSUER, "account_uids": [ACCOUNT], "groups": [ADMIN]}
    kwargs.update(overrides)
    return mint_admin_token(keys, **kwargs)


def _publish(path: Path, document: dict[str, Any] | str) -> None:
    """Replace the JWKS on disk, as a key rotation (or a botched edit) would."""
    path.write_text(document if isinstance(document, str) else json.dumps(document))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _craft(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS built by hand, for algorithms PyJWT rightly refuses to produce."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode('ascii')))}"


def _hs256(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def _good_claims(keys: DevKeys) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(_token(keys), options={"verify_signature": False})
    return claims


async def _rejected(
    auth: AdminAuthenticator,
    token: str,
    error: type[Exception] = NotAuthenticated,
    account: str | None = ACCOUNT,
) -> Exception:
    with pytest.raises(error) as info:
        await auth.authenticate(f"Bearer {token}", account)
    assert type(info.value) is error
    assert token not in str(info.value)
    return info.value


async def test_good_token_yields_the_principal(auth: AdminAuthenticator, keys: DevKeys) -> None:
    principal = await auth.authenticate(f"Bearer {_token(keys, subject='alice')}", ACCOUNT)

    assert principal == AdminPrincipal(subject="alice", account_uid=ACCOUNT, platform_admin=False)


async def test_bearer_scheme_is_case_insensitive(auth: AdminAuthenticator, keys: DevKeys) -> None:
    principal = await auth.authenticate(f"bearer {_token(keys)}", ACCOUNT)

    assert principal.account_uid == ACCOUNT


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer   ",
        "Basic dXNlcjpwYXNz",
        "Token abc.def.ghi",
        "Bearer a b",
        "Bearer a\tb",
        "Bearer a\x00b",
        "Bearer a\u00e9b",
    ],
)
async def test_missing_or_malformed_authorization_header(
    auth: AdminAuthenticator, header: str | None
) -> None:
    with pytest.raises(NotAuthenticated) as info:
        await auth.authenticate(header, ACCOUNT)
    assert info.value.status == 401


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "e30.e30.", "x" * 10_000])
async def test_undecodable_token(auth: AdminAuthenticator, token: str) -> None:
    await _rejected(auth, token)


async def test_unknown_kid(auth: AdminAuthenticator, other_keys: DevKeys) -> None:
    error = await _rejected(auth, _token(other_keys))

    assert "unknown key" in str(error)


async def test_token_without_kid(auth: AdminAuthenticator, keys: DevKeys) -> None:
    token = jwt.encode(_good_claims(keys), keys.private_key_pem, algorithm="RS256")

    await _rejected(auth, token)


async def test_other_key_with_the_same_kid_fails(
    auth: AdminAuthenticator, keys: DevKeys, other_keys: DevKeys
) -> None:
    impostor = DevKeys(private_key_pem=other_keys.private_key_pem, jwks={}, kid=keys.kid)

    error = await _rejected(auth, _token(impostor))

    assert "signature" in str(error)


async def test_hs256_signed_with_the_public_key_fails(
    auth: AdminAuthenticator, keys: DevKeys
) -> None:
    private_key = serialization.load_pem_private_key(keys.private_key_pem, password=None)
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (public_pem, json.dumps(keys.jwks["keys"][0]).encode()):
        token = _craft(
            {"alg": "HS256", "typ": "JWT", "kid": keys.kid},
            _good_claims(keys),
            _hs256(secret),
        )
        error = await _rejected(auth, token)
        assert "algorithm" in str(error)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
async def test_alg_none_fails(auth: AdminAuthenticator, keys: DevKeys, alg: str) -> None:
    token = _craft({"alg": alg, "typ": "JWT", "kid": keys.kid}, _good_claims(keys), lambda _: b"")

    await _rejected(auth, token)


async def test_other_rsa_algorithm_fails(auth: AdminAuthenticator, keys: DevKeys) -> None:
    token = jwt.encode(
        _good_claims(keys), keys.private_key_pem, algorithm="RS512", headers={"kid": keys.kid}
    )

    await _rejected(auth, token)


async def test_expired_beyond_leeway_fails(auth: AdminAuthenticator, keys: DevKeys) -> None:
    # Default leeway is 30 s: this token expired 60 s ago.
    now = int(time.time())
    error = await _rejected(auth, _token(keys, now=now - 3660, ttl_seconds=3600))

    assert "expired" in str(error)


async def test_expired_within_leeway_passes(auth: AdminAuthenticator, keys: DevKeys) -> None:
    now = int(time.time())
    token = _token(keys, now=now - 3610, ttl_seconds=3600)  # expired 10 s ago

    principal = await auth.authenticate(f"Bearer {token}", ACCOUNT)

    assert principal.subject == "dev-admin"


async def test_issued_in_the_future_fails(auth: AdminAuthenticator, keys: DevKeys) -> None:
    await _rejected(auth, _token(keys, now=int(time.time()) + 600))


async def test_wrong_issuer_fails(auth: AdminAuthenticator, keys: DevKeys) -> None:
    error = await _rejected(auth, _token(keys, issuer="someone-else"))

    assert "issuer" in str(error)


@pytest.mark.parametrize("claim", ["exp", "iat", "iss"])
async def test_missing_required_claim_fails(
    auth: AdminAuthenticator, keys: DevKeys, claim: str
) -> None:
    error = await _rejected(auth, _token(keys, extra_claims={claim: None}))

    assert claim in str(error)


@pytest.mark.parametrize("extra", [{"token_use": "id"}, {"token_use": None}])
async def test_wrong_token_use_fails(
    auth: AdminAuthenticator, keys: DevKeys, extra: dict[str, Any]
) -> None:
    await _rejected(auth, _token(keys, extra_claims=extra))


async def test_missing_subject_fails(auth: AdminAuthenticator, keys: DevKeys) -> None:
    await _rejected(auth, _token(keys, extra_claims={"sub": None}))


@pytest.mark.parametrize(
    "account",
    [None, "", "-acct", "_acct", "a" * 65, "acct 1", "acct/1", "acct_1\n", "acct\u00e9"],
)
async def test_missing_or_malformed_account_header(
    auth: AdminAuthenticator, keys: DevKeys, account: str | None
) -> None:
    error = await _rejected(auth, _token(keys), ValidationFailed, account=account)

    assert isinstance(error, ValidationFailed)
    assert error.status == 400
    assert "X-Payment-Account-Uid" in error.message


async def test_longest_allowed_account_uid_passes(auth: AdminAuthenticator, keys: DevKeys) -> None:
    account = "A" + "b.c:d-e_" * 7 + "fghijk9"
    assert len(account) == 64

    principal = await auth.authenticate(f"Bearer {_token(keys, account_uids=[account])}", account)

    assert principal.account_uid == account


async def test_bad_token_is_reported_before_a_missing_account_header(
    auth: AdminAuthenticator, other_keys: DevKeys
) -> None:
    await _rejected(auth, _token(other_keys), NotAuthenticated, account=None)


@pytest.mark.parametrize("groups", [[], ["readers"], ["Hosted-Sessions-Admin"]])
async def test_not_in_the_admin_group(
    auth: AdminAuthenticator, keys: DevKeys, groups: list[str]
) -> None:
    error = await _rejected(auth, _token(keys, groups=groups), InsufficientScope)

    assert isinstance(error, InsufficientScope)
    assert error.status == 403


async def test_groups_claim_absent(auth: AdminAuthenticator, keys: DevKeys) -> None:
    await _rejected(auth, _token(keys, extra_claims={"cognito:groups": None}), InsufficientScope)


async def test_other_account_is_forbidden(auth: AdminAuthenticator, keys: DevKeys) -> None:
    token = _token(keys, account_uids=["acct_2", "acct_10"])

    await _rejected(auth, token, InsufficientScope, account="acct_1")


@pytest.mark.parametrize(
    "claim",
    [
        ["acct_0", ACCOUNT],
        "acct_0,acct_1",
        " acct_0 ,  acct_1  ",
        ACCOUNT,
        f"{ACCOUNT},",
    ],
)
async def test_accounts_claim_as_list_or_comma_string(
    auth: AdminAuthenticator, keys: DevKeys, claim: list[str] | str
) -> None:
    token = _token(keys, extra_claims={"custom:payment_account_uids": claim})

    principal = await auth.authenticate(f"Bearer {token}", ACCOUNT)

    assert principal.account_uid == ACCOUNT


async def test_accounts_claim_of_the_wrong_type_grants_nothing(
    auth: AdminAuthenticator, keys: DevKeys
) -> None:
    token = _token(keys, extra_claims={"custom:payment_account_uids": {"acct_1": True}})

    await _rejected(auth, token, InsufficientScope)


async def test_accounts_claim_name_comes_from_settings(jwks_path: Path, keys: DevKeys) -> None:
    settings = Settings(
        env="test", jwks_file=str(jwks_path), jwt_issuer=ISSUER, jwt_accounts_claim="custom:acc"
    )
    auth = AdminAuthenticator(settings, JWKSCache(settings))
    token = _token(keys, accounts_claim="custom:acc")

    assert (await auth.authenticate(f"Bearer {token}", ACCOUNT)).account_uid == ACCOUNT
    await _rejected(auth, _token(keys), InsufficientScope)


async def test_platform_admin_can_access_any_account(
    auth: AdminAuthenticator, keys: DevKeys
) -> None:
    token = _token(keys, groups=[PLATFORM], account_uids=[])

    for account in ("acct_1", "acct_999", "merchant:42"):
        principal = await auth.authenticate(f"Bearer {token}", account)
        assert principal == AdminPrincipal(
            subject="dev-admin", account_uid=account, platform_admin=True
        )


async def test_checks_run_again_for_a_cached_token(auth: AdminAuthenticator, keys: DevKeys) -> None:
    token = _token(keys)

    await auth.authenticate(f"Bearer {token}", ACCOUNT)
    await _rejected(auth, token, InsufficientScope, account="acct_2")
    await _rejected(auth, token, ValidationFailed, account=None)


class CountingJWKS(JWKSCache):
    """The real cache, counting key look-ups: each one means a full signature verification."""

    lookups = 0

    async def get_key(self, kid: str) -> jwt.PyJWK | None:
        self.lookups += 1
        return await super().get_key(kid)


async def test_verified_token_is_cached_until_its_expiry(
    settings: Settings, keys: DevKeys, clock: FakeMonotonic
) -> None:
    jwks = CountingJWKS(settings, monotonic=clock)
    wall = [time.time()]
    auth = AdminAuthenticator(settings, jwks, wall_time=lambda: wall[0])
    token = _token(keys, now=int(wall[0]), ttl_seconds=300)

    await auth.authenticate(f"Bearer {token}", ACCOUNT)
    wall[0] += 300 + 29  # past exp but within the 30 s leeway, as PyJWT would accept
    await auth.authenticate(f"Bearer {token}", ACCOUNT)
    assert jwks.lookups == 1

    # Past exp + leeway the cache no longer vouches for the token: it is verified afresh
    # (and passes here only because PyJWT checks exp against the real clock).
    wall[0] += 2
    await auth.authenticate(f"Bearer {token}", ACCOUNT)
    assert jwks.lookups == 2


async def test_failed_verification_is_not_cached(
    settings: Settings, keys: DevKeys, clock: FakeMonotonic
) -> None:
    jwks = CountingJWKS(settings, monotonic=clock)
    auth = AdminAuthenticator(settings, jwks)
    token = _token(keys, issuer="someone-else")

    await _rejected(auth, token)
    await _rejected(auth, token)

    assert jwks.lookups == 2


async def test_verified_cache_is_bounded(
    settings: Settings, jwks: JWKSCache, keys: DevKeys
) -> None:
    auth = AdminAuthenticator(settings, jwks, cache_size=2)
    tokens = [_token(keys, subject=f"user-{i}") for i in range(4)]

    for token in tokens:
        await auth.authenticate(f"Bearer {token}", ACCOUNT)

    assert len(auth._verified) == 2


async def test_rotated_keys_are_reread_but_at_most_once_per_interval(
    auth: AdminAuthenticator,
    jwks: JWKSCache,
    jwks_path: Path,
    keys: DevKeys,
    other_keys: DevKeys,
    clock: FakeMonotonic,
) -> None:
    await auth.authenticate(f"Bearer {_token(keys)}", ACCOUNT)
    assert jwks.loads == 1

    # Rotate on disk: the new key is published alongside the old one.
    _publish(jwks_path, {"keys": keys.jwks["keys"] + other_keys.jwks["keys"]})
    clock.now += 10  # within the 60 s refresh interval
    await _rejected(auth, _token(other_keys))
    await _rejected(auth, _token(other_keys))
    assert jwks.loads == 1

    clock.now += 51
    principal = await auth.authenticate(f"Bearer {_token(other_keys)}", ACCOUNT)
    assert principal.account_uid == ACCOUNT
    assert jwks.loads == 2

    # Known kids never trigger a reload on the request path while the set is fresh...
    clock.now += 100
    await auth.authenticate(f"Bearer {_token(keys, subject='fresh')}", ACCOUNT)
    assert jwks.loads == 2
    # ...but a set past its maximum staleness is fetched again before a key of it is used.
    clock.now += 10_000
    await auth.authenticate(f"Bearer {_token(keys, subject='later')}", ACCOUNT)
    assert jwks.loads == 3


async def test_concurrent_unknown_kids_share_one_refresh(
    jwks: JWKSCache, jwks_path: Path, keys: DevKeys, other_keys: DevKeys, clock: FakeMonotonic
) -> None:
    assert await jwks.get_key(keys.kid) is not None
    _publish(jwks_path, other_keys.jwks)
    clock.now += 60

    found = await asyncio.gather(*(jwks.get_key(other_keys.kid) for _ in range(10)))
    missing = await asyncio.gather(*(jwks.get_key("never-published") for _ in range(10)))

    assert all(key is not None and key.key_id == other_keys.kid for key in found)
    assert missing == [None] * 10
    assert jwks.loads == 2


async def test_unreadable_jwks_file_keeps_the_last_good_keys(
    jwks: JWKSCache, jwks_path: Path, keys: DevKeys, clock: FakeMonotonic
) -> None:
    assert await jwks.get_key(keys.kid) is not None
    _publish(jwks_path, "{not json")
    clock.now += 60

    assert await jwks.get_key("unknown") is None
    assert await jwks.get_key(keys.kid) is not None
    assert jwks.loads == 1


async def test_missing_jwks_file_is_unavailable_not_unauthenticated(
    tmp_path: Path, keys: DevKeys, clock: FakeMonotonic
) -> None:
    settings = Settings(env="test", jwks_file=str(tmp_path / "absent.json"), jwt_issuer=ISSUER)
    auth = AdminAuthenticator(settings, JWKSCache(settings, monotonic=clock))

    with pytest.raises(SigningKeysUnavailable) as info:
        await auth.authenticate(f"Bearer {_token(keys)}", ACCOUNT)
    assert info.value.status == 503


def test_jwks_source_is_required() -> None:
    with pytest.raises(ValueError, match="JWKS"):
        JWKSCache(Settings(env="test"))


class _JWKSServer:
    """A JWKS endpoint on 127.0.0.1 served from a thread; counts requests, can fail on demand."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.status = 200
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                body = json.dumps(outer.document).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def jwks_server(keys: DevKeys) -> Iterator[_JWKSServer]:
    server = _JWKSServer(keys.jwks)
    server.thread.start()
    yield server
    server.close()


async def test_jwks_is_fetched_over_http(
    jwks_server: _JWKSServer, keys: DevKeys, clock: FakeMonotonic
) -> None:
    settings = Settings(env="test", jwks_url=jwks_server.url, jwt_issuer=ISSUER)
    async with httpx.AsyncClient(trust_env=False) as client:
        jwks = JWKSCache(settings, http_client=client, monotonic=clock)
        auth = AdminAuthenticator(settings, jwks)

        principal = await auth.authenticate(f"Bearer {_token(keys)}", ACCOUNT)
        await auth.authenticate(f"Bearer {_token(keys, subject='second')}", ACCOUNT)
        await jwks.aclose()
        assert not client.is_closed  # an injected client belongs to the caller

    assert principal.account_uid == ACCOUNT
    assert jwks_server.requests == 1


async def test_jwks_over_http_with_its_own_client(
    jwks_server: _JWKSServer, keys: DevKeys, clock: FakeMonotonic
) -> None:
    settings = Settings(env="test", jwks_url=jwks_server.url, jwt_issuer=ISSUER)
    jwks = JWKSCache(settings, monotonic=clock)
    try:
        assert await jwks.get_key(keys.kid) is not None
    finally:
        await jwks.aclose()
    assert jwks_server.requests == 1


async def test_failed_http_load_is_retried_after_a_short_pause(
    jwks_server: _JWKSServer, keys: DevKeys, clock: FakeMonotonic
) -> None:
    settings = Settings(env="test", jwks_url=jwks_server.url, jwt_issuer=ISSUER)
    jwks_server.status = 500
    async with httpx.AsyncClient(trust_env=False) as client:
        jwks = JWKSCache(settings, http_client=client, monotonic=clock)
        auth = AdminAuthenticator(settings, jwks)

        with pytest.raises(SigningKeysUnavailable):
            await auth.authenticate(f"Bearer {_token(keys)}", ACCOUNT)
        with pytest.raises(SigningKeysUnavailable):
            await auth.authenticate(f"Bearer {_token(keys)}", ACCOUNT)
        assert jwks_server.requests == 1  # throttled: the IdP is not hammered

        jwks_server.status = 200
        clock.now += 5
        principal = await auth.authenticate(f"Bearer {_token(keys)}", ACCOUNT)

    assert principal.account_uid == ACCOUNT
    assert jwks_server.requests == 2
