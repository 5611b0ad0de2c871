"""structlog set-up: JSON lines off a TTY, correlation ids from a context var, PII scrubbed."""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, TextIO

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


def redact(event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of every key in `_REDACTED_KEYS`: the one redaction of every line."""
    if not _REDACTED_KEYS.isdisjoint(event):
        for key in event.keys() & _REDACTED_KEYS:
            event[key] = "[redacted]"
    return event


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return redact(event)


# "YYYY-MM-DDTHH:MM:SS" of the current second: structlog's TimeStamper builds a datetime and
# formats it for every line (docs/performance.md); the text changes once a second.
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
# context on every line (measured in docs/performance.md), so our hot paths bind here.
_NO_CONTEXT: Mapping[str, Any] = MappingProxyType({})
_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar("hs_log_context", default=_NO_CONTEXT)

# What `structlog.contextvars.bind_contextvars` binds, as structlog documents it, is merged
# too: structlog keeps one ContextVar per key ever bound in this registry (private, but
# structlog is pinned exactly and tests/unit/test_log_lines.py breaks if it moves). Empty
# (nobody bound through structlog) costs a line one truth test instead of a context walk.
_STRUCTLOG_VARS: dict[str, ContextVar[Any]] = structlog.contextvars._CONTEXT_VARS
_STRUCTLOG_PREFIX_LEN = structlog.contextvars.STRUCTLOG_KEY_PREFIX_LEN


def bind_log_context(**values: Any) -> None:
    """Add fields to every log line of the current context (request, job or loop) from now."""
    _CONTEXT.set({**_CONTEXT.get(), **values})
    if _STRUCTLOG_VARS:
        # The last bind of a key wins, whichever way it was bound.
        structlog.contextvars.unbind_contextvars(*values)


def clear_log_context(**values: Any) -> None:
    """Start a fresh log context (with these fields): at the start and end of each unit.
    Also clears what was bound through `structlog.contextvars`."""
    _CONTEXT.set(values)
    if _STRUCTLOG_VARS:
        for var in list(_STRUCTLOG_VARS.values()):
            if var.get() is not Ellipsis:
                var.set(Ellipsis)


def merge_log_context(event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Add the context's fields to a line; its own fields win (as structlog's
    merge_contextvars). Fields bound through structlog come first: a bind of ours drops the
    same key from structlog's, so either order of binding ends with the last one."""
    if _STRUCTLOG_VARS:
        for name, var in list(_STRUCTLOG_VARS.items()):
            value = var.get()
            if value is not Ellipsis:
                event.setdefault(name[_STRUCTLOG_PREFIX_LEN:], value)
    for key, value in _CONTEXT.get().items():
        event.setdefault(key, value)
    return event


def _merge_context(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return merge_log_context(event)


_format_exc_info = structlog.processors.format_exc_info
# As structlog's add_log_level names them.
_LEVEL_NAMES = {"warn": "warning", "exception": "error"}


def _render_json(logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
    """The JSON line's whole chain in one processor: context, level, timestamp, redaction,
    exception text, encoding. The same line as the chain of `_PROCESSORS` + a JSONRenderer,
    with one call per line instead of six (docs/performance.md)."""
    merge_log_context(event)
    event["level"] = _LEVEL_NAMES.get(method, method)
    _timestamp(logger, method, event)
    redact(event)
    if "exc_info" in event:
        event = _format_exc_info(logger, method, event)
    # msgspec instead of json.dumps; what it cannot encode is written as its repr, as
    # structlog's own fallback does.
    return msgspec.json.encode(event, enc_hook=repr).decode()


# The JSON line's renderer, for a caller that configures structlog itself (the tests' in-process
# app writes its lines at once to the test's captured stdout).
render_json_line = _render_json


class TurnWriter:
    """Writes the log lines of one event-loop turn with one write and flush.

    A server logs a line per request (a worker one per scored session): a write and a flush
    each would be a syscall per line (docs/performance.md). Lines logged while a loop runs
    are kept until the end of the turn (`call_soon`), so what reaches the file is the same
    lines in the same order, microseconds later; at most `MAX_LINES` wait, and whatever
    waits is written at exit. Outside a running loop a line is written at once (a library's
    thread logs so too: a flush takes the lines under a lock, and a list append is atomic,
    so no line is lost or written twice)."""

    MAX_LINES = 256

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self._lines: list[str] = []
        self._flushing = threading.Lock()
        atexit.register(self.flush)

    def write_line(self, line: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            self._lines.append(line)
            self.flush()
            return
        if not self._lines:
            loop.call_soon(self.flush)
        self._lines.append(line)
        if len(self._lines) >= self.MAX_LINES:
            self.flush()

    def flush(self) -> None:
        """Write what waits (tests call it before reading what was logged)."""
        with self._flushing:
            lines = self._lines
            count = len(lines)
            if not count or self._file.closed:
                return
            text = "\n".join(lines[:count]) + "\n"
            del lines[:count]  # what another thread appended meanwhile stays for the next
            self._file.write(text)
            self._file.flush()


class _LineLogger:
    """structlog's logger end: every level goes to the writer as one line."""

    def __init__(self, writer: TurnWriter) -> None:
        self._writer = writer

    def msg(self, message: str) -> None:
        self._writer.write_line(message)

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg


_WRITERS: dict[int, TurnWriter] = {}
# Where `info_line` writes JSON lines directly; None: through structlog (console output, or
# a level above info). Set by configure_logging.
_DIRECT: list[TurnWriter | None] = [None]


def info_line(logger_name: str, event: str, **fields: Any) -> None:
    """An info line of a hot path (the API's line per request, the scorer's per session): the
    line `structlog.get_logger(logger_name).info(event, ...)` writes (`_render_json`), without
    structlog's per-call steps (bound-logger dispatch, a copy of its context, the processor
    loop), most of a line's cost (docs/performance.md)."""
    writer = _DIRECT[0]
    if writer is None:
        structlog.get_logger(logger_name).info(event, **fields)
        return
    fields["event"] = event
    writer.write_line(_render_json(None, "info", fields))


def flush_log_lines() -> None:
    """Write every line still waiting for the end of its loop turn."""
    for writer in list(_WRITERS.values()):
        writer.flush()


class StdlibLines(logging.Handler):
    """The stdlib's records (uvicorn, arq, redis, asyncio, httpx, warnings) as the lines our
    own code writes: the same renderer, context, redaction and stream, in the same order."""

    def __init__(self, writer: TurnWriter, render: Callable[[str, dict[str, Any]], str]) -> None:
        super().__init__()
        self._writer = writer
        self._render = render

    def emit(self, record: logging.LogRecord) -> None:
        try:
            event: dict[str, Any] = {"event": record.getMessage(), "logger": record.name}
            if record.exc_info:
                event["exc_info"] = record.exc_info
            if record.stack_info:
                event["stack"] = record.stack_info
            self._writer.write_line(self._render(record.levelname.lower(), event))
        except Exception:  # the stdlib's contract: a handler reports its own failure
            self.handleError(record)


def configure_logging(settings: Settings) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    level = logging.getLevelName(settings.log_level.upper())
    flush_log_lines()  # lines of an earlier configuration go where they were meant to
    writer = _WRITERS.get(id(sys.stdout))
    if writer is None or writer._file is not sys.stdout:
        writer = _WRITERS[id(sys.stdout)] = TurnWriter(sys.stdout)
    logger = _LineLogger(writer)
    as_json = settings.log_json if settings.log_json is not None else not sys.stdout.isatty()
    _DIRECT[0] = writer if as_json and level <= logging.INFO else None
    processors: list[Any] = (
        [_render_json]
        if as_json
        else [
            _merge_context,
            structlog.processors.add_log_level,
            _timestamp,
            _redact,
            _format_exc_info,
            structlog.dev.ConsoleRenderer(colors=False),
        ]
    )

    def render(method: str, event: dict[str, Any]) -> str:
        line: Any = event
        for processor in processors:
            line = processor(None, method, line)
        return str(line)

    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_: logger,
        cache_logger_on_first_use=True,
    )
    # Libraries log through the stdlib: the same lines on the same stream, at the same level.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StdlibLines)]:
        root.removeHandler(handler)
    root.addHandler(StdlibLines(writer, render))
    root.setLevel(level)
    logging.captureWarnings(True)  # `warnings.warn` of a library: a line too, not stderr text
