"""The HTTP server's protocol: uvicorn's httptools one, with limits on the request head.

httptools (llhttp) has no limit of its own on the head: it would buffer one endless header
line, or a million headers, until memory runs out, and uvicorn's `h11_max_incomplete_event_size`
applies to h11 only. Checking in an ASGI middleware would come too late (the server has
already read and kept the whole head by then). So the limits are enforced here, while the
head is parsed: a head over `max_header_count` headers or `max_header_bytes` bytes (request
target and header lines) gets a 431 error envelope and the connection is closed, before the
app sees anything. Requests the parser rejects as malformed get a 400 envelope instead of
uvicorn's plain text."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
import structlog
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from services.api.errors import ErrorEnvelope
from shared.config import Settings
from shared.ids import new_request_id

log = structlog.get_logger(__name__)

_ENCODER = msgspec.json.Encoder()


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop parsing a head over the limits."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header count and size limits (see the module doc).
    Built per settings by `protocol_for`; uvicorn constructs one per connection."""

    max_header_count: ClassVar[int] = 100
    max_header_bytes: ClassVar[int] = 16_384

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = False  # between a request's first byte and the end of its headers
        self._began = False  # a request began in the read being parsed
        self._read = 0  # bytes of the read being parsed
        # Of the reads fed while the current head was open (all of them, the one it began in
        # too: at least the head's size) and of those after the one it began in (at most).
        self._head_reads = 0
        self._head_later = 0
        self._refusal: str | None = None

    # Checked per read and once per head, not per header: a Python callback per header
    # would run a dozen times a request (its cost: docs/performance.md).

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # answered and closing: nothing more is parsed
        self._read = len(data)
        self._began = False
        head_was_open = self._in_head
        super().data_received(data)
        if self._refusal is None and self._in_head:
            self._head_reads += self._read
            if head_was_open and not self._began:
                # A header line still pending (httptools keeps it until its end): an
                # endless line or endless headers are cut off within a read of the limit.
                self._head_later += self._read
                if self._head_later > self.max_header_bytes:
                    self._refusal = "header_bytes"
                    self.send_400_response("")

    def on_message_begin(self) -> None:
        self._in_head = self._began = True
        self._head_reads = self._head_later = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if len(self.headers) > self.max_header_count:
            self._refuse("header_count")
        # The head is no larger than the reads fed while it was open, this one included:
        # only a large head, or one in a large read, costs the exact sum.
        if self._head_reads + self._read > self.max_header_bytes and self._head_size() > (
            self.max_header_bytes
        ):
            self._refuse("header_bytes")
        self._in_head = False
        super().on_headers_complete()

    def _head_size(self) -> int:
        # The request target and each header line's name, ": ", value and CRLF.
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _refuse(self, reason: str) -> None:
        self._refusal = reason
        # httptools turns this into HttpParserCallbackError; uvicorn's data_received catches
        # it and calls send_400_response, which answers 431 for a refusal.
        raise _HeadTooLarge(reason)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request its parser refused: the error envelope instead of
        plain text, 431 when the head broke our limits."""
        if self._refusal is not None:
            status, message = 431, "Request headers too large or too many"
        else:
            status, message = 400, "The request is malformed"
        request_id = new_request_id()
        reason = self._refusal or "malformed"
        log.warning("request.refused", reason=reason, status=status, request_id=request_id)
        body = _ENCODER.encode(
            ErrorEnvelope(
                code="validation_error", message=message, recoverable=False, request_id=request_id
            )
        )
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"x-request-id: " + request_id.encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()


def protocol_for(settings: Settings) -> type[LimitedHttpToolsProtocol]:
    """The protocol class uvicorn should build connections with, for these settings."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {
            "max_header_count": settings.max_header_count,
            "max_header_bytes": settings.max_header_bytes,
        },
    )
