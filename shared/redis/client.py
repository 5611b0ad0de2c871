"""The one Redis client factory: pool, timeouts, retries and health checks set once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.config import Settings
from shared.redis.cluster import create_cluster_client
from shared.redis.multiplex import MultiplexedRedis, ScriptRoutingRedis

_CONNECT_TIMEOUT_S = 2.0


class HiredisPackingConnection(Connection):
    """redis-py's async connection packs commands in Python (~20 us for a session write's
    EVALSHA); hiredis packs the same bytes in C (~3 us). Measured: bench in docs."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:
            # redis-py sends some commands as one string ("CLIENT SETNAME"): split like it does.
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # a type hiredis does not pack (e.g. memoryview): the slow path
            return super().pack_command(*args)

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        """redis-py's send, with its write timeout kept by `asyncio.timeout` instead of
        `asyncio.wait_for`. On Python 3.11, wait_for returns normally when a cancellation
        arrives just as the write completes (CPython gh-86296, fixed in 3.12): a worker loop
        cancelled at shutdown then ran on forever (seen in CI; a stop/start loop under CPU
        load reproduced it within minutes). wait_for also spawned a task per command."""
        if not self.is_connected:
            await self.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        elif check_health:
            await self.check_health()  # type: ignore[no-untyped-call]  # same
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        writer = self._writer
        if writer is None:  # connect() failed without raising: cannot happen, but say so
            raise RedisConnectionError("Connection closed before the command was sent")
        try:
            async with asyncio.timeout(self.socket_timeout):
                writer.writelines(command)
                await writer.drain()
        except TimeoutError:  # before OSError: TimeoutError is one
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise RedisConnectionError(f"Error while writing to socket: {exc}") from exc
        except BaseException:
            # Cancelled mid-write: the stream may hold half a command; never reuse it.
            await self.disconnect(nowait=True)
            raise


def create_redis(
    settings: Settings, *, client_name: str = "hosted-sessions", multiplex_scripts: bool = False
) -> Redis:
    """A client on a blocking pool (the default pool raises when capped; this one waits).

    Every wait is bounded by `settings.redis_timeout_seconds`: a free pooled connection, a
    connect, a reply, and on the multiplexed connection a command's whole stay, retries
    included. A lost connection is retried (on a new one); a timeout is not: the server is
    slow or hung, another try would only wait again, and the command may still run.

    `multiplex_scripts`: Lua script calls share one auto-pipelined connection
    (shared/redis/multiplex.py) — for the API, whose requests are mostly one script call
    each. Only over redis:// and unix:// (TLS stays on the pool alone)."""
    timeout_s = settings.redis_timeout_seconds
    connect_timeout_s = min(_CONNECT_TIMEOUT_S, timeout_s)
    if settings.redis_url.startswith("redis+cluster://"):
        # A cluster: redis-py's cluster client, with the multiplexed connections per primary
        # (shared/redis/cluster.py) for scripts and simple commands.
        return create_cluster_client(  # type: ignore[return-value]  # a Redis in all but name: the same command methods
            settings.redis_url,
            client_name=client_name,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
        )
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=timeout_s,  # to wait for a free connection before failing the request
        socket_timeout=timeout_s,
        socket_connect_timeout=connect_timeout_s,
        health_check_interval=30,
        connection_class=HiredisPackingConnection,
        client_name=client_name,
        retry=Retry(
            ExponentialBackoff(cap=0.5, base=0.05),
            retries=2,
            supported_errors=(RedisConnectionError,),
        ),
        retry_on_error=[RedisConnectionError],
    )
    if multiplex_scripts and settings.redis_url.startswith(("redis://", "unix://")):
        mux = MultiplexedRedis(
            settings.redis_url,
            client_name=f"{client_name}-mux",
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
        )
        return ScriptRoutingRedis(mux=mux, connection_pool=pool)
    return Redis(connection_pool=pool)
