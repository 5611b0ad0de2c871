"""Shared fixtures: a real Redis (the machine's, else an embedded one), own key prefixes."""

from __future__ import annotations

import base64
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from shared.config import Settings
from shared.devkeys import DevKeys, ensure_dev_keys, mint_admin_token
from shared.logging import StdlibLines, render_json_line
from shared.redis.embedded import EmbeddedRedis, redis_reachable
from tests import logscan
from tests.support import ACCOUNT
from tests.support.cluster import redis_cluster  # noqa: F401  # a fixture: importing registers it


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The machine's Redis when it answers (database 0 left alone: tests use 9), else an
    embedded server started for the run."""
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9")
    if redis_reachable(base):
        yield base
        return
    with EmbeddedRedis() as embedded:
        yield embedded.url


@pytest.fixture(scope="session")
def dev_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[DevKeys, Path]:
    return ensure_dev_keys(tmp_path_factory.mktemp("devkeys"))


@pytest.fixture
def key_prefix() -> str:
    """Every test writes under its own prefix, so runs never collide or flush others' data."""
    return "t" + secrets.token_hex(4)


@pytest.fixture
def settings(redis_url: str, dev_keys: tuple[DevKeys, Path], key_prefix: str) -> Settings:
    return Settings(
        env="test",
        redis_url=redis_url,
        key_prefix=key_prefix,
        data_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        jwks_file=str(dev_keys[1]),
        jwt_issuer="hosted-sessions-test",
        log_json=True,
    )


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    """A raw client for assertions."""
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
def _delete_own_keys(redis_url: str, key_prefix: str) -> Iterator[None]:
    """After each test, delete the keys under its prefix (and its arq jobs), nothing else."""
    yield
    client = SyncRedis.from_url(redis_url)
    try:
        for pattern in (f"{key_prefix}:*", f"arq:*{key_prefix}:*"):
            for key in client.scan_iter(match=pattern, count=1000):
                client.delete(key)
    finally:
        client.close()


@pytest.fixture
def token_for(dev_keys: tuple[DevKeys, Path], settings: Settings) -> Callable[..., str]:
    def mint(*accounts: str, groups: tuple[str, ...] | None = None, **kwargs: Any) -> str:
        return mint_admin_token(
            dev_keys[0],
            issuer=settings.jwt_issuer,
            account_uids=list(accounts),
            groups=list(groups if groups is not None else (settings.jwt_admin_group,)),
            **kwargs,
        )

    return mint


@pytest.fixture
def admin_headers(token_for: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(ACCOUNT)}", "X-Payment-Account-Uid": ACCOUNT}


@pytest.fixture(autouse=True)
def _logging_as_a_process() -> None:
    """The in-process app's lines as the API process renders them (JSON, redaction, a
    traceback as plain text), written at once to whatever stdout the test's capture holds.
    Left unconfigured, structlog's development default renders an exception with rich's frame
    locals: a failing request's body, PII included, in the captured output. Set before every
    test: a test that calls `structlog.reset_defaults()` brings that default back."""
    structlog.configure(
        processors=[render_json_line],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=False,
    )


@pytest.fixture(autouse=True)
def _stdlib_logging_restored() -> Iterator[None]:
    """A test that calls configure_logging gives the root logger a handler writing to that
    test's captured stdout, and its level: both are undone after the test."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if isinstance(h, StdlibLines)]:
        root.removeHandler(handler)
    root.setLevel(level)


# --- the log scan (tests/logscan.py): every log a test's child process wrote, and every
# test's captured output (the in-process app logs through structlog to stdout), is scanned
# for secrets and PII when the run ends; a finding fails the run with its file and line.
_CAPTURED_HITS: list[logscan.Hit] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, content in report.sections:
        if name.startswith("Captured"):
            _CAPTURED_HITS.extend(logscan.scan_text(content, f"{report.nodeid} [{name}]"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    hits = _CAPTURED_HITS + logscan.scan_paths(logscan.LOG_PATHS)
    if not hits:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"log scan: {len(hits)} secret(s) or PII found in logs", *(f"  {h}" for h in hits)]
    if reporter is not None:
        reporter.write_sep("=", "log scan", red=True)
        for line in lines:
            reporter.write_line(line)
    else:
        print("\n".join(lines))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
