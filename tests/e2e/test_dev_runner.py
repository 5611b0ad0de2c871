"""The dev runner's process model (`hosted-sessions dev`, what `make run` starts): however it
is stopped (SIGTERM, Ctrl-C, SIGKILL of its process group), its API, worker and embedded Redis
go with it within seconds and free the port; and it refuses to start on a port in use.

Each stack runs in its own session (process group), as `make run` does in a terminal, on a
free port with its own embedded Redis (REDIS_URL points at a loopback port where nothing
listens), so the machine's Redis is not touched and the embedded server's fate is checked too."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from shared.config import Settings
from tests.processes import free_port

pytestmark = pytest.mark.e2e

READY_TIMEOUT_S = 45  # 2 shared cores: three Python processes import the app side by side
# A stop is bounded: 10 s of grace for the API and worker, then SIGKILL (services/cli.py).
# A normal stop takes about half a second.
STOP_BOUND_S = 15
KILL_BOUND_S = 5  # the kernel signals the children when the runner dies: no grace period


class DevStack:
    """A `hosted-sessions dev` (or `make run`-like) process tree started for one test."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.base_url = f"http://127.0.0.1:{port}"
        # Every pid `tree` found: an orphan is no longer a descendant, but still ours to kill.
        self.seen: dict[int, list[str]] = {}

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert self.proc.poll() is None, self.log_tail()
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "stack did not become ready\n" + self.log_tail()
            time.sleep(0.05)

    def runner_pid(self) -> int:
        """The `services.cli dev` process (the started process itself, or make's child)."""
        for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
            if _cmdline(pid)[-2:] == ["services.cli", "dev"]:
                return pid
        raise AssertionError("no dev runner process\n" + self.log_tail())

    def tree(self) -> list[int]:
        """The started process and every descendant, the embedded redis-server included."""
        pids = [self.proc.pid, *_descendants(self.proc.pid)]
        for pid in pids:
            self.seen.setdefault(pid, _cmdline(pid))
        return pids

    def children_started(self) -> bool:
        """The runner has started its API, worker and embedded Redis."""
        return len(_descendants(self.runner_pid())) >= 3


@pytest.fixture
def start_dev(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., DevStack]]:
    started: list[DevStack] = []

    def start(*, via_make: bool = False) -> DevStack:
        n = len(started)
        port = free_port()
        env = {
            **os.environ,
            **settings.to_env(),
            "HS_API_PORT": str(port),
            "HS_DEV_DIR": str(tmp_path / f"dev{n}"),
            # Nothing listens there: the runner starts its own embedded Redis.
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "HS_LOG_JSON": "true",
        }
        argv = [sys.executable, "-m", "services.cli", "dev"]
        if via_make:
            # The recipe `make run` has, with this interpreter: make forwards a SIGTERM to
            # its child, so the runner gets the group's SIGTERM and make's, microseconds apart.
            makefile = tmp_path / f"Makefile{n}"
            makefile.write_text("run:\n\t" + " ".join(argv) + "\n")
            argv = ["make", "--no-print-directory", "-f", str(makefile), "run"]
        log_path = tmp_path / f"dev{n}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, as in a terminal
            )
        stack = DevStack(proc, port, log_path)
        started.append(stack)
        return stack

    yield start
    # Whatever a failed test left behind is killed by pid, never by name (and only while
    # the pid still runs the same command: it is not reused by someone else's process).
    for stack in started:
        stack.tree()
        for pid, command in stack.seen.items():
            if _alive(pid) and _cmdline(pid) == command:
                os.kill(pid, signal.SIGKILL)
        stack.proc.wait()


def _proc_table() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # The command name (field 2) may hold spaces and parentheses: split after the last ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _descendants(pid: int) -> list[int]:
    table = _proc_table()
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in table.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Running (a zombie has finished: only its exit status waits to be collected)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _assert_all_gone(stack: DevStack, pids: list[int], bound_s: float, what: str) -> float:
    """Wait until none of `pids` runs and the port is free; returns how long that took."""
    started = time.monotonic()
    while True:
        stack.proc.poll()  # collect the started process itself once it exits
        left = [pid for pid in pids if _alive(pid)]
        if not left and _port_free(stack.port):
            return time.monotonic() - started
        if time.monotonic() - started > bound_s:
            running = {pid: " ".join(_cmdline(pid))[:120] for pid in left}
            raise AssertionError(
                f"{what}: still running after {bound_s} s: {running}; port free: "
                f"{_port_free(stack.port)}\n{stack.log_tail()}"
            )
        time.sleep(0.05)


