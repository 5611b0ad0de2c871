"""Route guards: the admin JWT + X-Payment-Account-Uid pair for the merchant endpoints."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.params import HeaderParameter
from litestar.types import ParametersMap

from services.api.auth.admin import AdminPrincipal
from services.api.lifespan import app_services
from services.api.middleware import bind_log_context

ACCOUNT_HEADER = "x-payment-account-uid"

# Declared once, on the merchant controllers (`parameters = ADMIN_PARAMETERS`), for the
# OpenAPI document; `require_admin` reads and checks the header, handlers never do.
ADMIN_PARAMETERS: ParametersMap = {
    "account_uid": HeaderParameter(
        name=ACCOUNT_HEADER, annotation=str, description="The acting account"
    )
}


async def require_admin(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Authenticate before the body is even parsed, so 401/403 win over 400."""
    principal = await app_services(connection).admin_auth.authenticate(
        connection.headers.get("authorization"), connection.headers.get(ACCOUNT_HEADER)
    )
    # The scope's state dict itself: `connection.state` builds a State object per access.
    connection.scope["state"]["principal"] = principal
    bind_log_context(account_uid=principal.account_uid)


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> AdminPrincipal:
    principal: AdminPrincipal = connection.scope["state"]["principal"]
    return principal
