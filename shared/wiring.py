"""Builds the session service the same way for the API and the workers."""

from __future__ import annotations

from arq.connections import ArqRedis
from redis.asyncio import Redis

from shared.clock import Clock
from shared.config import Settings
from shared.crypto import DataCipher
from shared.idempotency.service import IdempotencyService
from shared.idempotency.store import IdempotencyStore
from shared.jobs import JobQueue, deserialize_job, serialize_job
from shared.redis.keys import Keys
from shared.sessions.service import SessionService
from shared.sessions.store import SessionStore


def arq_client(redis: Redis) -> ArqRedis:
    """arq on the same pool: one set of connections, timeouts and retries."""
    return ArqRedis(
        connection_pool=redis.connection_pool,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
    )


def build_session_service(
    settings: Settings, redis: Redis, clock: Clock
) -> tuple[SessionService, IdempotencyService]:
    keys = Keys(settings.key_prefix)
    cipher = DataCipher(settings.data_key_bytes)
    idempotency = IdempotencyService(
        IdempotencyStore(redis, keys),
        cipher,
        ttl_seconds=settings.idempotency_ttl_seconds,
        lock_seconds=settings.idempotency_lock_seconds,
    )
    sessions = SessionService(
        SessionStore(redis, keys),
        JobQueue(arq_client(redis), keys),
        idempotency,
        cipher,
        clock,
        settings.public_base_url,
    )
    return sessions, idempotency