def _ready_tree(stack: DevStack) -> list[int]:
    stack.wait_ready()
    pids = stack.tree()
    commands = [" ".join(_cmdline(pid)) for pid in pids]
    # The check below must have something to check: API, worker and Redis are all there.
    assert sum("services.cli api" in c for c in commands) == 1, commands
    assert sum("services.cli worker" in c for c in commands) == 1, commands
    assert sum("redis-server" in c for c in commands) == 1, commands
    return pids


def test_sigkill_of_make_run_takes_everything_with_it(start_dev: Callable[..., DevStack]) -> None:
    """What a terminal or supervisor may do: the whole group (make and the runner) dies at
    once, without a chance to stop anything; the kernel takes the runner's children along."""
    stack = start_dev(via_make=True)
    pids = _ready_tree(stack)
    os.killpg(stack.proc.pid, signal.SIGKILL)
    _assert_all_gone(stack, pids, KILL_BOUND_S, "SIGKILL to make's process group")


@pytest.mark.parametrize(
    ("moment", "via_make", "sig"),
    [
        ("children just started", False, signal.SIGTERM),
        ("right after ready", True, signal.SIGTERM),
        ("right after ready", True, signal.SIGINT),  # Ctrl-C in the terminal of `make run`
        ("0.3 s after ready", True, signal.SIGTERM),
        ("1 s after ready", False, signal.SIGTERM),
    ],
)
def test_a_signal_to_the_process_group_always_stops_everything(
    start_dev: Callable[..., DevStack], moment: str, via_make: bool, sig: signal.Signals
) -> None:
    stack = start_dev(via_make=via_make)
    if moment == "children just started":
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not stack.children_started():
            assert time.monotonic() < deadline, stack.log_tail()
            time.sleep(0.01)
        pids = stack.tree()
    else:
        pids = _ready_tree(stack)
        time.sleep({"right after ready": 0.0, "0.3 s after ready": 0.3}.get(moment, 1.0))
    os.killpg(stack.proc.pid, sig)
    _assert_all_gone(stack, pids, STOP_BOUND_S, f"{sig.name} {moment}")
    # A stop asked for is a clean exit (make ends by the signal it got itself).
    assert stack.proc.wait() == (-sig if via_make else 0), stack.log_tail()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_storm_of_signals_still_stops_everything(
    start_dev: Callable[..., DevStack], sig: signal.Signals
) -> None:
    """Ctrl-C pressed again and again, or a supervisor repeating its SIGTERM, while the stack
    shuts down: each new signal arrives while the previous one is being handled."""
    stack = start_dev()
    pids = _ready_tree(stack)
    runner = stack.runner_pid()
    storm_end = time.monotonic() + 1.5
    sent = 0
    while time.monotonic() < storm_end:
        try:
            os.kill(runner, sig)
        except ProcessLookupError:
            break
        sent += 1
        if sent % 50 == 0:
            time.sleep(0.001)
    _assert_all_gone(stack, pids, STOP_BOUND_S, f"{sent} x {sig.name}")
    assert stack.proc.wait() == 0, stack.log_tail()


@pytest.mark.parametrize("listening", [True, False], ids=["answers", "bound"])
def test_dev_refuses_a_port_in_use_before_starting_anything(
    settings: Settings, tmp_path: Path, listening: bool
) -> None:
    """A stale stack (or anything else) on the port: the runner says so and starts nothing,
    instead of starting Redis and a worker and announcing an API it does not serve."""
    dev_dir = tmp_path / "dev"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        if listening:
            taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            **settings.to_env(),
            "HS_API_PORT": str(port),
            "HS_DEV_DIR": str(dev_dir),
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        }
        result = subprocess.run(
            [sys.executable, "-m", "services.cli", "dev"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            start_new_session=True,
        )
    assert result.returncode == 1, result
    assert f"127.0.0.1:{port} is already in use" in result.stderr, result.stderr
    assert "API on" not in result.stdout  # no banner for an API it does not serve
    # Refused before anything was started: no embedded Redis ever ran for it.
    assert not (dev_dir / "redis").exists()
