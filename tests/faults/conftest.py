"""Fault tests: each test runs its OWN redis-server (free loopback port, own directory) that it
may stop, pause, kill and restart, and real API / worker processes pointed at it. The
machine's Redis is never touched."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from redis import Redis as SyncRedis

from shared.config import Settings
from shared.events.stored import read_stored_event
from shared.redis.embedded import find_redis_server, redis_reachable
from shared.redis.keys import Keys
from tests.processes import free_port
from tests.support import ACCOUNT


class RedisServer:
    """A redis-server subprocess on a fixed port and directory, so it can be SIGKILLed and
    started again on the same data (AOF) and address."""

    def __init__(self, directory: Path, *, appendfsync: str | None = None) -> None:
        self.directory = directory
        self.port = free_port()
        self.appendfsync = appendfsync  # None: no AOF
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [
            find_redis_server(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            "--appendonly", "yes" if self.appendfsync else "no",
        ]  # fmt: skip
        if self.appendfsync:
            argv += ["--appendfsync", self.appendfsync]
        with (self.directory / "redis-server.log").open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while not redis_reachable(self.url, timeout=0.2):
            assert self.process.poll() is None, (self.directory / "redis-server.log").read_text()
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def client(self) -> SyncRedis:
        return SyncRedis.from_url(self.url, socket_timeout=10)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a stopped server cannot act on SIGTERM
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fault_settings(settings: Settings, own_redis: RedisServer) -> Settings:
    return msgspec.structs.replace(settings, redis_url=own_redis.url)


@pytest.fixture
def merchant_headers(token_for: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(ACCOUNT)}", "X-Payment-Account-Uid": ACCOUNT}


def stored_events(client: SyncRedis, prefix: str) -> dict[str, list[str]]:
    """session id -> the types of its events, in stream order, over all partitions."""
    out: dict[str, list[str]] = {}
    for stream in Keys(prefix).all_event_streams():
        entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(stream)  # type: ignore[assignment]  # the sync client's stub says Awaitable too
        for _, fields in entries:
            head, _ = read_stored_event(fields[b"e"])
            out.setdefault(head.session_id, []).append(head.type)
    return out


def assert_error_envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "recoverable", "request_id"}, body
    assert body["code"] == code, body
    return body
