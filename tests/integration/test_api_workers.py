"""`hosted-sessions api --workers N`: N API processes serve one port (SO_REUSEPORT), and
all of them stop when the supervisor gets SIGTERM (or when one of them dies)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shared.config import Settings
from tests.logscan import register
from tests.processes import child_env, free_port, stop

WORKERS = 3


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid` (from /proc: no extra dependency)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def accepting_pid(candidates: list[int], server_port: int, client_port: int) -> int | None:
    """Which of `candidates` holds the server side of the connection from `client_port`."""
    owner_inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.split(":")[1], 16) == server_port and (
            int(remote.split(":")[1], 16) == client_port
        ):
            owner_inode = inode
    if owner_inode is None:
        return None
    return next((pid for pid in candidates if owner_inode in socket_inodes(pid)), None)


@contextmanager
def api_workers(
    settings: Settings, log_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    register(log_path)
    env = child_env(settings, {"HS_API_PORT": str(port)})
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "api", "--workers", str(WORKERS)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        # Ready when every process answers: count the distinct ones that accepted so far.
        while len(child_pids(proc.pid)) < WORKERS or not all_ready(proc.pid, port):
            if proc.poll() is not None:
                raise RuntimeError(f"api --workers exited: {log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("api --workers did not become ready")
            time.sleep(0.2)
        yield proc, port
    finally:
        stop(proc)


def all_ready(parent: int, port: int) -> bool:
    """Whether every child listens on `port` (a listening socket in its fd table)."""
    listening = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":  # TCP_LISTEN
            listening.add(fields[9])
    children = child_pids(parent)
    return len(children) == WORKERS and all(socket_inodes(pid) & listening for pid in children)


def served_by(parent: int, port: int) -> tuple[int, int]:
    """One request on a new connection: (status, pid of the process that accepted it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        assert conn.sock is not None
        client_port = conn.sock.getsockname()[1]
        # The connection is still open (keep-alive): its server side names the process.
        pid = accepting_pid(child_pids(parent), port, client_port)
        assert pid is not None, "no API process holds the connection"
        return response.status, pid
    finally:
        conn.close()


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def test_processes_share_the_port_and_all_stop_on_sigterm(
    settings: Settings, tmp_path: Path
) -> None:
    with api_workers(settings, tmp_path / "api.log") as (proc, port):
        children = child_pids(proc.pid)
        assert len(children) == WORKERS
        served = [served_by(proc.pid, port) for _ in range(60)]
        assert {status for status, _ in served} == {200}
        # The kernel spreads connections by their 4-tuple: 60 of them miss one of three
        # processes with a chance of about 3 * (2/3)**60, ~1e-10.
        assert {pid for _, pid in served} == set(children)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert all(gone(pid) for pid in children), [p for p in children if not gone(p)]


def test_a_process_that_dies_stops_the_others(settings: Settings, tmp_path: Path) -> None:
    with api_workers(settings, tmp_path / "api.log") as (proc, _):
        children = child_pids(proc.pid)
        os.kill(children[0], signal.SIGKILL)
        assert proc.wait(timeout=30) != 0
        deadline = time.monotonic() + 15
        while not all(gone(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(gone(pid) for pid in children)


def test_workers_refuse_a_port_in_use(settings: Settings, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "services.cli", "api", "--workers", "2"],
            env=child_env(settings, {"HS_API_PORT": str(port)}),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert "already in use" in result.stderr


@pytest.mark.parametrize("value", ["0", "-2", "x"])
def test_workers_must_be_a_positive_count(value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "api", "--workers", value],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--workers" in result.stderr
