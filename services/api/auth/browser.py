"""Browser calls: `Authorization: Bearer <client_secret>` of the session in the path, its
scope, and the caller's origin."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from services.api.lifespan import AppServices, app_services
from services.api.middleware import bind_log_context
from shared.errors import InsufficientScope, NotAuthenticated, OriginNotAllowed
from shared.sessions.model import SessionRecord

# Scope state key: the guard's origin decision, which the CORS layer reuses for its headers.
ORIGIN_VERDICT = "origin_allowed"


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, lower-cased, default ports dropped ("" when it is
    not a URL at all, which no allowed origin equals)."""
    try:
        parts = urlsplit(url)
        explicit_port = parts.port
    except ValueError:  # a malformed IPv6 host or port in a header anyone can write
        return ""
    host = (parts.hostname or "").lower()
    default = {"http": 80, "https": 443}.get(parts.scheme)
    port = f":{explicit_port}" if explicit_port and explicit_port != default else ""
    return f"{parts.scheme}://{host}{port}"


def session_origins(record: SessionRecord, public_base_url: str) -> set[str]:
    """Origins a session's browser calls may come from without account configuration: the
    checkout's own and the merchant's success/cancel pages."""
    return {origin_of(public_base_url), origin_of(record.success_url), origin_of(record.cancel_url)}


async def origin_allowed(
    services: AppServices, account_uid: str, own_origins: Collection[str], origin: str
) -> bool:
    """Whether a page at `origin` may call a session's browser endpoints: one of the
    session's own origins (`session_origins`), or one its account allows."""
    normalized = origin_of(origin)
    if normalized in own_origins:
        return True
    return normalized in await services.allowed_origins(account_uid)


async def require_client_secret(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Authenticate the client secret for the path's session; enforce scope and origin.

    Route opt `scope="payment"` marks the payment endpoints a wallet credential may not use.
    """
    services = app_services(connection)
    session_id = str(connection.path_params.get("session_id", ""))
    header = connection.headers.get("authorization") or ""
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise NotAuthenticated("Authorization: Bearer <client_secret> is required")
    stored = await services.core.sessions.authenticate_secret(session_id, secret.strip())
    record = stored.record
    bind_log_context(session_id=session_id, account_uid=record.account_uid)
    if handler.opt.get("scope") == "payment" and record.scope != "payment":
        raise InsufficientScope("This credential's scope does not allow payments")
    origin = connection.headers.get("origin")
    if origin is not None:
        own = session_origins(record, services.core.settings.public_base_url)
        allowed = await origin_allowed(services, record.account_uid, own, origin)
        connection.scope["state"][ORIGIN_VERDICT] = allowed
        if not allowed:
            raise OriginNotAllowed("Calls from this origin are not allowed for this checkout")
    # The scope's state dict itself: `connection.state` builds a State object per access.
    state = connection.scope["state"]
    state["session"] = record
    # Read with the record (one string): confirm's timing check needs no second read.
    state["fraud_blob"] = stored.fraud_blob


def session_of(connection: ASGIConnection[Any, Any, Any, Any]) -> SessionRecord:
    record: SessionRecord = connection.scope["state"]["session"]
    return record


def fraud_blob_of(connection: ASGIConnection[Any, Any, Any, Any]) -> bytes | None:
    """The authenticated session's encrypted fraud signals, as the guard read them."""
    blob: bytes | None = connection.scope["state"].get("fraud_blob")
    return blob
