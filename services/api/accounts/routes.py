"""Merchant account settings (risk thresholds today). Thin: authorise, call the service."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody

from services.api.accounts.schemas import AccountSettingsUpdate, AccountSettingsView, to_view
from services.api.auth.guards import ADMIN_PARAMETERS, principal_of, require_admin
from services.api.body import strict_body
from services.api.errors import ErrorEnvelope
from services.api.lifespan import app_services, core_of
from services.api.routing import get, patch

AnyRequest = Request[Any, Any, Any]

_COMMON_ERRORS = {
    400: "validation_error: malformed body or header, or a threshold outside 1-100, "
    "or a fee outside its range (percent_bps 0-2000, fixed and minimum 0-10000)",
    401: "validation_error: missing or invalid admin token",
    403: "insufficient_scope: the token may not act on this account",
    503: "network_error: the store is briefly unavailable (recoverable)",
}


def _errors(extra: dict[int, str] | None = None) -> dict[int, ResponseSpec]:
    """OpenAPI error responses: status -> which codes answer with it."""
    return {
        status: ResponseSpec(data_container=ErrorEnvelope, description=text)
        for status, text in {**_COMMON_ERRORS, **(extra or {})}.items()
    }


class AccountSettingsController(Controller):
    path = "/v1/account/settings"
    guards = [require_admin]  # noqa: RUF012  (Litestar reads the class attribute)
    parameters = ADMIN_PARAMETERS
    tags = ["account settings (merchant)"]  # noqa: RUF012
    security = [{"BearerAuth": []}]  # noqa: RUF012

    @get("/", summary="Retrieve the account's settings", responses=_errors())
    async def get_settings(
        self,
        request: AnyRequest,
    ) -> AccountSettingsView:
        account = principal_of(request).account_uid
        return to_view(account, await core_of(request).accounts.settings(account))

    @patch(
        "/",
        summary="Update the account's settings (absent fields keep their value)",
        responses=_errors(
            {422: "validation_error: risk.elevated_threshold must stay below highest_threshold"}
        ),
        # Strict like every other body: Litestar's lenient decode took "40" for 40, and its
        # untyped first pass raised (a 500) on invalid UTF-8 and on deep nesting.
        dto=strict_body(AccountSettingsUpdate),
        return_dto=None,
    )
    async def update_settings(
        self,
        request: AnyRequest,
        data: JSONBody[AccountSettingsUpdate],
    ) -> AccountSettingsView:
        account = principal_of(request).account_uid
        services = app_services(request)
        updated = await services.core.accounts.update_settings(account, data)
        # A change made through this process applies to its origin cache at once (others
        # within HS_ORIGIN_CACHE_SECONDS).
        services.origin_cache.forget(account)
        return to_view(account, updated)
