"""Request id, log context and one canonical log line per request (pure ASGI, cheap)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from services.api.metrics import observe
from shared.ids import new_request_id
from shared.logging import bind_log_context as bind_fields
from shared.logging import clear_log_context, info_line

_INCOMING_ID = re.compile(r"^[A-Za-z0-9_.:-]{8,64}$")


def request_context_middleware(app: ASGIApp, *, drain_limit: int = 1_048_576) -> ASGIApp:
    """Binds a request id (echoed as X-Request-Id) and logs one line when the response ends.
    An error answered before the request body was read whole (a 413, a 401 on a POST) first
    reads and drops the rest, up to `drain_limit` bytes, then closes the connection if the
    body did not end: the client can read the answer (see `_drain`)."""

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
        body_read = False

        async def receive_tracked() -> ReceiveMessage:
            nonlocal body_read
            message = await receive()
            # The last body part, or a disconnect (which has no more_body): nothing is left.
            body_read = not message.get("more_body", False)
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                # Error paths only: a success has read its body (or had none).
                if status >= 400 and (
                    not (body_read or await _drain(scope, receive, drain_limit)) or status == 413
                ):
                    # The rest unread: closing is the only way to end the request. After a
                    # 413 nothing of this client's is worth keeping alive either.
                    headers.append((b"connection", b"close"))
                message["headers"] = headers
            await send(message)

        try:
            await app(scope, receive_tracked, send_with_id)
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


# A client trickling its unread body gets this long before the answer goes out regardless.
_DRAIN_SECONDS = 5.0


async def _drain(scope: Scope, receive: Receive, limit: int) -> bool:
    """Read and drop the rest of the request body, up to `limit` bytes; whether it ended.

    A server that answers and closes while the client is still sending makes the kernel
    reset the connection (unread data at close), and a reset can discard the answer before
    the client reads it: a 413 would reach the client as a broken connection."""
    declared: int | None = None
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            declared = int(value)
        elif name == b"expect":
            return False  # 100-continue: the body was never sent (uvicorn asks only on read)
    if declared is not None and declared > limit:
        return False  # not worth reading: answer and close at once
    read = 0
    try:
        async with asyncio.timeout(_DRAIN_SECONDS):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return True  # the client left: nothing to protect
                read += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return True
                if read > limit:
                    return False
    except TimeoutError:
        return False


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def bind_log_context(**values: Any) -> None:
    """Add fields to the request's canonical line (and every line after it)."""
    bind_fields(**values)
