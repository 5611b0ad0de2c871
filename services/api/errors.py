"""Every failure leaves as `{code, message, recoverable, request_id}` with the right status."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.errors import ErrorCode, ServiceError, ValidationFailed

T = TypeVar("T")

log = structlog.get_logger(__name__)


class ErrorEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    code: ErrorCode
    message: str
    recoverable: bool
    request_id: str


_GENERIC_MESSAGES = {
    400: "The request is malformed",
    401: "Missing or invalid credential",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed on this path",
    413: "Request body too large",
    415: "Content-Type must be application/json",
}
_FIELD_PREFIX = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*): ")


def request_id_of(request: Request[Any, Any, Any]) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def _render(
    request: Request[Any, Any, Any],
    code: ErrorCode,
    status: int,
    message: str,
    recoverable: bool,
    retry_after: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response[ErrorEnvelope]:
    if retry_after is not None:
        headers = {**(headers or {}), "Retry-After": str(retry_after)}
    envelope = ErrorEnvelope(
        code=code, message=message, recoverable=recoverable, request_id=request_id_of(request)
    )
    return Response(envelope, status_code=status, headers=headers)


def _field_message(item: dict[str, Any]) -> str:
    """`branding.accent_color: Expected ...` from msgspec's message and Litestar's key."""
    key = str(item.get("key") or "")
    message = str(item.get("message") or "invalid value")
    if key == "data" and message == "'data'":  # Litestar's word for "no body at all"
        return "A JSON object body is required"
    if key in ("", "data"):
        return message
    nested = _FIELD_PREFIX.match(message)
    if nested:  # a __post_init__ rule that names a field inside `key`
        return f"{key}.{nested.group(1)}: {message[nested.end() :]}"
    return f"{key}: {message}"


_MSGSPEC_PATH = re.compile(r" - at `\$\.?([^`]*)`$")


def decode_strict(raw: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode a body strictly (no "14650" for 14650); errors name the field, like Litestar's."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _MSGSPEC_PATH.search(text)
        key = match.group(1) if match else ""
        message = text[: match.start()] if match else text
        raise ValidationFailed(_field_message({"key": key, "message": message})) from None
    except msgspec.DecodeError:
        raise ValidationFailed("The request body is not valid JSON") from None
    except UnicodeDecodeError:
        # msgspec checks a string's UTF-8 only when it builds the str, and raises Python's
        # error, not a DecodeError: a byte like 0xff in a key or value ended as a 500.
        raise ValidationFailed("The request body is not valid UTF-8") from None
    except RecursionError:
        # msgspec's own depth guard. A typed decode refuses the first token of the wrong type
        # long before, so only a free-form (`Any`) field could get here; kept as a 400 anyway.
        raise ValidationFailed("The request body is nested too deeply") from None


def error_body(request: Request[Any, Any, Any], exc: ServiceError) -> bytes:
    """The JSON body `service_error_handler` sends for `exc` (what an idempotent replay of
    the error sends again)."""
    return msgspec.json.encode(
        ErrorEnvelope(
            code=exc.code,
            message=exc.message,
            recoverable=exc.recoverable,
            request_id=request_id_of(request),
        )
    )


def service_error_handler(
    request: Request[Any, Any, Any], exc: ServiceError
) -> Response[ErrorEnvelope]:
    return _render(request, exc.code, exc.status, exc.message, exc.recoverable, exc.retry_after)


def validation_handler(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[ErrorEnvelope]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    messages = [_field_message(item) for item in extra if isinstance(item, dict)]
    message = "; ".join(messages) if messages else _GENERIC_MESSAGES[400]
    return _render(request, "validation_error", 400, message, False)


def http_error_handler(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[ErrorEnvelope]:
    status = exc.status_code
    if status >= 500:
        return unexpected_error_handler(request, exc)
    # A bare 400 from the framework is a body it could not parse (bad fields are
    # ValidationException, handled above).
    message = (
        "The request body is not valid JSON"
        if status == 400
        else _GENERIC_MESSAGES.get(status, "The request cannot be served")
    )
    # The framework's own headers stay: a 405 must list the path's methods in `Allow` (RFC 9110).
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() == "allow"}
    return _render(request, "validation_error", status, message, False, headers=headers or None)


def unexpected_error_handler(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[ErrorEnvelope]:
    # Redis down, hung past its deadline, killed our connection or still loading its data
    # (BusyLoadingError is a ConnectionError): a retry soon may work, never a 500.
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        log.warning("redis.unavailable", error=type(exc).__name__)
        return _render(
            request, "network_error", 503, "The service is briefly unavailable; retry", True, 1
        )
    log.exception("request.unhandled", error=type(exc).__name__)
    return _render(request, "processing_error", 500, "Internal error; retry later", True)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ServiceError: service_error_handler,
    ValidationException: validation_handler,
    HTTPException: http_error_handler,
    Exception: unexpected_error_handler,
}
