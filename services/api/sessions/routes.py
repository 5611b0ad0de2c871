"""Merchant (server-side) session endpoints. Thin: parse, authorise, call the service."""

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
from services.api.routing import get, patch, post
from services.api.sessions.schemas import (
    CreatedSession,
    CreateSessionParams,
    SessionList,
    SessionView,
    UpdateSessionParams,
)
from shared.idempotency.service import ReplayWrite

AnyRequest = Request[Any, Any, Any]


_errors = partial(error_responses, ADMIN_ERRORS)


SessionId = Annotated[str, Parameter(max_length=64)]


class SessionController(Controller):
    path = "/v1/hosted-sessions"
    guards = [require_admin]  # noqa: RUF012  (Litestar reads the class attribute)
    parameters = ADMIN_PARAMETERS
    tags = ["hosted sessions (merchant)"]  # noqa: RUF012
    security = [{"BearerAuth": []}]  # noqa: RUF012

    @post(
        "/",
        operation_class=IdempotentOperation,
        status_code=201,
        summary="Create a hosted session",
        responses=_errors(
            s409="validation_error: the first request with this Idempotency-Key is in flight",
            s413="validation_error: body too large",
            s422="validation_error: line items do not sum to amount, or Idempotency-Key reused "
            "with another body",
        ),
        dto=strict_body(CreateSessionParams),
        return_dto=None,
    )
    async def create_session(
        self,
        request: AnyRequest,
        data: JSONBody[CreateSessionParams],
    ) -> Response[CreatedSession]:
        sessions = core_of(request).sessions
        principal = principal_of(request)
        params = data  # decoded strictly, once (services/api/body.py)

        async def run(replay: ReplayWrite | None) -> CreatedSession:
            created = await sessions.create(principal.account_uid, params, replay)
            bind_log_context(session_id=created.session_id)
            return created

        return await run_idempotent(request, 201, run)

    @get(
        "/",
        summary="List hosted sessions, newest first",
        responses=_errors(
            s400="validation_error: limit outside 1-100, unknown status, starting_after not a "
            "session of this account, or a malformed header"
        ),
    )
    async def list_sessions(
        self,
        request: AnyRequest,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 10,
        starting_after: Annotated[
            str | None, Parameter(max_length=64, description=starting_after_of("session"))
        ] = None,
        status: Annotated[str | None, Parameter(max_length=16)] = None,
        customer_id: Annotated[str | None, Parameter(max_length=255)] = None,
    ) -> SessionList:
        page = await core_of(request).sessions.list_page(
            principal_of(request).account_uid,
            limit=limit,
            starting_after=starting_after,
            status=status,
            customer_id=customer_id,
        )
        return SessionList(data=page.data, has_more=page.has_more)

    @get(
        "/{session_id:str}",
        summary="Retrieve a hosted session (merchant view)",
        responses=_errors(s404="validation_error: no such session for this account"),
    )
    async def get_session(
        self,
        request: AnyRequest,
        session_id: SessionId,
    ) -> SessionView:
        bind_log_context(session_id=session_id)
        return await core_of(request).sessions.get(principal_of(request).account_uid, session_id)

    @patch(
        "/{session_id:str}",
        summary="Update an open hosted session",
        responses=_errors(
            s404="validation_error: no such session for this account",
            s409="already_confirmed: the session is complete",
            s410="session_expired: the session has expired",
            s422="validation_error: line items do not sum to amount, or expiry in the past",
        ),
        dto=strict_body(UpdateSessionParams),
        return_dto=None,
    )
    async def update_session(
        self,
        request: AnyRequest,
        session_id: SessionId,
        data: JSONBody[UpdateSessionParams],
    ) -> SessionView:
        bind_log_context(session_id=session_id)
        params = data  # decoded strictly, once (services/api/body.py)
        return await core_of(request).sessions.update(
            principal_of(request).account_uid, session_id, params
        )

    @post(
        "/{session_id:str}/expire",
        operation_class=IdempotentOperation,
        status_code=200,
        summary="Expire a hosted session now (idempotent)",
        responses=_errors(
            s404="validation_error: no such session for this account",
            s409=f"already_confirmed: the session is complete | {IDEMPOTENCY_IN_FLIGHT}",
            s422=IDEMPOTENCY_REUSED,
        ),
    )
    async def expire_session(
        self,
        request: AnyRequest,
        session_id: SessionId,
    ) -> Response[SessionView]:
        bind_log_context(session_id=session_id)
        sessions = core_of(request).sessions
        account = principal_of(request).account_uid

        async def run(replay: ReplayWrite | None) -> SessionView:
            return await sessions.expire(account, session_id, replay)

        return await run_idempotent(request, 200, run)
