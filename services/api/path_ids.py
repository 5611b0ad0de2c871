"""Every id in a path is checked against its exact shape before any guard, service or key
sees it: a malformed one is an unknown one (404), so an id can never name another key
(`we_…:wd` was the endpoint's delivery index) or reach Redis at all."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from shared.errors import NotFound
from shared.ids import PATH_ID_PATTERNS

# Fixed texts: a malformed id is never echoed back (it is whatever the caller wrote).
_UNKNOWN = {
    "session_id": "No such hosted session",
    "endpoint_id": "No such webhook endpoint",
    "delivery_id": "No such webhook delivery",
    "method_id": "No such saved method for this customer",
}


async def require_well_formed_ids(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """The app's first guard: 404 `validation_error` for a path id of the wrong shape,
    before the credential is even looked at (the shapes are public: docs/architecture.md)."""
    for name, value in connection.path_params.items():
        pattern = PATH_ID_PATTERNS.get(name)
        if pattern is not None and not pattern.fullmatch(value):
            raise NotFound(_UNKNOWN.get(name, "No such object"))
