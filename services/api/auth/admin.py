"""Admin (merchant backend) authentication: an RS256 access token plus the account it acts for.

Tokens come from Cognito in production and from `shared.devkeys` in dev and tests; both are
verified against a JWKS (URL or file). Messages never carry the token, and nothing here logs it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
import structlog

from shared.config import Settings
from shared.errors import InsufficientScope, NotAuthenticated, ServiceError, ValidationFailed

_log = structlog.get_logger(__name__)

ALGORITHM = "RS256"
ACCOUNT_HEADER = "X-Payment-Account-Uid"
_ACCOUNT_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
# Cognito access tokens are 1-2 KB; anything far larger is refused before any parsing work.
_MAX_TOKEN_CHARS = 8192
# Printable ASCII without spaces: what a JWT's base64url parts and dots are drawn from.
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
_HTTP_TIMEOUT_SECONDS = 3.0
# A failed JWKS load is retried sooner than the normal refresh interval, so a blip at start-up
# does not lock every admin out for a whole interval.
_FAILED_LOAD_RETRY_SECONDS = 5.0
_VERIFIED_CACHE_SIZE = 1024


class AdminPrincipal(msgspec.Struct, frozen=True, kw_only=True):
    """Who called and for which account the call was authorised."""

    subject: str
    account_uid: str
    platform_admin: bool


class SigningKeysUnavailable(ServiceError):
    """Raised when no JWKS could ever be loaded: a dependency is down, not the caller's fault."""

    code = "network_error"
    status = 503
    recoverable = True


class JWKSCache:
    """The issuer's RS256 public keys by kid, loaded lazily and refreshed on an unknown kid."""

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: httpx.AsyncClient | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        http_timeout_seconds: float = _HTTP_TIMEOUT_SECONDS,
    ) -> None:
        # The file wins when both are set: dev and tests point at local keys on purpose.
        if not settings.jwks_file and not settings.jwks_url:
            raise ValueError("admin authentication needs HS_JWKS_FILE or HS_JWKS_URL")
        self._file = Path(settings.jwks_file) if settings.jwks_file else None
        self._url = settings.jwks_url
        self._refresh_min_seconds = float(settings.jwks_refresh_min_seconds)
        self._monotonic = monotonic
        self._timeout = http_timeout_seconds
        self._client = http_client
        self._owns_client = http_client is None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded = False
        self._last_attempt: float | None = None
        self._last_attempt_failed = False
        self._lock = asyncio.Lock()
        self.loads = 0  # successful loads; tests and metrics read it

    async def get_key(self, kid: str) -> jwt.PyJWK | None:
        """The public key for `kid`, refreshing the set at most once per interval when unknown."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            # Whoever held the lock may just have refreshed: share its result, not a new fetch.
            key = self._keys.get(kid)
            if key is None and self._may_refresh():
                await self._refresh()
                key = self._keys.get(kid)
        if key is None and not self._loaded:
            raise SigningKeysUnavailable("admin signing keys are unavailable; retry shortly")
        return key

    async def aclose(self) -> None:
        """Close the HTTP client if this cache created it."""
        if self._client is not None and self._owns_client:
            await self._client.aclose()
        self._client = None

    def _may_refresh(self) -> bool:
        if self._last_attempt is None:
            return True
        interval = (
            min(self._refresh_min_seconds, _FAILED_LOAD_RETRY_SECONDS)
            if self._last_attempt_failed
            else self._refresh_min_seconds
        )
        return self._monotonic() - self._last_attempt >= interval

    async def _refresh(self) -> None:
        self._last_attempt = self._monotonic()
        # Counted as failed until it succeeds, so a cancelled fetch is retried on the short delay.
        self._last_attempt_failed = True
        try:
            document = await (self._read_file() if self._file is not None else self._fetch())
            keys = _parse_jwks(document)
        except (OSError, ValueError, httpx.HTTPError, jwt.PyJWTError) as exc:
            # Keep the keys we had: a flaky IdP must not invalidate every live token.
            _log.warning("jwks_load_failed", error_type=type(exc).__name__, source=self._source)
            return
        self._keys = keys
        self._loaded = True
        self._last_attempt_failed = False
        self.loads += 1

    @property
    def _source(self) -> str:
        return str(self._file) if self._file is not None else self._url

    async def _read_file(self) -> Any:
        assert self._file is not None
        raw = await asyncio.to_thread(self._file.read_bytes)
        return json.loads(raw)

    async def _fetch(self) -> Any:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
            self._owns_client = True
        response = await self._client.get(self._url, timeout=self._timeout)
        response.raise_for_status()
        return response.json()


def _parse_jwks(document: Any) -> dict[str, jwt.PyJWK]:
    """The usable RS256 signing keys of a JWKS document, by kid."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("JWKS document has no 'keys' list")
    keys: dict[str, jwt.PyJWK] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or jwk.get("use", "sig") != "sig":
            continue
        if jwk.get("alg", ALGORITHM) != ALGORITHM:
            continue
        try:
            keys[kid] = jwt.PyJWK(jwk, algorithm=ALGORITHM)
        except jwt.PyJWTError:
            continue  # one malformed key must not hide the others
    if not keys:
        raise ValueError("JWKS document has no usable RS256 signing key")
    return keys


