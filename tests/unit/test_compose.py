"""docker-compose.yml's `cluster` profile, checked as data (docker compose is not needed):
six Redis nodes in cluster mode joined by a one-shot init, beside the queue's single Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    found: dict[str, Any] = document["services"]
    return found


def test_the_cluster_profile_has_six_cluster_nodes_and_an_init() -> None:
    all_services = services()
    in_profile = {
        name for name, svc in all_services.items() if "cluster" in svc.get("profiles", [])
    }
    nodes = sorted(name for name in in_profile if name.startswith("redis-node-"))
    assert nodes == [f"redis-node-{i}" for i in range(1, 7)]
    assert in_profile == {*nodes, "redis-cluster-init"}
    addresses = []
    for name in nodes:
        node = all_services[name]
        command = node["command"]
        assert command[0] == "redis-server"
        assert command[command.index("--cluster-enabled") + 1] == "yes"
        assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
        assert node["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
        [address] = [net["ipv4_address"] for net in node["networks"].values()]
        addresses.append(address)
    assert len(set(addresses)) == 6
    init = all_services["redis-cluster-init"]
    script = " ".join(init["command"])
    assert "--cluster-replicas 1" in script
    for address in addresses:
        assert f"{address}:6379" in script
    assert set(init["depends_on"]) == set(nodes)


def test_the_default_stack_is_unchanged_by_the_profile() -> None:
    """Without `--profile cluster` only the queue's single Redis, the API and the worker run."""
    default = {name for name, svc in services().items() if not svc.get("profiles")}
    assert default == {"redis", "api", "worker"}
    assert "--cluster-enabled" not in services()["redis"]["command"]
