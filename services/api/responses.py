"""The response class of the API's JSON answers: Litestar's `Response`, with a lean ASGI side.

Litestar turns every answer into an `ASGIResponse`: a `MutableScopeHeaders` built header by
header, media-type and cookie handling, a serializer resolved per call. For a plain JSON
body with no extra headers, cookies or background task (nearly every answer of ours) that
was ~15 % of a config read's CPU (py-spy, in-process). `JSONResponse` sends such an answer
as two prepared ASGI messages, with the same bytes Litestar would encode; anything else
(headers, cookies, a background task, another media type, a HEAD request) takes Litestar's
own path unchanged. Set as the app's `response_class`, so routes returning a Struct use it;
routes building a response themselves construct it by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from litestar import Request
from litestar.background_tasks import BackgroundTask, BackgroundTasks
from litestar.datastructures import Cookie
from litestar.enums import MediaType
from litestar.response import Response
from litestar.serialization import default_serializer
from litestar.types import ASGIApp, Receive, Scope, Send, TypeEncodersMap

# Litestar's own JSON encoding (msgspec with its default type hooks): the same bytes.
_ENCODER = msgspec.json.Encoder(enc_hook=default_serializer)
_JSON = MediaType.JSON.value
_CONTENT_TYPE = (b"content-type", _JSON.encode())


class _PreparedAnswer:
    """An ASGI app sending one prepared status, header list and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        self.headers = [_CONTENT_TYPE, (b"content-length", str(len(body)).encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


class JSONResponse(Response[Any]):
    """A JSON answer; plain ones skip Litestar's ASGIResponse (module docstring)."""

    def to_asgi_response(  # type: ignore[override]  # Litestar's returns ASGIResponse; any ASGI app serves
        self,
        app: Any,
        request: Request[Any, Any, Any],
        *,
        background: BackgroundTask | BackgroundTasks | None = None,
        cookies: Iterable[Cookie] | None = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: MediaType | str | None = None,
        status_code: int | None = None,
        type_encoders: TypeEncodersMap | None = None,
    ) -> ASGIApp:
        status = self.status_code or status_code or 200
        media = self.media_type or media_type or _JSON
        plain = not (
            self.background
            or background
            or self.cookies
            or cookies
            or encoded_headers
            or self.headers
            or headers
            or is_head_response
            or type_encoders
            or self.response_type_encoders
            or app is not None
        )
        has_body = status >= 200 and status not in (204, 304)
        if plain and has_body and media in (_JSON, MediaType.JSON):
            content = self.content
            body = content if isinstance(content, bytes) else _ENCODER.encode(content)
            return _PreparedAnswer(status, body)
        return super().to_asgi_response(
            app,
            request,
            background=background,
            cookies=cookies,
            encoded_headers=encoded_headers,
            headers=headers,
            is_head_response=is_head_response,
            media_type=media_type,
            status_code=status_code,
            type_encoders=type_encoders,
        )
