"""Opens Redis, the job queue and the JWKS cache at start-up; closes them on shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from litestar import Litestar, Request
from redis.asyncio import Redis

from services.api.auth.admin import AdminAuthenticator, JWKSCache
from shared.clock import Clock
from shared.config import Settings
from shared.crypto import DataCipher
from shared.idempotency.service import IdempotencyService
from shared.idempotency.store import IdempotencyStore
from shared.jobs import JobQueue, deserialize_job, serialize_job
from shared.redis.client import create_redis
from shared.redis.keys import Keys
from shared.sessions.service import SessionService
from shared.sessions.store import SessionStore


@dataclass(frozen=True, slots=True)
class AppServices:
    """Typed app state: every long-lived client the handlers use."""

    settings: Settings
    redis: Redis
    arq: ArqRedis
    sessions: SessionService
    idempotency: IdempotencyService
    admin_auth: AdminAuthenticator
    jwks: JWKSCache


def build_services(settings: Settings, clock: Clock) -> AppServices:
    """Wire the clients (nothing connects until first use)."""
    keys = Keys(settings.key_prefix)
    redis = create_redis(settings, client_name="hosted-sessions-api")
    # arq shares the pool: one set of connections, one set of timeouts.
    arq = ArqRedis(
        connection_pool=redis.connection_pool,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
    )
    cipher = DataCipher(settings.data_key_bytes)
    idempotency = IdempotencyService(
        IdempotencyStore(redis, keys),
        cipher,
        ttl_seconds=settings.idempotency_ttl_seconds,
        lock_seconds=settings.idempotency_lock_seconds,
    )
    sessions = SessionService(
        SessionStore(redis, keys),
        JobQueue(arq, keys),
        idempotency,
        cipher,
        clock,
        settings.public_base_url,
    )
    jwks = JWKSCache(settings)
    return AppServices(
        settings=settings,
        redis=redis,
        arq=arq,
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
