"""The API's services (the core plus HTTP things), opened at start-up, closed on shutdown,
and the typed accessors handlers, guards and middleware reach them through."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.types import Scope

from services.api.auth.admin import AdminAuthenticator, JWKSCache
from shared.clock import Clock
from shared.config import Settings
from shared.redis.ratelimit import RequestLimits, build_request_limits
from shared.wiring import Core, build_core


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
    """The API's services: the core (shared/wiring.py) plus the HTTP things only the API
    has: admin auth and its JWKS cache, request limits, the origin cache."""

    core: Core
    admin_auth: AdminAuthenticator
    jwks: JWKSCache
    limits: RequestLimits
    origin_cache: AccountOriginCache

    async def allowed_origins(self, account_uid: str) -> set[str]:
        """Origins the account allows for browser calls beyond the session's own."""
        origins = self.origin_cache.get(account_uid)
        if origins is None:
            settings = await self.core.accounts.settings(account_uid)
            origins = frozenset(settings.origins.allowed_origins)
            self.origin_cache.put(account_uid, origins)
        return set(origins)

    def start(self) -> None:
        """Start the background tasks (inside the event loop)."""
        self.core.start()
        # Keeps the admin signing keys within their max-age; stopped by aclose().
        self.jwks.start()

    async def aclose(self) -> None:
        try:
            await self.jwks.aclose()
        finally:
            await self.core.aclose()


def build_services(settings: Settings, clock: Clock) -> AppServices:
    """Wire the API's services once per process (nothing connects until first use)."""
    core = build_core(settings, clock, client_name="hosted-sessions-api")
    jwks = JWKSCache(settings)
    return AppServices(
        core=core,
        admin_auth=AdminAuthenticator(settings, jwks),
        jwks=jwks,
        limits=build_request_limits(settings, core.redis, clock, core.keys, core.cipher),
        origin_cache=AccountOriginCache(ttl_s=settings.origin_cache_seconds),
    )


def attach(app: Litestar, services: AppServices) -> None:
    """Give `app` its services: what `app_services` and `core_of` return."""
    app.state.services = services
    app.state.core = services.core


def lifespan(settings: Settings, clock: Clock) -> Any:
    @asynccontextmanager
    async def _lifespan(app: Litestar) -> AsyncIterator[None]:
        services = build_services(settings, clock)
        attach(app, services)
        services.start()
        # The SMS sender's client (SNS): one per process, the API's only (workers never text).
        await services.core.challenge.start()
        try:
            yield
        finally:
            try:
                await services.core.challenge.aclose()
            finally:
                await services.aclose()

    return _lifespan


# The typed accessors: the only reads of the app's state. One attribute lookup each, no
# per-request dependency resolution (Litestar's DI costs a signature model per handler).
def app_services(connection: ASGIConnection[Any, Any, Any, Any]) -> AppServices:
    """The API's services (HTTP things plus `.core`), for guards, middleware and handlers."""
    services: AppServices = connection.app.state.services
    return services


def services_in(scope: Scope) -> AppServices:
    """`app_services` for ASGI middleware, which has the scope, not a connection."""
    services: AppServices = scope["app"].state.services
    return services


def core_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Core:
    """The core services (shared/wiring.py), for handlers."""
    core: Core = connection.app.state.core
    return core
