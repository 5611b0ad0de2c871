"""Redis Cluster under the same auto-pipelined design: one multiplexed connection per primary,
each command sent to the primary that owns its key's slot.

The slot map comes from `CLUSTER SLOTS` and is read again (one read at a time, shared by every
caller that needs it) when a node answers `MOVED`, when a connection to a primary fails (a
failover may have promoted its replica) and while the cluster says `CLUSTERDOWN`/`TRYAGAIN`.
`ASK` (a slot being migrated) sends `ASKING` and the command back to back on the target's
connection, as the protocol requires. Everything a call waits for, redirects and re-reads of
the map included, fits in the one deadline of `MultiplexedRedis.execute`: past it the caller
gets RedisTimeoutError or RedisConnectionError, which the API answers with 503
`network_error` (recoverable) while a slot has no reachable primary.

Keys must keep every multi-key command and script within one slot: ours do, through their
`{pNN}` / `{acct}` hash tags (shared/redis/keys.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlparse

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import ScriptTextT

from shared.redis.multiplex import (
    Arg,
    MultiplexedRedis,
    MultiplexedScript,
    _RoutedScript,
    _seen,
    routed_execute,
)

SLOTS = 16384
# A redirect loop (a map that keeps pointing elsewhere) ends here rather than at the deadline.
_MAX_REDIRECTS = 5
_BACKOFF_SECONDS = 0.05
_BACKOFF_CAP_SECONDS = 0.5
# The map is read again at most this often when errors, not MOVED, ask for it.
_REFRESH_MIN_INTERVAL_SECONDS = 0.1

Address = tuple[str, int]


def parse_cluster_url(url: str) -> tuple[list[Address], str | None, str | None]:
    """`redis+cluster://[user:pass@]host:port[,host:port...]` -> seed nodes and credentials."""
    parsed = urlparse(url)
    if parsed.scheme != "redis+cluster":
        raise ValueError(f"not a cluster URL (redis+cluster://host:port,...): {url!r}")
    netloc = parsed.netloc
    username = password = None
    if "@" in netloc:
        credentials, netloc = netloc.rsplit("@", 1)
        user, _, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if secret else None
    seeds: list[Address] = []
    for part in netloc.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"cluster seed must be host:port, got {part!r} in {url!r}")
        seeds.append((host.strip("[]"), int(port)))
    return seeds, username, password


def command_key(args: Sequence[Arg]) -> Arg | None:
    """The key a command is routed by: a script's first key, else the first argument; None
    for a command without one (PING, a script called with no keys)."""
    name = args[0]
    if name in ("EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO", "FCALL", "FCALL_RO"):
        return args[3] if len(args) > 3 and int(args[2]) > 0 else None
    if name == "PING" or len(args) < 2:
        return None
    return args[1]


def slot_of(key: Arg) -> int:
    """The key's hash slot (CRC16 of the key, or of its `{tag}` when it has one)."""
    if isinstance(key, bytes):
        return int(key_slot(key))
    return int(key_slot(str(key).encode()))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ClusterMultiplexedRedis:
    """`await cluster.execute("GET", key)` on the primary of the key's slot; scripts via
    `register_script(source)` (EVALSHA, loaded on each node on first use there)."""

    def __init__(
        self,
        url: str,
        *,
        client_name: str = "hosted-sessions",
        timeout_s: float = 5.0,
        connect_timeout_s: float = 2.0,
    ) -> None:
        self._seeds, self._username, self._password = parse_cluster_url(url)
        self._client_name = client_name
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._nodes: dict[Address, MultiplexedRedis] = {}
        # slot -> primary's address; None until the first map is read.
        self._slots: list[Address | None] = [None] * SLOTS
        self._refreshing: asyncio.Future[None] | None = None
        self._refreshed_at = float("-inf")

    @property
    def primaries(self) -> list[Address]:
        """The primaries of the current map, in slot order."""
        seen: dict[Address, None] = {}
        for address in self._slots:
            if address is not None:
                seen.setdefault(address, None)
        return list(seen)

    def register_script(self, source: str) -> MultiplexedScript:
        return MultiplexedScript(self, source)

    def _node(self, address: Address) -> MultiplexedRedis:
        node = self._nodes.get(address)
        if node is None:
            host, port = address
            credentials = ""
            if self._password is not None:
                user = self._username or ""
                credentials = f"{user}:{self._password}@"
            node = MultiplexedRedis(
                f"redis://{credentials}{host}:{port}",
                client_name=self._client_name,
                timeout_s=self._timeout_s,
                connect_timeout_s=self._connect_timeout_s,
            )
            self._nodes[address] = node
        return node

    async def execute(self, *args: Arg) -> Any:
        """Send one command to its slot's primary (pipelined with every other command for
        that node) and return its raw reply, following MOVED and ASK and waiting out a
        failover, all within one deadline of `timeout_s` from the call."""
        key = command_key(args)
        return await self._execute(slot_of(key) if key is not None else None, args)

    async def execute_with(self, key: Arg, *args: Arg) -> Any:
        """Send a command on the connection of `key`'s primary: for commands that name no key
        but concern that node's writes (`WAIT n ms` after writing `key`)."""
        return await self._execute(slot_of(key), args)

    async def _execute(self, slot: int | None, args: Sequence[Arg]) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        redirects = 0
        attempt = 0
        asking: Address | None = None
        while True:
            address = asking or await self._address(slot, deadline)
            node = self._node(address)
            try:
                protocol = node._protocol
                if protocol is None or protocol.closed:
                    protocol = await node._connected(deadline)
                if asking is not None:
                    # ASKING must come just before the command on the same connection: both
                    # are queued in this one synchronous step, so nothing comes between.
                    asking_reply = node._queue(protocol, ("ASKING",), deadline)
                    asking_reply.add_done_callback(_seen)
                    asking = None
                return await node._queue(protocol, args, deadline)
            except ResponseError as exc:
                message = str(exc)
                kind = message.split(" ", 1)[0]
                if kind in ("MOVED", "ASK"):
                    redirects += 1
                    if redirects > _MAX_REDIRECTS:
                        raise RedisConnectionError(
                            f"too many cluster redirects: {message}"
                        ) from exc
                    _, slot_text, target = message.split(" ", 2)
                    host, _, port = target.rpartition(":")
                    moved_to = (host or address[0], int(port))
                    if kind == "MOVED":
                        self._slots[int(slot_text)] = moved_to
                        self._refresh_soon()
                    else:
                        asking = moved_to
                    continue
                if kind not in ("TRYAGAIN", "CLUSTERDOWN"):
                    raise
                error: Exception = RedisConnectionError(f"cluster not ready: {message}")
            except RedisConnectionError as exc:
                error = exc
            # A primary gone or a slot without one: read the map again (a replica may have
            # been promoted) and retry after a backoff, while the deadline allows.
            backoff = min(_BACKOFF_SECONDS * 2**attempt, _BACKOFF_CAP_SECONDS)
            attempt += 1
            if loop.time() + backoff >= deadline:
                raise error
            await asyncio.sleep(backoff)
            await self._refresh(deadline, force=False)

    async def _address(self, slot: int | None, deadline: float) -> Address:
        if slot is None:
            primaries = self.primaries
            if primaries:
                return primaries[0]
        elif (address := self._slots[slot]) is not None:
            return address
        await self._refresh(deadline, force=True)
        if slot is None:
            primaries = self.primaries
            if primaries:
                return primaries[0]
        elif (address := self._slots[slot]) is not None:
            return address
        raise RedisConnectionError(f"no primary serves slot {slot}")

    def _refresh_soon(self) -> None:
        """A MOVED named one slot's new owner: read the whole map in the background, since a
        resharding or a failover usually moved more than that slot."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._read_map())
            self._refreshing.add_done_callback(_seen)

    async def _refresh(self, deadline: float, *, force: bool) -> None:
        """Read the slot map again, one read at a time shared by every caller, each waiting
        no longer than its own deadline."""
        loop = asyncio.get_running_loop()
        refreshing = self._refreshing
        if refreshing is None or refreshing.done():
            if not force and loop.time() - self._refreshed_at < _REFRESH_MIN_INTERVAL_SECONDS:
                return
            refreshing = self._refreshing = asyncio.ensure_future(self._read_map())
            refreshing.add_done_callback(_seen)
        try:
            async with asyncio.timeout(max(deadline - loop.time(), 0.0)):
                await asyncio.shield(refreshing)
        except TimeoutError:
            raise RedisTimeoutError("Timeout reading the cluster's slot map") from None

    async def _read_map(self) -> None:
        """CLUSTER SLOTS from the first node that answers: known primaries, then the seeds."""
        loop = asyncio.get_running_loop()
        candidates = [*self.primaries, *self._seeds, *self._nodes]
        last_error: Exception = RedisConnectionError("no cluster node to ask for the slot map")
        tried: set[Address] = set()
        for address in candidates:
            if address in tried:
                continue
            tried.add(address)
            try:
                reply = await self._node(address).execute("CLUSTER", "SLOTS")
            except (RedisConnectionError, RedisTimeoutError, ResponseError) as exc:
                last_error = exc
                continue
            slots: list[Address | None] = [None] * SLOTS
            for entry in reply:
                start, end, primary = int(entry[0]), int(entry[1]), entry[2]
                host = _text(primary[0]) or address[0]
                owner = (host, int(primary[1]))
                for slot in range(start, end + 1):
                    slots[slot] = owner
            self._slots = slots
            self._refreshed_at = loop.time()
            await self._forget_gone_nodes()
            return
        raise last_error

    async def _forget_gone_nodes(self) -> None:
        keep = set(self.primaries) | set(self._seeds)
        for address in [a for a in self._nodes if a not in keep]:
            await self._nodes.pop(address).aclose()

    async def aclose(self) -> None:
        refreshing, self._refreshing = self._refreshing, None
        if refreshing is not None and not refreshing.done():
            refreshing.cancel()
        nodes, self._nodes = self._nodes, {}
        for node in nodes.values():
            await node.aclose()


class ClusterScriptRoutingRedis(RedisCluster):
    """redis-py's cluster client, with every registered script and simple command
    (`_MULTIPLEXABLE`) over the per-primary auto-pipelined connections; pipelines and blocking
    reads stay on redis-py's own cluster connections. The cluster twin of ScriptRoutingRedis:
    stores take it wherever they take a client."""

    def __init__(self, *, mux: ClusterMultiplexedRedis, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mux = mux

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await routed_execute(self.mux, self, super().execute_command, args, options)

    # redis-py's stub says Script (the sync class); the asyncio client returns AsyncScript.
    def register_script(self, script: ScriptTextT) -> AsyncScript:  # type: ignore[override]
        text = script.decode() if isinstance(script, bytes) else str(script)
        return _RoutedScript(self, text, self.mux)

    async def aclose(self) -> None:
        await self.mux.aclose()
        await super().aclose()


def create_cluster_client(
    url: str, *, client_name: str, timeout_s: float, connect_timeout_s: float
) -> ClusterScriptRoutingRedis:
    """The data store on a cluster (`redis+cluster://host:port,...`): the same deadlines as
    the single server's client, on redis-py's connections and on the multiplexed ones."""
    seeds, username, password = parse_cluster_url(url)
    # redis-py's command mixins declare a `connection_pool` the cluster client has no use for.
    return ClusterScriptRoutingRedis(  # type: ignore[abstract]
        mux=ClusterMultiplexedRedis(
            url,
            client_name=f"{client_name}-mux",
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
        ),
        startup_nodes=[ClusterNode(host, port) for host, port in seeds],
        username=username,
        password=password,
        client_name=client_name,
        socket_timeout=timeout_s,
        socket_connect_timeout=connect_timeout_s,
    )
