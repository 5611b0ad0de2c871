"""The cluster's auto-pipelined client against a real local Redis Cluster (three primaries, three
replicas, started here from the same redis-server binary as every other test): routing by
slot, MOVED after a slot moves, ASK during a migration, scripts, and a primary's failover."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.clock import SystemClock
from shared.config import Settings
from shared.redis.client import create_redis
from shared.redis.cluster import (
    ClusterMultiplexedRedis,
    ClusterScriptRoutingRedis,
    command_key,
    parse_cluster_url,
    slot_of,
)
from shared.redis.embedded import find_redis_server
from shared.sessions.params import CreateSessionParams, UpdateSessionParams
from shared.wiring import wire_core
from tests.support import seed_body


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """Ports whose cluster bus port (+10000) is free too; Redis 6 needs both below 65536."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20_000, 45_000)
        if port not in ports and _bindable(port) and _bindable(port + 10_000):
            ports.append(port)
    return ports


class LocalCluster:
    """Six redis-server processes made into a cluster by `redis-cli --cluster create`."""

    def __init__(self, directory: Path) -> None:
        server = find_redis_server()
        cli = Path(server).with_name("redis-cli")
        self.server = server
        self.cli = str(cli) if cli.exists() else (shutil.which("redis-cli") or "")
        self.directory = directory
        self.ports = _free_ports(6)
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def start_node(self, port: int) -> None:
        self.processes[port] = subprocess.Popen(
            [
                self.server,
                "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "1000",
                "--save", "", "--appendonly", "no",
                "--dir", str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def cli_call(self, port: int, *args: str) -> str:
        return subprocess.run(
            [self.cli, "-h", "127.0.0.1", "-p", str(port), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout

    def start(self) -> None:
        for port in self.ports:
            self.start_node(port)
        for port in self.ports:
            self._wait_ping(port)
        subprocess.run(
            [
                self.cli, "--cluster", "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas", "1", "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        self.wait_ok()

    def _wait_ping(self, port: int) -> None:
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                if "PONG" in self.cli_call(port, "PING"):
                    return
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on {port} did not start")

    def wait_ok(self, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            alive = [p for p, proc in self.processes.items() if proc.poll() is None]
            if all("cluster_state:ok" in self.cli_call(p, "CLUSTER", "INFO") for p in alive):
                return
            time.sleep(0.1)
        raise RuntimeError("cluster did not reach cluster_state:ok")

    def primary_ports(self) -> list[int]:
        ports = []
        for line in self.cli_call(self.ports[0], "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" in fields[2] and "fail" not in fields[2]:
                ports.append(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
        return ports

    def node_id(self, port: int) -> str:
        return self.cli_call(port, "CLUSTER", "MYID").strip()

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:3])

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.processes.values():
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with tempfile.TemporaryDirectory(prefix="hs-cluster-") as directory:
        local = LocalCluster(Path(directory))
        if not local.cli:
            pytest.fail("redis-cli is needed to create the test cluster")
        try:
            local.start()
            yield local
        finally:
            local.stop()


@pytest.fixture
async def client(cluster: LocalCluster) -> AsyncIterator[ClusterMultiplexedRedis]:
    redis = ClusterMultiplexedRedis(cluster.url, timeout_s=5.0, connect_timeout_s=1.0)
    try:
        yield redis
    finally:
        await redis.aclose()


def test_cluster_urls_and_routing_keys() -> None:
    seeds, user, password = parse_cluster_url("redis+cluster://u:p%40ss@h1:7000,[::1]:7001")
    assert seeds == [("h1", 7000), ("::1", 7001)]
    assert (user, password) == ("u", "p@ss")
    with pytest.raises(ValueError, match="host:port"):
        parse_cluster_url("redis+cluster://h1")
    with pytest.raises(ValueError, match="cluster URL"):
        parse_cluster_url("redis://h1:6379")
    assert command_key(("EVALSHA", "abc", 2, "k1", "k2", "arg")) == "k1"
    assert command_key(("EVALSHA", "abc", 0, "arg")) is None
    assert command_key(("PING",)) is None
    assert command_key(("GET", "k")) == "k"
    # The hash tag decides the slot: every key of one partition lives on one node.
    assert slot_of("hs:{p07}:s:a") == slot_of(b"hs:{p07}:events") != slot_of("hs:{p08}:s:a")


async def test_commands_and_scripts_reach_every_primary(
    cluster: LocalCluster, client: ClusterMultiplexedRedis
) -> None:
    keys = [f"t:{{p{i:02d}}}:k" for i in range(64)]
    await asyncio.gather(*(client.execute("SET", key, key) for key in keys))
    assert await asyncio.gather(*(client.execute("GET", key) for key in keys)) == [
        key.encode() for key in keys
    ]
    # Spread over all three primaries, each answering for its own slots only.
    assert len(client.primaries) == 3
    owners = {client._slots[slot_of(key)] for key in keys}
    assert len(owners) == 3
    script = client.register_script(
        "redis.call('SET', KEYS[2], ARGV[1]); return redis.call('GET', KEYS[1])"
    )
    replies = await asyncio.gather(*(script(keys=[key, key + ":copy"], args=["v"]) for key in keys))
    assert replies == [key.encode() for key in keys]
    assert await client.execute("GET", keys[5] + ":copy") == b"v"
    assert await client.execute("PING") == b"PONG"


async def test_a_moved_slot_is_followed(
    cluster: LocalCluster, client: ClusterMultiplexedRedis
) -> None:
    key = "t:{moved}:k"
    await client.execute("SET", key, "before")
    slot = slot_of(key)
    source = client._slots[slot]
    assert source is not None
    target = next(a for a in client.primaries if a != source)
    source_id, target_id = cluster.node_id(source[1]), cluster.node_id(target[1])
    # Migrate the slot with its key, as redis-cli --cluster reshard does.
    cluster.cli_call(target[1], "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
    cluster.cli_call(source[1], "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
    # Mid-migration: a key not yet on the source is asked of the target (ASK + ASKING).
    assert await client.execute("SET", "t:{moved}:new", "during") == b"OK"
    cluster.cli_call(
        source[1], "MIGRATE", "127.0.0.1", str(target[1]), "", "0", "5000", "KEYS", key
    )
    assert await client.execute("GET", key) == b"before"  # ASK to the target
    for port in (source[1], target[1]):
        cluster.cli_call(port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)
    assert client._slots[slot] == source  # the client's map does not know yet
    assert await client.execute("GET", key) == b"before"  # MOVED
    assert client._slots[slot] == target
    assert await client.execute("GET", "t:{moved}:new") == b"during"


async def test_a_failed_primary_is_replaced_by_its_replica(
    cluster: LocalCluster, client: ClusterMultiplexedRedis
) -> None:
    keys = [f"t:{{f{i:02d}}}:k" for i in range(32)]
    for key in keys:
        await client.execute("SET", key, "1")
    # WAIT: acknowledged by the replica before the primary dies (the documented window).
    victim = client._slots[slot_of(keys[0])]
    assert victim is not None
    assert await client.execute_with(keys[0], "WAIT", 1, 2000) == 1
    cluster.processes[victim[1]].send_signal(signal.SIGKILL)
    cluster.processes[victim[1]].wait(timeout=10)
    victim_keys = [k for k in keys if client._slots[slot_of(k)] == victim]
    # While no primary serves the slot, a call fails within its deadline (the API's 503).
    started = time.monotonic()
    short = ClusterMultiplexedRedis(cluster.url, timeout_s=0.3, connect_timeout_s=0.2)
    try:
        with pytest.raises((RedisConnectionError, RedisTimeoutError)):
            await short.execute("GET", victim_keys[0])
    finally:
        await short.aclose()
    assert time.monotonic() - started < 2.0
    # The replica is promoted (node timeout 1 s); the same client resumes by itself.
    end = time.monotonic() + 20
    values: list[object] = []
    while time.monotonic() < end:
        try:
            values = [await client.execute("GET", k) for k in victim_keys]
            break
        except (RedisConnectionError, RedisTimeoutError):
            await asyncio.sleep(0.2)
    assert values == [b"1"] * len(victim_keys)
    assert victim not in client.primaries
    # Bring the old primary back as a replica so later tests see six nodes again.
    cluster.start_node(victim[1])
    cluster._wait_ping(victim[1])
    cluster.wait_ok()


def test_cluster_binary_present() -> None:
    # CI must have what the cluster tests need: a missing redis-cli fails, never skips.
    server = find_redis_server()
    assert os.access(server, os.X_OK)
    assert Path(server).with_name("redis-cli").exists() or shutil.which("redis-cli")


async def test_the_session_store_runs_on_the_cluster(
    cluster: LocalCluster, settings: Settings
) -> None:
    """The domain's session path (create with its event, read, update) through redis-py's
    cluster client with the multiplexed connections underneath."""
    cluster_settings = msgspec.structs.replace(settings, redis_url=cluster.url)
    redis = create_redis(cluster_settings, client_name="hs-test", multiplex_scripts=True)
    assert isinstance(redis, ClusterScriptRoutingRedis)
    try:
        domain = wire_core(cluster_settings, redis, SystemClock())
        params = msgspec.json.decode(msgspec.json.encode(seed_body()), type=CreateSessionParams)
        accounts = [f"acct_cluster{i:03d}" for i in range(12)]
        created = [await domain.sessions.create(account, params) for account in accounts]
        for account, session in zip(accounts, created, strict=True):
            view = await domain.sessions.get(account, session.session_id)
            assert view.id == session.session_id
            await domain.sessions.update(
                account, session.session_id, UpdateSessionParams(description="on a cluster")
            )
            assert (await domain.sessions.get(account, session.session_id)).description == (
                "on a cluster"
            )
    finally:
        await redis.aclose()
