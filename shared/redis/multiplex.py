"""One Redis connection shared by every request of a process, pipelined automatically.

Why: under merchant load the API runs hundreds of single-command requests at once (a session
write or read is one script call). Through a connection pool each command is its own socket
write and read, and on loopback the sender pays for the receiver's network stack too: writes
were the largest single cost of a create (py-spy, docs/architecture.md). Here every command
issued during one event-loop turn leaves in one write, and the replies of one read resolve
all their callers. Redis answers in order on a connection, so a FIFO of futures pairs replies
with callers (the same design as ioredis' and node-redis' auto-pipelining).

Only for commands whose raw RESP reply is what the caller wants (scripts, GET, SET, ...):
redis-py's response callbacks (HGETALL to dict, ...) do not run here. Blocking commands
(XREAD BLOCK, BLPOP) and MULTI never go through it: they would stall or interleave with
everyone else's commands.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, cast
from urllib.parse import unquote, urlparse

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio import Redis
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, KeyT, ScriptTextT

Arg = str | bytes | int | float

_RETRIES = 2  # as the pooled client: a lost connection is retried twice, with a backoff,
# within the command's deadline; a timeout is not retried (see `MultiplexedRedis.execute`)
_BACKOFF_SECONDS = 0.05


class Muxed(Protocol):
    """An auto-pipelined connection: one server's (MultiplexedRedis) or a cluster's
    (shared/redis/cluster.py)."""

    async def execute(self, *args: Arg) -> Any: ...

    def register_script(self, source: str) -> MultiplexedScript: ...


def _pack(args: Sequence[Arg]) -> bytes:
    # hiredis' stub types its argument as a 1-tuple; it takes any tuple of these types.
    packed: bytes = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]
    return packed


def _parse_error(message: str) -> RedisError:
    error: RedisError = BaseParser.parse_error(message)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    return error


class _Protocol(asyncio.Protocol):
    """Feeds replies to the waiting futures in order; fails them all when the link drops or
    one waits past its deadline.

    One watchdog timer per connection instead of a timeout per command (an asyncio.timeout
    per command is costly: docs/performance.md). Replies come in order, so one hung reply
    holds every caller behind it: when any waiter is past its deadline the connection is
    dropped, every waiter fails (RedisTimeoutError: the API's 503), and the next command
    connects afresh. Its replies, should the server answer late, go nowhere."""

    def __init__(self, timeout_s: float) -> None:
        self.transport: asyncio.Transport | None = None
        # (future, deadline on the loop's clock), oldest first.
        self.pending: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.outbox: list[bytes] = []  # commands of this turn, written together
        self.closed = False
        self.timeout_s = timeout_s
        self._reader = hiredis.Reader()
        self._watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses, hence the cast).
        self.transport = cast(asyncio.Transport, transport)
        self._watch()

    def _watch(self) -> None:
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        # Every waiter's deadline, not only the oldest's: a command retried after a lost
        # connection keeps its first deadline, which may come before older waiters' ones.
        if self.pending and min(deadline for _, deadline in self.pending) < loop.time():
            # No answer in time: the link is presumed dead, as the pooled client presumes.
            self.abort(RedisTimeoutError("Timeout reading from Redis"))
            return
        self._watchdog = loop.call_later(max(0.01, self.timeout_s / 8), self._watch)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        pending = self.pending
        while (reply := self._reader.gets()) is not False:
            if not pending:  # a reply nobody asked for: the stream is out of step
                self.abort(RedisConnectionError("Redis sent a reply that was not asked for"))
                return
            future, _ = pending.popleft()
            if future.done():
                continue  # its caller was cancelled or timed out; the reply is dropped
            if isinstance(reply, hiredis.ReplyError):
                # redis-py's own mapping: NOSCRIPT -> NoScriptError, READONLY -> ReadOnlyError...
                future.set_exception(_parse_error(str(reply)))
            else:
                future.set_result(reply)

    def flush(self) -> None:
        outbox, self.outbox = self.outbox, []
        if self.transport is not None and not self.closed:
            self.transport.write(outbox[0] if len(outbox) == 1 else b"".join(outbox))
        # Closed meanwhile: connection_lost failed these commands' futures already.

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"Connection to Redis lost: {exc or 'closed'}"))

    def abort(self, error: RedisError) -> None:
        self._fail(error)
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: RedisError) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        while self.pending:
            future, _ = self.pending.popleft()
            if not future.done():
                future.set_exception(error)


def _seen(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class MultiplexedRedis:
    """`await redis.execute("GET", key)`; scripts via `register_script(source)`."""

    def __init__(
        self,
        url: str,
        *,
        client_name: str = "hosted-sessions",
        timeout_s: float = 5.0,
        connect_timeout_s: float = 2.0,
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "unix"):
            raise ValueError(f"unsupported Redis URL scheme for the multiplexed client: {url!r}")
        self._unix_path = parsed.path if parsed.scheme == "unix" else None
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or 6379
        self._username = unquote(parsed.username) if parsed.username else None
        self._password = unquote(parsed.password) if parsed.password else None
        db_text = parsed.path.lstrip("/") if parsed.scheme == "redis" else ""
        query_db = dict(p.split("=", 1) for p in parsed.query.split("&") if "=" in p).get("db")
        self._db = int(db_text or query_db or 0)
        self._client_name = client_name
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._protocol: _Protocol | None = None
        # The connect in progress, shared by every caller that needs it.
        self._connecting: asyncio.Future[_Protocol] | None = None

    def register_script(self, source: str) -> MultiplexedScript:
        return MultiplexedScript(self, source)

    async def execute(self, *args: Arg) -> Any:
        """Send one command (pipelined with everyone else's) and return its raw reply.

        Everything the call waits for (a connect, the reply, a retry's backoff) fits in one
        deadline, `timeout_s` from the call; past it, RedisTimeoutError. A lost connection
        is retried on a new one within that deadline; a timeout is not: the server is slow
        or hung, another try would only wait again. Either way a command that failed may
        still have run (a write's outcome is unknown): callers' writes are safe to repeat
        (SET NX creates, compare-and-set changes, the charge's idempotency key)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        attempt = 0
        while True:
            try:
                protocol = self._protocol
                if protocol is None or protocol.closed:
                    protocol = await self._connected(deadline)
                # Queued without another coroutine layer: this runs for every command.
                return await self._queue(protocol, args, deadline)
            except RedisConnectionError:
                backoff = _BACKOFF_SECONDS * 2**attempt
                attempt += 1
                if attempt > _RETRIES or loop.time() + backoff >= deadline:
                    raise
                await asyncio.sleep(backoff)

    def _queue(
        self, protocol: _Protocol, args: Sequence[Arg], deadline: float
    ) -> asyncio.Future[Any]:
        """The command in this turn's outbox; its future resolves to the reply (the
        protocol's watchdog enforces the deadline)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        packed = _pack(args)  # before queueing: a TypeError leaves nothing behind
        protocol.pending.append((future, deadline))
        if not protocol.outbox:
            loop.call_soon(protocol.flush)
        protocol.outbox.append(packed)
        return future

    async def _connected(self, deadline: float) -> _Protocol:
        """The live connection, else a new one. One connect at a time, shared by all who
        wait for it, each no longer than its own deadline: waiting in turn for a lock, as
        before, stacked a connect timeout per waiter while Redis hung."""
        loop = asyncio.get_running_loop()
        joined = False  # whether the attempt awaited was begun before this call
        while True:
            protocol = self._protocol
            if protocol is not None and not protocol.closed:
                return protocol
            connecting = self._connecting
            joined = connecting is not None and not connecting.done() and not joined
            if connecting is None or connecting.done():
                connecting = self._connecting = asyncio.ensure_future(self._connect())
                # Its failure may outlive every waiter (each gone at its own deadline): mark
                # it seen, or asyncio logs "exception was never retrieved".
                connecting.add_done_callback(_seen)
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.0)):
                    # Shielded: one caller's deadline does not cancel the others' connect.
                    return await asyncio.shield(connecting)
            except TimeoutError:
                raise RedisTimeoutError("Timeout connecting to Redis") from None
            except (RedisConnectionError, RedisTimeoutError):
                # An attempt begun while Redis hung may fail just after it came back: one
                # attempt of our own then, within our deadline.
                if not joined:
                    raise

    async def _connect(self) -> _Protocol:
        """A connection set up (AUTH, SELECT, CLIENT SETNAME) within the connect timeout;
        raises only RedisConnectionError or RedisTimeoutError (the API's 503)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if self._unix_path is not None:
                    _, protocol = await loop.create_unix_connection(
                        lambda: _Protocol(self._timeout_s), self._unix_path
                    )
                else:
                    _, protocol = await loop.create_connection(
                        lambda: _Protocol(self._timeout_s), self._host, self._port
                    )
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"Error connecting to Redis: {exc}") from exc
        hello: list[tuple[Arg, ...]] = []
        if self._password is not None:
            auth = (self._username, self._password) if self._username else (self._password,)
            hello.append(("AUTH", *auth))
        if self._db:
            hello.append(("SELECT", self._db))
        hello.append(("CLIENT", "SETNAME", self._client_name))
        futures = [loop.create_future() for _ in hello]
        deadline = loop.time() + self._connect_timeout_s
        protocol.pending.extend((future, deadline) for future in futures)
        assert protocol.transport is not None
        protocol.transport.write(b"".join(_pack(cmd) for cmd in hello))
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await asyncio.gather(*futures)
        except TimeoutError:
            # A stopped server still completes TCP handshakes (the kernel does): its silence
            # shows here. Not the builtin TimeoutError: that would be a 500.
            protocol.abort(RedisTimeoutError("Redis connection set-up timed out"))
            raise RedisTimeoutError("Timeout setting up the connection to Redis") from None
        except BaseException:
            protocol.abort(RedisConnectionError("Redis connection set-up failed"))
            raise
        self._protocol = protocol
        return protocol

    async def aclose(self) -> None:
        connecting, self._connecting = self._connecting, None
        if connecting is not None and not connecting.done():
            connecting.cancel()
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


class MultiplexedScript:
    """A Lua script called by its SHA1, loaded on first use or after a SCRIPT FLUSH."""

    def __init__(self, redis: Muxed, source: str) -> None:
        self._redis = redis
        self._source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Any:
        try:
            return await self._redis.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # EVAL runs it and caches it under the same SHA for the next calls.
            return await self._redis.execute("EVAL", self._source, len(keys), *keys, *args)


class _RoutedScript(AsyncScript):
    """redis-py's script object, except that a direct call (no pipeline given) goes through
    the multiplexed connection; inside a pipeline it is queued as redis-py queues it."""

    def __init__(self, registered_client: Any, script: str, mux: Muxed) -> None:
        super().__init__(registered_client, script)
        self._mux_script = mux.register_script(script)

    async def __call__(
        self,
        keys: Sequence[KeyT] | None = None,
        args: Iterable[EncodableT] | None = None,
        client: Redis | None = None,
    ) -> Any:
        if client is None or client is self.registered_client:
            # Our stores pass str, bytes and numbers, all of which hiredis packs.
            return await self._mux_script(
                keys=cast(Sequence[Arg], list(keys or ())),
                args=cast(Sequence[Arg], list(args or ())),
            )
        return await super().__call__(keys=keys, args=args, client=client)


# Commands that answer at once and whose reply depends on nothing but their arguments: they
# may share the multiplexed connection. Not: blocking reads (XREAD[GROUP] BLOCK, BLPOP...),
# MULTI/EXEC/WATCH (connection state), SELECT/CLIENT/AUTH, pub/sub, SCRIPT, MONITOR.
_MULTIPLEXABLE = frozenset(
    {
        "GET", "SET", "GETEX", "GETDEL", "MGET", "SETEX", "PSETEX", "SETNX", "DEL", "UNLINK",
        "EXISTS", "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT", "TTL", "PTTL", "INCR",
        "INCRBY", "DECR", "DECRBY", "HGET", "HMGET", "HGETALL", "HSET", "HDEL", "HEXISTS",
        "HINCRBY", "HLEN", "HKEYS", "HVALS", "ZADD", "ZREM", "ZSCORE", "ZMSCORE", "ZCARD",
        "ZCOUNT", "ZRANGE", "ZREVRANGE", "ZRANGEBYSCORE", "ZREVRANGEBYSCORE", "ZRANK",
        "ZREMRANGEBYSCORE", "LPUSH", "RPUSH", "LRANGE", "LLEN", "LTRIM", "SADD", "SREM",
        "SISMEMBER", "SMEMBERS", "SCARD", "XADD", "XRANGE", "XREVRANGE", "XLEN", "XACK",
        "EVALSHA", "EVAL", "PING",
    }
)  # fmt: skip


async def routed_execute(
    mux: Muxed,
    client: Any,
    pooled: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    options: dict[str, Any],
) -> Any:
    """A redis-py client's `execute_command`: a command of `_MULTIPLEXABLE` through `mux`,
    its reply through the client's response callback as on the pool; any other command, or
    arguments hiredis cannot pack, through `pooled` (the client's own execute_command)."""
    name = args[0]
    if name not in _MULTIPLEXABLE or NEVER_DECODE in options:
        return await pooled(*args, **options)
    try:
        reply = await mux.execute(*args)
    except ResponseError:
        if EMPTY_RESPONSE in options:
            return options[EMPTY_RESPONSE]
        raise
    except TypeError:  # an argument type hiredis does not pack: redis-py's own encoder
        return await pooled(*args, **options)
    options.pop(EMPTY_RESPONSE, None)
    options.pop("keys", None)  # only for redis-py's client-side cache
    callback = client.response_callbacks.get(name)
    if callback is None:
        return reply
    result = callback(reply, **options)
    return await result if inspect.isawaitable(result) else result


class ScriptRoutingRedis(Redis):
    """The pooled redis-py client, with every registered Lua script (a session write, a
    session read, a rate-limit step) and every simple command of `_MULTIPLEXABLE` pipelined
    over one shared connection; pipelines, transactions and blocking reads stay on the pool.
    Stores take it wherever they take a `Redis`, unchanged: replies go through redis-py's own
    response callbacks, as on the pool."""

    def __init__(self, *, mux: MultiplexedRedis, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mux = mux

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await routed_execute(self.mux, self, super().execute_command, args, options)

    # redis-py's stub says Script (the sync class); the asyncio client returns AsyncScript.
    def register_script(self, script: ScriptTextT) -> AsyncScript:  # type: ignore[override]
        text = script.decode() if isinstance(script, bytes) else str(script)
        return _RoutedScript(self, text, self.mux)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await self.mux.aclose()
        await super().aclose(close_connection_pool=close_connection_pool)
