"""Opens Redis, the job queue and the JWKS cache at start-up; closes them on shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, Request
from redis.asyncio import Redis

from services.api.auth.admin import AdminAuthenticator, JWKSCache
from shared.clock import Clock
from shared.config import Settings
from shared.idempotency.service import IdempotencyService
from shared.redis.client import create_redis
from shared.sessions.service import SessionService
from shared.wiring import build_session_service


@dataclass(frozen=True, slots=True)
class AppServices:
    """Typed app state: every long-lived client the handlers use."""

    settings: Settings
    redis: Redis
    sessions: SessionService
    idempotency: IdempotencyService
    admin_auth: AdminAuthenticator
    jwks: JWKSCache


def build_services(settings: Settings, clock: Clock) -> AppServices:
    """Wire the clients (nothing connects until first use)."""
    redis = create_redis(settings, client_name="hosted-sessions-api")
    sessions, idempotency = build_session_service(settings, redis, clock)
    jwks = JWKSCache(settings)
    return AppServices(
        settings=settings,
        redis=redis,
        sessions=sessions,
        idempotency=idempotency,
        admin_auth=AdminAuthenticator(settings, jwks),
        jwks=jwks,
    )


def lifespan(settings: Settings, clock: Clock) -> Any:
    @asynccontextmanager
    async def _lifespan(app: Litestar) -> AsyncIterator[None]:
        services = build_services(settings, clock)
        app.state.services = services
        try:
            yield
        finally:
            await services.jwks.aclose()
            await services.redis.aclose(close_connection_pool=True)

    return _lifespan


def app_services(request: Request[Any, Any, Any]) -> AppServices:
    services: AppServices = request.app.state.services
    return services
