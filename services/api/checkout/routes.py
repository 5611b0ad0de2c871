"""The shopper's endpoints, authenticated by the session's client secret. Thin."""

from __future__ import annotations

from functools import partial
from typing import Any

from litestar import Controller, Request
from litestar.params import JSONBody

from services.api.auth.browser import fraud_blob_of, require_client_secret, session_of
from services.api.body import strict_body
from services.api.browser_policy import client_ip_of
from services.api.checkout.schemas import CheckoutConfig, ConfirmParams, ConfirmResult, to_config
from services.api.lifespan import core_of
from services.api.openapi_errors import BROWSER_ERRORS, error_responses
from services.api.routing import get, post
from shared.wallet.model import to_method_view

AnyRequest = Request[Any, Any, Any]


_errors = partial(error_responses, BROWSER_ERRORS)


class CheckoutController(Controller):
    path = "/v1/hosted-sessions/{session_id:str}"
    guards = [require_client_secret]  # noqa: RUF012  (Litestar reads the class attribute)
    tags = ["checkout (browser)"]  # noqa: RUF012
    security = [{"BearerAuth": []}]  # noqa: RUF012

    @get(
        "/config",
        summary="The sanitized session config a checkout page renders",
        responses=_errors(),
    )
    async def config(self, request: AnyRequest) -> CheckoutConfig:
        core = core_of(request)
        record = session_of(request)
        saved = []
        if record.customer_id:
            methods = await core.wallet.list(record.account_uid, record.customer_id)
            saved = [to_method_view(m) for m in methods if m.type in record.allowed_methods]
        return to_config(record, core.clock.now_ms(), saved)

    @post(
        "/confirm",
        status_code=200,
        summary="Pay the session (single use on success)",
        opt={"scope": "payment"},
        responses=_errors(
            s400="validation_error: bad payment method or billing details",
            s402="card_declined | expired_card | incorrect_cvc | insufficient_funds",
            s403="insufficient_scope (wallet credential) | challenge_required | origin_not_allowed",
            s409="already_confirmed (paid, or a payment in flight) | duplicate_payment",
            s502="processing_error: the processor failed; retry",
            s503="network_error: the processor did not answer; retry learns the outcome",
        ),
        dto=strict_body(ConfirmParams),
        return_dto=None,
    )
    async def confirm(self, request: AnyRequest, data: JSONBody[ConfirmParams]) -> ConfirmResult:
        params = data  # decoded strictly, once (services/api/body.py)
        return await core_of(request).checkout.confirm(
            session_of(request),
            params,
            client_ip=client_ip_of(request),
            fraud_blob=fraud_blob_of(request),
        )
