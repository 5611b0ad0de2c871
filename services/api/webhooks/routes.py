"""Merchant webhook endpoints and deliveries. Thin: parse, authorise, call the service."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from litestar import Controller, Request
from litestar.params import JSONBody, Parameter
from litestar.response import Response

from services.api.auth.guards import ADMIN_PARAMETERS, principal_of, require_admin
from services.api.body import strict_body
from services.api.idempotency import IdempotentOperation, run_idempotent
from services.api.lifespan import core_of
from services.api.middleware import bind_log_context
from services.api.openapi_errors import (
    ADMIN_ERRORS,
    IDEMPOTENCY_IN_FLIGHT,
    IDEMPOTENCY_REUSED,
    error_responses,
)
from services.api.pagination import starting_after_of
from services.api.routing import delete, get, patch, post
from services.api.webhooks.schemas import (
    CreateEndpointParams,
    DeletedEndpoint,
    DeliveryList,
    DeliveryView,
    EndpointList,
    EndpointView,
    EndpointWithSecret,
    UpdateEndpointParams,
)
from shared.idempotency.service import ReplayWrite

AnyRequest = Request[Any, Any, Any]
EndpointId = Annotated[str, Parameter(max_length=64)]
DeliveryId = Annotated[str, Parameter(max_length=64)]

_NOT_FOUND = "validation_error: no such webhook endpoint for this account"
_errors = partial(error_responses, ADMIN_ERRORS)


class WebhookController(Controller):
    path = "/v1"
    guards = [require_admin]  # noqa: RUF012  (Litestar reads the class attribute)
    parameters = ADMIN_PARAMETERS
    tags = ["webhooks (merchant)"]  # noqa: RUF012
    security = [{"BearerAuth": []}]  # noqa: RUF012

    @post(
        "/webhook-endpoints",
        operation_class=IdempotentOperation,
        status_code=201,
        summary="Create a webhook endpoint (the answer holds its signing secret, shown once)",
        responses=_errors(
            s409="validation_error: the first request with this Idempotency-Key is in flight",
            s422="validation_error: the account has the most endpoints allowed, or "
            "Idempotency-Key reused with another body",
        ),
        dto=strict_body(CreateEndpointParams),
        return_dto=None,
    )
    async def create_endpoint(
        self,
        request: AnyRequest,
        data: JSONBody[CreateEndpointParams],
    ) -> Response[EndpointWithSecret]:
        params = data  # decoded strictly, once (services/api/body.py)
        webhooks = core_of(request).webhooks
        account = principal_of(request).account_uid

        async def run(replay: ReplayWrite | None) -> EndpointWithSecret:
            created = await webhooks.create(account, params, replay)
            bind_log_context(endpoint_id=created.id)
            return created

        # A replay under the same Idempotency-Key answers the same body (stored encrypted).
        return await run_idempotent(request, 201, run)

    @get(
        "/webhook-endpoints",
        summary="List the account's webhook endpoints, newest first",
        responses=_errors(
            s400="validation_error: limit outside 1-100, starting_after not an endpoint of "
            "this account, or a malformed header"
        ),
    )
    async def list_endpoints(
        self,
        request: AnyRequest,
        # An account has at most 16 endpoints: the default page holds them all.
        limit: Annotated[int, Parameter(ge=1, le=100)] = 16,
        starting_after: Annotated[
            str | None, Parameter(max_length=64, description=starting_after_of("endpoint"))
        ] = None,
    ) -> EndpointList:
        page = await core_of(request).webhooks.endpoints_page(
            principal_of(request).account_uid, limit=limit, starting_after=starting_after
        )
        return EndpointList(data=page.data, has_more=page.has_more)

    @get(
        "/webhook-endpoints/{endpoint_id:str}",
        summary="Retrieve a webhook endpoint (never its secret)",
        responses=_errors(s404=_NOT_FOUND),
    )
    async def get_endpoint(self, request: AnyRequest, endpoint_id: EndpointId) -> EndpointView:
        bind_log_context(endpoint_id=endpoint_id)
        return await core_of(request).webhooks.get(principal_of(request).account_uid, endpoint_id)

    @patch(
        "/webhook-endpoints/{endpoint_id:str}",
        summary="Update a webhook endpoint (url, enabled_events, description, enabled)",
        responses=_errors(s404=_NOT_FOUND),
        dto=strict_body(UpdateEndpointParams),
        return_dto=None,
    )
    async def update_endpoint(
        self,
        request: AnyRequest,
        endpoint_id: EndpointId,
        data: JSONBody[UpdateEndpointParams],
    ) -> EndpointView:
        bind_log_context(endpoint_id=endpoint_id)
        params = data  # decoded strictly, once (services/api/body.py)
        return await core_of(request).webhooks.update(
            principal_of(request).account_uid, endpoint_id, params
        )

    @delete(
        "/webhook-endpoints/{endpoint_id:str}",
        status_code=200,
        summary="Delete a webhook endpoint (its pending deliveries are given up)",
        responses=_errors(s404=_NOT_FOUND),
    )
    async def delete_endpoint(
        self, request: AnyRequest, endpoint_id: EndpointId
    ) -> DeletedEndpoint:
        bind_log_context(endpoint_id=endpoint_id)
        return await core_of(request).webhooks.delete(
            principal_of(request).account_uid, endpoint_id
        )

    @post(
        "/webhook-endpoints/{endpoint_id:str}/rotate-secret",
        operation_class=IdempotentOperation,
        status_code=200,
        summary="Rotate the signing secret: the new one is shown once; the previous one "
        "keeps signing beside it for 24 h",
        responses=_errors(s404=_NOT_FOUND, s409=IDEMPOTENCY_IN_FLIGHT, s422=IDEMPOTENCY_REUSED),
    )
    async def rotate_secret(
        self,
        request: AnyRequest,
        endpoint_id: EndpointId,
    ) -> Response[EndpointWithSecret]:
        bind_log_context(endpoint_id=endpoint_id)
        webhooks = core_of(request).webhooks
        account = principal_of(request).account_uid

        async def run(replay: ReplayWrite | None) -> EndpointWithSecret:
            return await webhooks.rotate_secret(account, endpoint_id, replay)

        return await run_idempotent(request, 200, run)

    @get(
        "/webhook-endpoints/{endpoint_id:str}/deliveries",
        summary="The endpoint's recent deliveries, newest first, with their attempts",
        responses=_errors(s404=_NOT_FOUND),
    )
    async def list_deliveries(
        self,
        request: AnyRequest,
        endpoint_id: EndpointId,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        starting_after: Annotated[
            str | None, Parameter(max_length=64, description=starting_after_of("delivery"))
        ] = None,
    ) -> DeliveryList:
        bind_log_context(endpoint_id=endpoint_id)
        page = await core_of(request).webhooks.deliveries(
            principal_of(request).account_uid,
            endpoint_id,
            limit=limit,
            starting_after=starting_after,
        )
        return DeliveryList(data=page.data, has_more=page.has_more)

    @post(
        "/webhook-deliveries/{delivery_id:str}/redeliver",
        operation_class=IdempotentOperation,
        status_code=202,
        summary="Send a dead delivery once more, now (one attempt)",
        responses=_errors(
            s404="validation_error: no such delivery for this account",
            s409="validation_error: the delivery is not dead, or its endpoint is disabled | "
            + IDEMPOTENCY_IN_FLIGHT,
            s422=IDEMPOTENCY_REUSED,
        ),
    )
    async def redeliver(
        self,
        request: AnyRequest,
        delivery_id: DeliveryId,
    ) -> Response[DeliveryView]:
        bind_log_context(delivery_id=delivery_id)
        webhooks = core_of(request).webhooks
        account = principal_of(request).account_uid

        async def run(replay: ReplayWrite | None) -> DeliveryView:
            return await webhooks.redeliver(account, delivery_id, replay)

        return await run_idempotent(request, 202, run)
