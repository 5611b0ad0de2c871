"""Wallet scope: the session's customer manages saved methods (list, add, delete)."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, PathParameter
from litestar.response import Response

from services.api.auth.browser import require_client_secret, session_of
from services.api.body import strict_body
from services.api.lifespan import core_of
from services.api.openapi_errors import BROWSER_ERRORS, error_responses
from services.api.routing import delete, get, post
from shared.checkout.model import CardInput
from shared.errors import InsufficientScope, NotFound, ValidationFailed
from shared.wallet.model import SavedMethodView, to_method_view

AnyRequest = Request[Any, Any, Any]

_SCOPE = "insufficient_scope: not a wallet credential | origin_not_allowed"
_NO_WALLET = "validation_error: the session has no customer_id (no wallet)"
_errors = partial(error_responses, BROWSER_ERRORS, s403=_SCOPE)


class SavedMethodList(msgspec.Struct, frozen=True, kw_only=True):
    object: str = "list"
    data: list[SavedMethodView]


async def require_wallet_scope(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Saved-method management is the wallet credential's job (the seed's scopes)."""
    record = session_of(connection)
    if record.scope != "wallet":
        raise InsufficientScope("Saved methods are managed with a wallet-scope credential")
    if not record.customer_id:
        raise ValidationFailed("This session has no customer_id: there is no wallet")


class WalletController(Controller):
    path = "/v1/hosted-sessions/{session_id:str}/payment-methods"
    guards = [require_client_secret, require_wallet_scope]  # noqa: RUF012
    tags = ["wallet (browser)"]  # noqa: RUF012
    security = [{"BearerAuth": []}]  # noqa: RUF012

    @get("/", summary="The customer's saved methods", responses=_errors(s400=_NO_WALLET))
    async def list_methods(self, request: AnyRequest) -> SavedMethodList:
        record = session_of(request)
        assert record.customer_id is not None  # the guard checked
        methods = await core_of(request).wallet.list(record.account_uid, record.customer_id)
        return SavedMethodList(data=[to_method_view(m) for m in methods])

    @post(
        "/",
        summary="Save a card (no charge); the same card again returns the saved one",
        responses={
            200: ResponseSpec(SavedMethodView, description="The card was already saved"),
            **_errors(
                s400=f"validation_error: a bad card (the message names the field) | {_NO_WALLET}",
                s402="card_declined | expired_card: the card cannot be saved",
            ),
        },
        dto=strict_body(CardInput),
        return_dto=None,
    )
    async def add_method(
        self, request: AnyRequest, data: JSONBody[CardInput]
    ) -> Response[SavedMethodView]:
        card = data  # decoded strictly, once (services/api/body.py)
        saved, created = await core_of(request).checkout.save_card(session_of(request), card)
        return Response(to_method_view(saved), status_code=201 if created else 200)

    @delete(
        "/{method_id:str}",
        summary="Delete a saved method",
        status_code=204,
        responses=_errors(
            s400=_NO_WALLET, s404="validation_error: no such saved method for this customer"
        ),
    )
    async def delete_method(
        self, request: AnyRequest, method_id: Annotated[str, PathParameter(max_length=64)]
    ) -> None:
        record = session_of(request)
        assert record.customer_id is not None
        if not await core_of(request).wallet.delete(
            record.account_uid, record.customer_id, method_id
        ):
            raise NotFound("No such saved method for this customer")
