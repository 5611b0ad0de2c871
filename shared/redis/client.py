"""The one Redis client factory: pool, timeouts, retries and health checks set once."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.config import Settings


def create_redis(settings: Settings, *, client_name: str = "hosted-sessions") -> Redis:
    """A client on a blocking pool (the default pool raises when capped; this one waits)."""
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=5,  # seconds to wait for a free connection before failing the request
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
        client_name=client_name,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return Redis(connection_pool=pool)
