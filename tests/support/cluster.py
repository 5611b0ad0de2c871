"""A local Redis Cluster for the tests that ask for it (opt-in: nothing starts unless a test
requests `redis_cluster` or calls `start_local_cluster`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.redis.local_cluster import LocalCluster

# Short, so a failover test waits seconds, not the production default's 15 s.
NODE_TIMEOUT_MS = 1000


def start_local_cluster(primaries: int = 3, replicas: int = 1) -> LocalCluster:
    """`primaries` primaries with `replicas` replicas each on free loopback ports, joined and
    ok; the caller stops it. The kernel kills the nodes if the test run dies first."""
    return LocalCluster(
        primaries=primaries,
        replicas=replicas,
        node_timeout_ms=NODE_TIMEOUT_MS,
        die_with_parent=True,
    ).start()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """One cluster for the whole run, shared by the tests that request it; a test that kills
    nodes starts its own with `start_local_cluster` instead."""
    cluster = start_local_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
