"""The local Redis Cluster (shared/redis/local_cluster.py, scripts/redis-cluster) is a real
cluster: keys spread over every primary, a hash-tagged script runs on one slot, a cross-slot
one is refused, and a killed primary's replica takes over with the replicated writes."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from shared.redis.local_cluster import (
    CLUSTER_SLOTS,
    LocalCluster,
    cluster_state,
    slot_ranges,
)
from tests.support import eventually
from tests.support.cluster import start_local_cluster

REPO = Path(__file__).resolve().parents[2]

# Two keys in one slot (same hash tag) that a single script may touch together.
MOVE_SCRIPT = """
local v = redis.call('GET', KEYS[1])
if not v then return redis.error_reply('source missing') end
redis.call('SET', KEYS[2], v .. ARGV[1])
redis.call('DEL', KEYS[1])
return redis.call('GET', KEYS[2])
"""


def cluster_client(cluster: LocalCluster) -> RedisCluster:
    client: RedisCluster = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.startup_nodes],
        decode_responses=True,
    )
    return client


def owner(client: RedisCluster, key: str) -> ClusterNode:
    """The primary that serves `key`'s slot, as the client's slot map says."""
    node = client.get_node_from_key(key)
    assert node is not None
    return node


async def run_script(client: RedisCluster, *keys_and_args: str) -> object:
    result: object = await client.eval(MOVE_SCRIPT, 2, *keys_and_args)  # type: ignore[misc]  # redis-py types eval for both its sync and async clients
    return result


@pytest.fixture
async def client(redis_cluster: LocalCluster) -> AsyncIterator[RedisCluster]:
    rc = cluster_client(redis_cluster)
    await rc.initialize()
    yield rc
    await rc.aclose()


def test_slot_ranges_cover_every_slot_once() -> None:
    for primaries in (1, 3, 10):
        ranges = slot_ranges(primaries)
        assert [s for r in ranges for s in r] == list(range(CLUSTER_SLOTS))


def test_the_cluster_is_ok_with_a_replica_per_primary(redis_cluster: LocalCluster) -> None:
    assert len(redis_cluster.primaries) == 3
    assert len(redis_cluster.nodes) == 6
    for node in redis_cluster.nodes:
        with node.client() as c:
            assert cluster_state(c) == "ok"
    for primary in redis_cluster.primaries:
        with primary.client() as c:
            assert c.info("replication")["role"] == "master"
            assert c.info("replication")["connected_slaves"] == 1
        [replica] = primary.replicas
        with replica.client() as c:
            assert c.info("replication")["role"] == "slave"
            assert int(c.info("replication")["master_port"]) == primary.port


async def test_keys_spread_over_every_primary_and_read_back(client: RedisCluster) -> None:
    prefix = "t" + secrets.token_hex(4)
    keys = [f"{prefix}:k{i}" for i in range(60)]
    for i, key in enumerate(keys):
        await client.set(key, str(i), ex=300)
    owners = {owner(client, key).port for key in keys}
    assert len(owners) == 3, owners
    assert [await client.get(key) for key in keys] == [str(i) for i in range(len(keys))]
    # Each key lives on its slot's primary only: asking another primary directly is MOVED.
    key = keys[0]
    other = next(n for n in client.get_primaries() if n.port != owner(client, key).port)
    with (
        redis.Redis(host=other.host, port=int(other.port)) as direct,
        pytest.raises(redis.ResponseError, match="MOVED"),
    ):
        direct.get(key)
    await client.delete(*keys)


async def test_a_hash_tagged_script_moves_a_value_within_one_slot(client: RedisCluster) -> None:
    tag = "{t" + secrets.token_hex(4) + "}"
    source, target = f"{tag}:source", f"{tag}:target"
    assert client.keyslot(source) == client.keyslot(target)
    await client.set(source, "v", ex=300)
    moved = await run_script(client, source, target, "+1")
    assert moved == "v+1"
    assert await client.get(source) is None
    assert await client.get(target) == "v+1"
    await client.delete(target)


async def test_a_script_across_slots_is_refused(client: RedisCluster) -> None:
    prefix = "t" + secrets.token_hex(4)
    first, second = f"{prefix}:a", f"{prefix}:b"
    assert client.keyslot(first) != client.keyslot(second)
    await client.set(first, "v", ex=300)
    with pytest.raises(redis.exceptions.RedisClusterException, match="same key slot"):
        await run_script(client, first, second, "+1")
    # The server itself refuses too, not only redis-py's check before sending.
    node = owner(client, first)
    with (
        redis.Redis(host=node.host, port=int(node.port)) as direct,
        pytest.raises(redis.ResponseError, match="CROSSSLOT"),
    ):
        direct.eval(MOVE_SCRIPT, 2, first, second, "+1")
    assert await client.get(first) == "v"
    await client.delete(first)


def _role_of(cluster: LocalCluster, port: int) -> str:
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as c:
        return str(c.info("replication")["role"])


async def test_a_killed_primary_fails_over_to_its_replica_and_reads_resume() -> None:
    cluster = start_local_cluster()
    rc = cluster_client(cluster)
    try:
        await rc.initialize()
        prefix = "t" + secrets.token_hex(4)
        keys = [f"{prefix}:k{i}" for i in range(60)]
        for i, key in enumerate(keys):
            await rc.set(key, str(i))
        # Replicated before the crash: WAIT on each primary for its one replica.
        for primary in cluster.primaries:
            with primary.client() as c:
                assert c.execute_command("WAIT", 1, 5000) == 1
        victim = cluster.primaries[0]
        [heir] = victim.replicas
        on_victim = [k for k in keys if owner(rc, k).port == victim.port]
        assert on_victim

        cluster.kill(victim)

        async def read_all() -> list[str | None] | None:
            try:
                return [await rc.get(k) for k in keys]
            except (redis.exceptions.RedisError, OSError):
                return None

        started = time.monotonic()
        values = await eventually(read_all, lambda v: v is not None, within=30)
        elapsed = time.monotonic() - started
        assert values == [str(i) for i in range(len(keys))], f"after {elapsed:.1f}s"
        assert _role_of(cluster, heir.port) == "master"
        assert owner(rc, on_victim[0]).port == heir.port
        # Writes to the promoted replica's slots succeed too.
        await rc.set(on_victim[0], "after")
        assert await rc.get(on_victim[0]) == "after"
        cluster.wait_ok(timeout=10)
    finally:
        await rc.aclose()
        cluster.stop()


def test_the_script_starts_a_detached_cluster_and_stops_it(tmp_path: Path) -> None:
    directory = tmp_path / "cluster"
    script = str(REPO / "scripts" / "redis-cluster")
    started = subprocess.run(
        [sys.executable, script, "start", "--detach", "--dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = started.stdout.splitlines()
    urls = [line.split()[0] for line in lines if line.startswith("redis://")]
    roles = [line.split()[1] for line in lines if line.startswith("redis://")]
    assert roles == ["primary"] * 3 + ["replica"] * 3
    assert "cluster_state:ok" in lines
    try:
        for url in urls:
            with redis.Redis.from_url(url) as c:
                assert cluster_state(c) == "ok"
    finally:
        stopped = subprocess.run(
            [sys.executable, script, "stop", "--dir", str(directory)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    assert stopped.stdout.strip() == "stopped 6 node(s)"
    assert not directory.exists()
    for url in urls:
        with (
            redis.Redis.from_url(url, socket_connect_timeout=0.5) as c,
            pytest.raises(redis.ConnectionError),
        ):
            c.ping()
