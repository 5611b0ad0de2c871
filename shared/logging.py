"""structlog set-up: JSON lines off a TTY, correlation ids from a context var, PII scrubbed."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

import msgspec
import structlog

from shared.config import Settings

# Keys whose values never reach a log line, whoever passes them (defence in depth: the code
# does not log them in the first place).
_REDACTED_KEYS = frozenset(
    {
        "authorization",
        "client_secret",
        "secret",
        "token",
        "password",
        "email",
        "customer_email",
        "phone",
        "fraud_signals",
        "ip_address",
        "user_agent",
        "card",
        "card_number",
        "number",
        "cvc",
        "body",
    }
)


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in event.keys() & _REDACTED_KEYS:
        event[key] = "[redacted]"
    return event


# "YYYY-MM-DDTHH:MM:SS" of the current second: structlog's TimeStamper builds a datetime and
# formats it for every line (~3 % of a create's CPU); the text changes once a second.
_second: list[Any] = [-1, ""]


def _timestamp(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """`timestamp` as structlog's TimeStamper(fmt="iso", utc=True) writes it (microseconds)."""
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second[0] = second
    event["timestamp"] = f"{_second[1]}.{int((now - second) * 1_000_000):06d}Z"
    return event


# The log context of the running request, job or loop: one ContextVar holding a dict that
# is never mutated, only replaced (asyncio tasks inherit it as they inherit any context
# var). structlog's own contextvars keep a var per key and merge by walking the whole
# context on every line (~4 % of a config read's CPU with its bind and clear calls).
_NO_CONTEXT: Mapping[str, Any] = MappingProxyType({})
_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar("hs_log_context", default=_NO_CONTEXT)


def bind_log_context(**values: Any) -> None:
    """Add fields to every log line of the current context (request, job or loop) from now."""
    _CONTEXT.set({**_CONTEXT.get(), **values})


def clear_log_context(**values: Any) -> None:
    """Start a fresh log context (with these fields): at the start and end of each unit."""
    _CONTEXT.set(values)


def _merge_context(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # As structlog's merge_contextvars: a line's own fields win over the context's.
    for key, value in _CONTEXT.get().items():
        event.setdefault(key, value)
    return event


def _json_line(event: Any, **_: Any) -> str:
    # msgspec instead of json.dumps (a canonical line per request); what it cannot encode is
    # written as its repr, as structlog's own fallback does.
    return msgspec.json.encode(event, enc_hook=repr).decode()


def configure_logging(settings: Settings) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    level = logging.getLevelName(settings.log_level.upper())
    as_json = settings.log_json if settings.log_json is not None else not sys.stdout.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_line)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            _merge_context,
            structlog.processors.add_log_level,
            _timestamp,
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # WriteLogger: one write + flush per line, without print()'s overhead.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    # Libraries (arq, uvicorn) log through the stdlib: same stream, same level.
    logging.basicConfig(stream=sys.stdout, level=level, format="%(name)s %(levelname)s %(message)s")
