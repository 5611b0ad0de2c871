"""Opens Redis, the job queue and the JWKS cache at start-up; closes them on shutdown."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar, Request
from redis.asyncio import Redis

from services.api.auth.admin import AdminAuthenticator, JWKSCache
from shared.accounts.service import AccountService
from shared.challenge.service import ChallengeService
from shared.checkout.service import CheckoutService
from shared.clock import Clock
from shared.config import Settings
from shared.events.stream import AccountEvents
from shared.fees.service import FeeService
from shared.idempotency.service import IdempotencyService
from shared.redis.client import create_redis
from shared.redis.jobs import JobQueue
from shared.redis.ratelimit import RequestLimits, build_rate_limits
from shared.sessions.service import SessionService
from shared.wallet.store import WalletStore
from shared.webhooks.service import WebhookService
from shared.webhooks.ssrf import private_allowed
from shared.webhooks.store import WebhookStore
from shared.wiring import build_domain


@dataclass(slots=True)
class AccountOriginCache:
    """Each account's allowed origins, kept `ttl_s` in this process: browser calls read them
    on every request, and they change rarely (a PATCH through this process forgets them)."""

    ttl_s: float
    max_accounts: int = 10_000
    _entries: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict)

    def get(self, account_uid: str) -> frozenset[str] | None:
        """The cached origins, or None when absent or older than the TTL."""
        entry = self._entries.get(account_uid)
        if entry is None or time.monotonic() - entry[0] >= self.ttl_s:
            return None
        return entry[1]

    def put(self, account_uid: str, origins: frozenset[str]) -> None:
        """Remember an account's origins from now on."""
        if len(self._entries) >= self.max_accounts:
            # Bounded memory: dropping everything once in a while costs a re-read each.
            self._entries.clear()
        self._entries[account_uid] = (time.monotonic(), origins)

    def forget(self, account_uid: str) -> None:
        """Drop an account's entry (its settings just changed)."""
        self._entries.pop(account_uid, None)


@dataclass(frozen=True, slots=True)
class AppServices:
    """Typed app state: every long-lived client the handlers use."""

    settings: Settings
    redis: Redis
    sessions: SessionService
    idempotency: IdempotencyService
    admin_auth: AdminAuthenticator
    jwks: JWKSCache
    checkout: CheckoutService
    wallet: WalletStore
    clock: Clock
    challenge: ChallengeService
    accounts: AccountService
    fees: FeeService
    webhooks: WebhookService
    events: AccountEvents
    limits: RequestLimits
    origin_cache: AccountOriginCache

    async def allowed_origins(self, account_uid: str) -> set[str]:
        """Origins the account allows for browser calls beyond the session's own."""
        origins = self.origin_cache.get(account_uid)
        if origins is None:
            settings = await self.accounts.settings(account_uid)
            origins = frozenset(settings.origins.allowed_origins)
            self.origin_cache.put(account_uid, origins)
        return set(origins)


def build_services(settings: Settings, clock: Clock) -> AppServices:
    """Wire the clients once per process (nothing connects until first use)."""
    redis = create_redis(settings, client_name="hosted-sessions-api", multiplex_scripts=True)
    domain = build_domain(settings, redis, clock)
    limits, card_testing = build_rate_limits(settings, redis, clock)
    jwks = JWKSCache(settings)
    return AppServices(
        settings=settings,
        redis=redis,
        sessions=domain.sessions,
        idempotency=domain.idempotency,
        admin_auth=AdminAuthenticator(settings, jwks),
        jwks=jwks,
        # Only the API's confirm knows the client address the guard counts by.
        checkout=domain.checkout.with_card_testing(card_testing),
        wallet=domain.wallet,
        clock=clock,
        challenge=domain.challenge,
        accounts=domain.accounts,
        fees=domain.fees,
        webhooks=WebhookService(
            WebhookStore(redis, domain.keys),
            JobQueue(redis, domain.keys),
            domain.cipher,
            clock,
            require_https=settings.env == "production",
            allow_private=private_allowed(settings),
        ),
        events=AccountEvents(redis, domain.keys),
        limits=limits,
        origin_cache=AccountOriginCache(ttl_s=settings.origin_cache_seconds),
    )


def lifespan(settings: Settings, clock: Clock) -> Any:
    @asynccontextmanager
    async def _lifespan(app: Litestar) -> AsyncIterator[None]:
        services = build_services(settings, clock)
        app.state.services = services
        # Keeps the admin signing keys within their max-age; stopped by aclose() below.
        services.jwks.start()
        try:
            yield
        finally:
            await services.jwks.aclose()
            await services.redis.aclose(close_connection_pool=True)

    return _lifespan


def app_services(request: Request[Any, Any, Any]) -> AppServices:
    services: AppServices = request.app.state.services
    return services