class _VerifiedToken(msgspec.Struct, frozen=True):
    """What a verified token grants; cached until the token's own expiry."""

    subject: str
    groups: frozenset[str]
    accounts: frozenset[str]
    expires_at: int


class AdminAuthenticator:
    """Verifies admin bearer tokens and authorises them for the X-Payment-Account-Uid account."""

    def __init__(
        self,
        settings: Settings,
        jwks: JWKSCache,
        *,
        wall_time: Callable[[], float] = time.time,
        cache_size: int = _VERIFIED_CACHE_SIZE,
    ) -> None:
        self._settings = settings
        self._jwks = jwks
        self._wall_time = wall_time
        self._cache_size = cache_size
        self._verified: OrderedDict[bytes, _VerifiedToken] = OrderedDict()

    async def authenticate(
        self, authorization: str | None, account_uid: str | None
    ) -> AdminPrincipal:
        """The principal for a bearer token acting on `account_uid`, or the error to answer with."""
        token = _bearer_token(authorization)
        verified = await self._verify(token)

        if account_uid is None or not _ACCOUNT_UID.fullmatch(account_uid):
            raise ValidationFailed(
                f"{ACCOUNT_HEADER} header is required: 1-64 characters, letters, digits "
                "and '_', '.', ':', '-', starting with a letter or digit"
            )

        settings = self._settings
        platform_admin = settings.jwt_platform_admin_group in verified.groups
        if not platform_admin and settings.jwt_admin_group not in verified.groups:
            raise InsufficientScope("token is not in the hosted sessions admin group")
        if not platform_admin and account_uid not in verified.accounts:
            raise InsufficientScope("token is not authorised for this payment account")
        return AdminPrincipal(
            subject=verified.subject, account_uid=account_uid, platform_admin=platform_admin
        )

    async def _verify(self, token: str) -> _VerifiedToken:
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        now = self._wall_time()
        cached = self._verified.get(digest)
        if cached is not None:
            # Same bound as PyJWT's exp check: still valid while now < exp + leeway.
            if now < cached.expires_at + self._settings.jwt_leeway_seconds:
                self._verified.move_to_end(digest)
                return cached
            del self._verified[digest]

        verified = await self._verify_uncached(token)
        self._verified[digest] = verified
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return verified

    async def _verify_uncached(self, token: str) -> _VerifiedToken:
        settings = self._settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise NotAuthenticated("bearer token is malformed") from None
        # Checked before any key lookup so `none` and HS256 (signed with the public key as a
        # secret) never get near a verifier; decode() below enforces the same list again.
        if header.get("alg") != ALGORITHM:
            raise NotAuthenticated("bearer token algorithm is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise NotAuthenticated("bearer token has no key id")
        key = await self._jwks.get_key(kid)
        if key is None:
            raise NotAuthenticated("bearer token is signed by an unknown key")

        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "iat", "iss"]},
                issuer=settings.jwt_issuer,
                leeway=settings.jwt_leeway_seconds,
            )
        except jwt.ExpiredSignatureError:
            raise NotAuthenticated("bearer token has expired") from None
        except jwt.InvalidIssuerError:
            raise NotAuthenticated("bearer token issuer is not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise NotAuthenticated(f"bearer token lacks the {exc.claim} claim") from None
        except jwt.ImmatureSignatureError:
            raise NotAuthenticated("bearer token is not valid yet") from None
        except jwt.InvalidSignatureError:
            raise NotAuthenticated("bearer token signature is invalid") from None
        except jwt.PyJWTError:
            raise NotAuthenticated("bearer token is invalid") from None

        if claims.get("token_use") != settings.jwt_token_use:
            raise NotAuthenticated(f"bearer token is not an {settings.jwt_token_use} token")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise NotAuthenticated("bearer token has no subject")
        # decode() already checked that exp is present and int() accepts it.
        expires_at = int(claims["exp"])
        return _VerifiedToken(
            subject=subject,
            groups=_string_set(claims.get("cognito:groups")),
            accounts=_string_set(claims.get(settings.jwt_accounts_claim)),
            expires_at=expires_at,
        )


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise NotAuthenticated("Authorization header with a Bearer token is required")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise NotAuthenticated("Authorization header must use the Bearer scheme")
    if len(token) > _MAX_TOKEN_CHARS or not _TOKEN_CHARS.fullmatch(token):
        raise NotAuthenticated("bearer token is malformed")
    return token


def _string_set(value: Any) -> frozenset[str]:
    """A claim holding a list of strings or one comma-separated string, as a set."""
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        return frozenset()
    return frozenset(item.strip() for item in items if isinstance(item, str) and item.strip())
