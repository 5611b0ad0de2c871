"""Idempotency-Key on merchant POSTs: replay the first response, refuse reuse and overlap."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request
from litestar.response import Response

from services.api.auth.guards import principal_of
from services.api.lifespan import app_services
from services.api.middleware import bind_log_context
from services.api.responses import JSONResponse
from shared.errors import ServiceError
from shared.idempotency.service import Claim, Replay, request_fingerprint
from shared.ids import partition_of_account

AnyRequest = Request[Any, Any, Any]


async def run_idempotent(
    request: AnyRequest,
    status: int,
    run: Callable[[Claim | None], Awaitable[msgspec.Struct]],
    *,
    stores_itself: bool = False,
) -> Response[Any]:
    """Run a POST under its Idempotency-Key (when sent): replay, refuse, or run and record."""
    idem_key = request.headers.get("idempotency-key")
    if idem_key is None:
        return JSONResponse(await run(None), status_code=status)
    principal = principal_of(request)
    services = app_services(request)
    begun = await services.idempotency.begin(
        partition_of_account(principal.account_uid),
        principal.account_uid,
        idem_key,
        request_fingerprint(request.method, request.url.path, await request.body()),
    )
    if isinstance(begun, Replay):
        bind_log_context(idempotent_replay=True)
        # The replayed bytes as first sent (JSONResponse sends bytes as they are).
        return JSONResponse(begun.body, status_code=begun.status)
    try:
        result = await run(begun)
    except ServiceError:
        await services.idempotency.abandon(begun)  # nothing changed: a retry may run again
        raise
    if not stores_itself:
        await services.idempotency.finish(begun, status, msgspec.json.encode(result))
    return JSONResponse(result, status_code=status)
