"""A JSON log line as configure_logging renders it (shared/logging.py, `_render_json`): the
context's fields under the line's own, the level by structlog's names, a UTC timestamp,
redacted keys, an exception's traceback as text."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from shared.config import Settings
from shared.logging import (
    bind_log_context,
    clear_log_context,
    configure_logging,
    flush_log_lines,
    info_line,
)


@pytest.fixture(autouse=True)
def _fresh_context() -> Iterator[None]:
    yield
    clear_log_context()
    structlog.contextvars.clear_contextvars()


def _start() -> Any:
    """Logging as a process configures it, onto this test's captured stdout; called in the
    test body (pytest swaps the capture between phases)."""
    configure_logging(Settings(log_json=True, log_level="debug"))
    # Loggers cached on first use would keep this test's captured stdout (test_logging_pii).
    structlog.configure(cache_logger_on_first_use=False)
    return structlog.get_logger("t")


def _read(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    flush_log_lines()
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_a_line_carries_its_context_level_and_timestamp(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = _start()
    clear_log_context(request_id="req_1", session_id="cs_context")
    bind_log_context(extra=1)
    log.info("hello", session_id="cs_own", n=2)
    log.warn("careful")
    (hello, careful) = _read(capsys)
    assert hello["event"] == "hello"
    assert hello["level"] == "info"
    assert hello["request_id"] == "req_1"
    assert hello["extra"] == 1
    assert hello["session_id"] == "cs_own"  # the line's own field wins
    assert hello["n"] == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", hello["timestamp"])
    assert careful["level"] == "warning"


def test_secrets_and_pii_are_redacted_and_exceptions_are_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = _start()
    clear_log_context(client_secret="cs_1_secret_abc")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed", customer_email="a@example.com", card_number="4242424242424242")
    (line,) = _read(capsys)
    assert line["level"] == "error"
    assert line["client_secret"] == "[redacted]"
    assert line["customer_email"] == "[redacted]"
    assert line["card_number"] == "[redacted]"
    assert "ValueError: boom" in line["exception"]
    assert "exc_info" not in line
    assert "4242424242424242" not in json.dumps(line)


def test_a_request_line_is_the_line_structlog_writes(capsys: pytest.CaptureFixture[str]) -> None:
    log = _start()
    clear_log_context(request_id="req_1", account_uid="acct_1")
    fields = {"method": "POST", "path": "/v1/x", "status": 201, "duration_ms": 1.5}
    info_line("t", "request", **fields)
    log.info("request", **fields)
    direct, through_structlog = _read(capsys)
    assert direct.pop("timestamp")
    assert through_structlog.pop("timestamp")
    assert direct == through_structlog
    assert list(direct) == list(through_structlog)  # the same order of fields
    assert direct["request_id"] == "req_1"
    assert direct["level"] == "info"


def test_request_lines_follow_the_level_and_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(log_json=True, log_level="warning"))
    structlog.configure(cache_logger_on_first_use=False)
    info_line("t", "request", method="GET", path="/", status=200, duration_ms=0.1)
    assert _read(capsys) == []
    configure_logging(Settings(log_json=False, log_level="info"))
    structlog.configure(cache_logger_on_first_use=False)
    info_line("t", "request", method="GET", path="/", status=200, email="a@example.com")
    flush_log_lines()
    text = capsys.readouterr().out
    assert "request" in text
    assert "a@example.com" not in text


def test_fields_bound_through_structlog_reach_every_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """structlog's documented way to bind (`structlog.contextvars`) and ours are one context:
    both reach structlog's lines and the direct request line; the last bind of a key wins."""
    log = _start()
    clear_log_context(request_id="req_1", session_id="cs_ours")
    structlog.contextvars.bind_contextvars(tenant="t_1", session_id="cs_structlog")
    log.info("one")
    info_line("t", "request", status=200)
    bind_log_context(session_id="cs_ours_again")
    log.info("two")
    structlog.contextvars.unbind_contextvars("tenant")
    log.info("three")
    one, request, two, three = _read(capsys)
    for line in (one, request):
        assert line["request_id"] == "req_1"
        assert line["tenant"] == "t_1"
        assert line["session_id"] == "cs_structlog"
    assert two["tenant"] == "t_1"
    assert two["session_id"] == "cs_ours_again"
    assert "tenant" not in three


def test_a_fresh_context_drops_what_was_bound_through_structlog(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = _start()
    structlog.contextvars.bind_contextvars(tenant="t_1", email="a@example.com")
    log.info("bound")
    clear_log_context(request_id="req_2")
    log.info("fresh")
    bound, fresh = _read(capsys)
    assert bound["tenant"] == "t_1"
    assert bound["email"] == "[redacted]"  # redacted wherever it was bound
    assert fresh == {
        "event": "fresh",
        "request_id": "req_2",
        "level": "info",
        "timestamp": fresh["timestamp"],
    }


def test_stdlib_logging_comes_out_as_the_same_json_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Libraries that log through the stdlib (uvicorn, arq, redis, asyncio) write the lines
    our own code writes: the context, the level, a traceback as text, redaction."""
    _start()
    clear_log_context(request_id="req_3")
    library = logging.getLogger("some.library")
    library.info("connected to %s:%d", "127.0.0.1", 6379)
    try:
        raise ValueError("boom")
    except ValueError:
        library.exception("failed")
    logging.getLogger("some.library").debug("details")
    connected, failed, details = _read(capsys)
    assert connected["event"] == "connected to 127.0.0.1:6379"
    assert connected["logger"] == "some.library"
    assert connected["level"] == "info"
    assert connected["request_id"] == "req_3"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", connected["timestamp"])
    assert failed["level"] == "error"
    assert "ValueError: boom" in failed["exception"]
    assert details["level"] == "debug"
