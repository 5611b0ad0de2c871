"""The shopper's fee quote (docs/fees.md): what paying with a method will cost. Thin."""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import msgspec
from litestar import Controller, Request
from litestar.params import JSONBody

from services.api.auth.browser import require_client_secret, session_of
from services.api.body import strict_body
from services.api.lifespan import core_of
from services.api.openapi_errors import BROWSER_ERRORS, error_responses
from services.api.routing import post
from shared.fees.model import FeeQuote
from shared.sessions.model import PaymentMethodType, iso_ms

AnyRequest = Request[Any, Any, Any]


class QuoteFeeParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of POST …/{id}/quote-fee."""

    payment_method_type: PaymentMethodType


class FeeQuoteView(msgspec.Struct, frozen=True, kw_only=True):
    """A fee quote: pass its `id` as confirm's `quote_id` before `expires_at`; confirm then
    charges exactly `total`."""

    object: Literal["fee_quote"] = "fee_quote"
    id: str
    payment_method_type: PaymentMethodType
    amount: int
    fee: int
    total: int
    currency: str
    expires_at: str


def to_quote_view(quote: FeeQuote) -> FeeQuoteView:
    """Explicit converter: only listed fields leave the service."""
    return FeeQuoteView(
        id=quote.id,
        payment_method_type=quote.payment_method_type,
        amount=quote.amount,
        fee=quote.fee,
        total=quote.total,
        currency=quote.currency,
        expires_at=iso_ms(quote.expires_at_ms),
    )


_errors = partial(error_responses, BROWSER_ERRORS)


class FeeQuoteController(Controller):
    path = "/v1/hosted-sessions/{session_id:str}"
    guards = [require_client_secret]  # noqa: RUF012  (Litestar reads the class attribute)
    tags = ["checkout (browser)"]  # noqa: RUF012
    security = [{"BearerAuth": []}]  # noqa: RUF012

    @post(
        "/quote-fee",
        status_code=201,
        summary="Quote the convenience fee for paying with a method (valid a few minutes)",
        opt={"scope": "payment"},
        responses=_errors(
            s400="validation_error: unknown method, or one the session does not allow",
            s403="insufficient_scope (wallet credential) | origin_not_allowed",
            s409="already_confirmed: the session is paid",
        ),
        dto=strict_body(QuoteFeeParams),
        return_dto=None,
    )
    async def quote_fee(self, request: AnyRequest, data: JSONBody[QuoteFeeParams]) -> FeeQuoteView:
        params = data  # decoded strictly, once (services/api/body.py)
        quote = await core_of(request).fees.quote(session_of(request), params.payment_method_type)
        return to_quote_view(quote)
