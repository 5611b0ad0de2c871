"""Request id, log context and one canonical log line per request (pure ASGI, cheap)."""

from __future__ import annotations

import re
import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from services.api.metrics import observe
from shared.ids import new_request_id
from shared.logging import bind_log_context as bind_fields
from shared.logging import clear_log_context, info_line

_INCOMING_ID = re.compile(r"^[A-Za-z0-9_.:-]{8,64}$")


def request_context_middleware(app: ASGIApp) -> ASGIApp:
    """Binds a request id (echoed as X-Request-Id) and logs one line when the response ends."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _INCOMING_ID.match(incoming) else new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        clear_log_context(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            method = str(scope.get("method"))
            # Unrouted paths share one label, so scanners cannot blow up the metric's series.
            observe(method, str(scope.get("path_template") or "unrouted"), status, elapsed)
            info_line(
                "request",
                "request",
                method=method,
                path=scope["path"],
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            clear_log_context()

    return middleware


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def bind_log_context(**values: Any) -> None:
    """Add fields to the request's canonical line (and every line after it)."""
    bind_fields(**values)
