"""Admin (merchant backend) authentication: an RS256 access token plus the account it acts for.

Tokens come from Cognito in production and from `shared.devkeys` in dev and tests; both are
verified against a JWKS (URL or file). Messages never carry the token, and nothing here logs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
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
# Consecutive failures double the pause up to this, so a struggling IdP is not hammered.
_FAILED_LOAD_RETRY_MAX_SECONDS = 60.0
_REFRESH_JITTER = 0.1
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
    """The issuer's RS256 public keys by kid, kept no older than their max-age.

    A background task (`start`/`aclose`, run by the app's lifespan) fetches the set again when
    its max-age passes (the response's Cache-Control, within the settings' bounds) and drops
    keys the issuer no longer publishes. An unknown kid also refetches, at most once per
    `jwks_refresh_min_seconds`. Failed refreshes keep the last keys, but only up to
    `jwks_max_stale_factor` max-ages after their fetch: past that no key is trusted (503).
    """

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
        self._default_max_age = settings.jwks_max_age_seconds
        self._max_age_bounds = (
            settings.jwks_max_age_min_seconds,
            settings.jwks_max_age_max_seconds,
        )
        self._stale_factor = settings.jwks_max_stale_factor
        self._monotonic = monotonic
        self._timeout = http_timeout_seconds
        self._client = http_client
        self._owns_client = http_client is None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded = False
        # Monotonic deadlines: the next background fetch, and the end of trust in `_keys`.
        self._refresh_at = 0.0
        self._trusted_until = 0.0
        self._failures = 0
        self._last_attempt: float | None = None
        self._last_attempt_failed = False
        self._lock = asyncio.Lock()
        self._dropped_listeners: list[Callable[[frozenset[str]], None]] = []
        self._task: asyncio.Task[None] | None = None
        self.loads = 0  # successful loads; tests and metrics read it
        self.max_age = self._clamp(self._default_max_age)  # of the keys held now

    def on_keys_dropped(self, listener: Callable[[frozenset[str]], None]) -> None:
        """Call `listener` with the kids of keys no longer trusted (removed, changed, stale)."""
        self._dropped_listeners.append(listener)

    async def get_key(self, kid: str) -> jwt.PyJWK | None:
        """The public key for `kid`, refreshing the set at most once per interval when unknown."""
        key = self._keys.get(kid)
        # One clock read, and only here: callers cache what they verified (AdminAuthenticator).
        if key is not None and self._monotonic() < self._trusted_until:
            return key
        async with self._lock:
            self._expire_if_stale()
            # Whoever held the lock may just have refreshed: share its result, not a new fetch.
            key = self._keys.get(kid)
            if key is None and self._may_refresh():
                await self._refresh()
                key = self._keys.get(kid)
        if key is None and not self._loaded:
            raise SigningKeysUnavailable("admin signing keys are unavailable; retry shortly")
        return key

    def start(self) -> None:
        """Start the background refresher (from the app's lifespan: it needs a running loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="jwks-refresh")

    async def refresh_if_due(self) -> None:
        """One step of the refresher: fetch when the max-age (or a retry delay) has passed,
        then stop trusting keys that have gone stale."""
        async with self._lock:
            if self._monotonic() >= self._refresh_at:
                await self._refresh()
            self._expire_if_stale()

    async def aclose(self) -> None:
        """Stop the refresher and close the HTTP client if this cache created it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None and self._owns_client:
            await self._client.aclose()
        self._client = None

    async def _run(self) -> None:
        while True:
            wake_at = self._refresh_at
            if self._loaded:
                wake_at = min(wake_at, self._trusted_until)
            await asyncio.sleep(max(0.0, wake_at - self._monotonic()))
            try:
                await self.refresh_if_due()
            except Exception:  # the refresher must outlive any one surprise
                _log.exception("jwks_refresh_crashed", source=self._source)
                await asyncio.sleep(_FAILED_LOAD_RETRY_SECONDS)

    def _may_refresh(self) -> bool:
        if self._last_attempt is None:
            return True
        interval = (
            min(self._refresh_min_seconds, _FAILED_LOAD_RETRY_SECONDS)
            if self._last_attempt_failed
            else self._refresh_min_seconds
        )
        return self._monotonic() - self._last_attempt >= interval

    def _clamp(self, max_age: float) -> float:
        low, high = self._max_age_bounds
        return min(max(max_age, low), high)

    async def _refresh(self) -> None:
        now = self._monotonic()
        self._last_attempt = now
        # Counted as failed until it succeeds, so a cancelled fetch is retried on the short delay.
        self._last_attempt_failed = True
        try:
            if self._file is not None:
                document, max_age = await self._read_file(), None
            else:
                document, max_age = await self._fetch()
            keys = _parse_jwks(document)
        except (OSError, ValueError, httpx.HTTPError, jwt.PyJWTError) as exc:
            # Keep the keys we had (until they are too stale): a flaky IdP must not invalidate
            # every live token, and retries back off so a struggling IdP is not hammered.
            self._failures += 1
            delay = _FAILED_LOAD_RETRY_SECONDS * 2 ** min(self._failures - 1, 4)
            self._refresh_at = now + min(delay, _FAILED_LOAD_RETRY_MAX_SECONDS)
            _log.warning(
                "jwks_load_failed",
                error_type=type(exc).__name__,
                source=self._source,
                failures=self._failures,
            )
            return
        dropped = frozenset(
            kid for kid, old in self._keys.items() if not _same_key(old, keys.get(kid))
        )
        self.max_age = self._clamp(self._default_max_age if max_age is None else max_age)
        self._keys = keys
        self._loaded = True
        self._last_attempt_failed = False
        self._failures = 0
        self._trusted_until = now + self.max_age * self._stale_factor
        # Up to 10 % early, so processes started together do not all fetch at the same instant.
        early = _REFRESH_JITTER * random.random()  # noqa: S311 - spreads load, guards nothing
        self._refresh_at = now + self.max_age * (1 - early)
        self.loads += 1
        if dropped:
            _log.info("jwks_keys_dropped", kids=sorted(dropped), source=self._source)
            self._notify_dropped(dropped)

    def _expire_if_stale(self) -> None:
        if not self._loaded or self._monotonic() < self._trusted_until:
            return
        # Fail closed: a key the issuer may have revoked long ago no longer signs anything here.
        dropped = frozenset(self._keys)
        self._keys = {}
        self._loaded = False
        _log.warning("jwks_keys_expired", source=self._source, max_age=self.max_age)
        self._notify_dropped(dropped)

    def _notify_dropped(self, kids: frozenset[str]) -> None:
        for listener in self._dropped_listeners:
            listener(kids)

    @property
    def _source(self) -> str:
        return str(self._file) if self._file is not None else self._url

    async def _read_file(self) -> Any:
        assert self._file is not None
        # Re-read in full each max-age: a few KB, and no mtime granularity to reason about.
        raw = await asyncio.to_thread(self._file.read_bytes)
        return json.loads(raw)

    async def _fetch(self) -> tuple[Any, float | None]:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
            self._owns_client = True
        response = await self._client.get(self._url, timeout=self._timeout)
        response.raise_for_status()
        return response.json(), max_age_of(response.headers)


def max_age_of(headers: Mapping[str, str]) -> float | None:
    """Seconds a response stays fresh by its Cache-Control (less its Age), None when unsaid."""
    directives = {
        name.strip().lower(): value.strip().strip('"')
        for name, _, value in (
            part.partition("=") for part in headers.get("cache-control", "").split(",")
        )
    }
    if "no-store" in directives or "no-cache" in directives:
        return 0.0  # fetch as often as the lower bound allows
    raw = directives.get("max-age", "")
    if not (raw.isascii() and raw.isdigit()):
        return None
    age = headers.get("age", "0").strip()
    return max(0.0, float(raw) - (float(age) if age.isascii() and age.isdigit() else 0.0))


def _same_key(old: jwt.PyJWK, new: jwt.PyJWK | None) -> bool:
    """Whether a kid still names the same public key (a reused kid with new material is not)."""
    if new is None:
        return False
    old_numbers: Any = old.key.public_numbers()
    new_numbers: Any = new.key.public_numbers()
    return bool(old_numbers == new_numbers)


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
    kid: str  # forgotten when its key is dropped (JWKSCache.on_keys_dropped)


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
        # Pushed, not checked per request: a cache hit costs what it did before key refresh.
        jwks.on_keys_dropped(self._forget_tokens_of)

    def _forget_tokens_of(self, kids: frozenset[str]) -> None:
        """Drop cached verifications by keys the issuer no longer vouches for."""
        for digest in [d for d, v in self._verified.items() if v.kid in kids]:
            del self._verified[digest]

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
            kid=kid,
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
