"""The OpenAPI error responses each endpoint declares: status -> which codes answer it."""

from __future__ import annotations

from collections.abc import Mapping

from litestar.openapi.datastructures import ResponseSpec

from services.api.errors import ErrorEnvelope

ADMIN_ERRORS: Mapping[int, str] = {
    400: "validation_error: malformed input or header (the message names the field)",
    401: "validation_error: missing or invalid admin token",
    403: "insufficient_scope: the token may not act on this account",
    503: "network_error: the store is briefly unavailable (recoverable)",
}
# What an Idempotency-Key adds to a merchant POST (services/api/idempotency.py).
IDEMPOTENCY_IN_FLIGHT = "validation_error: the first request with this Idempotency-Key is in flight"
IDEMPOTENCY_REUSED = "validation_error: Idempotency-Key reused with another request"
BROWSER_ERRORS: Mapping[int, str] = {
    401: "validation_error: missing or wrong client secret for this session",
    403: "origin_not_allowed: the calling origin is not allowed",
    # Checked before the credential (services/api/path_ids.py).
    404: "validation_error: the path's session id is not one (cs_ + 16 base62 characters)",
    410: "session_expired: the session has expired",
    429: "rate_limited: too many calls (see Retry-After)",
}


def error_responses(common: Mapping[int, str], **codes: str) -> dict[int, ResponseSpec]:
    """`common` plus per-endpoint statuses given as `s409="already_confirmed: …"`."""
    merged = {**common, **{int(k.removeprefix("s")): v for k, v in codes.items()}}
    return {
        status: ResponseSpec(data_container=ErrorEnvelope, description=text)
        for status, text in sorted(merged.items())
    }
