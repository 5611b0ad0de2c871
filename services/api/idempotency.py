"""Idempotency-Key on merchant POSTs: replay the first response, refuse reuse and overlap."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from litestar import Request
from litestar.openapi.spec import OpenAPIType, Operation, Schema
from litestar.openapi.spec import Parameter as OpenAPIParameter
from litestar.response import Response
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.api.auth.guards import principal_of
from services.api.errors import error_body
from services.api.lifespan import core_of
from services.api.middleware import bind_log_context
from services.api.responses import JSONResponse
from shared.errors import ServiceError, ValidationFailed
from shared.idempotency.service import (
    IdempotencyService,
    Replay,
    ReplayWrite,
    request_fingerprint,
)
from shared.ids import partition_of_account

AnyRequest = Request[Any, Any, Any]

MAX_KEY_LENGTH = 255


@dataclass
class IdempotentOperation(Operation):
    """The OpenAPI operation of a POST that takes an Idempotency-Key (its decorator's
    `operation_class`). Documented only: `run_idempotent` reads and checks the header, so
    the handler declares no parameter Litestar would parse on every request."""

    def __post_init__(self) -> None:
        key = OpenAPIParameter(
            name="idempotency-key",
            param_in="header",
            schema=Schema(type=OpenAPIType.STRING, max_length=MAX_KEY_LENGTH),
            description="Replays the first answer to a retry with the same key and body",
            required=False,
        )
        self.parameters = [*(self.parameters or []), key]


log = structlog.get_logger(__name__)

# Releases sent after a Redis fault, held so the loop does not drop them half-way.
_BACKGROUND: set[asyncio.Task[None]] = set()


async def run_idempotent(
    request: AnyRequest,
    status: int,
    run: Callable[[ReplayWrite | None], Awaitable[msgspec.Struct]],
) -> Response[Any]:
    """Run a POST under its Idempotency-Key (when sent): replay, refuse, or run and record.

    `run` gets the key's `ReplayWrite`: a change writes the answer in its own atomic step
    (then nothing is stored here); an answer without a change is stored after it. A saved
    error (shared.errors `replayed`) is stored as the answer; any other failure (rejected
    input, a conflict, a 5xx, a Redis fault, a bug) releases the key, so a retry runs."""
    idem_key = request.headers.get("idempotency-key")
    if idem_key is None:
        return JSONResponse(await run(None), status_code=status)
    if len(idem_key) > MAX_KEY_LENGTH:
        raise ValidationFailed(f"Idempotency-Key must be at most {MAX_KEY_LENGTH} characters")
    principal = principal_of(request)
    idempotency = core_of(request).idempotency
    begun = await idempotency.begin(
        partition_of_account(principal.account_uid),
        principal.account_uid,
        idem_key,
        request_fingerprint(request.method, request.url.path, await request.body()),
    )
    if isinstance(begun, Replay):
        bind_log_context(idempotent_replay=True)
        # The replayed bytes as first sent (JSONResponse sends bytes as they are).
        return JSONResponse(begun.body, status_code=begun.status)
    replay = idempotency.replay_write(begun, status)
    try:
        result = await run(replay)
    except ServiceError as exc:
        if exc.replayed and not replay.written:
            await _settle(idempotency, replay, (exc.status, error_body(request, exc)))
        else:
            await _settle(idempotency, replay, None)
        raise
    except (RedisConnectionError, RedisTimeoutError):
        # Redis is down or hung: releasing now would wait out a second deadline before the
        # client gets its 503. Release in the background instead; the compare-and-delete is
        # as safe late as now, and a retry meanwhile meets a Redis that cannot answer anyway.
        task = asyncio.get_running_loop().create_task(_settle(idempotency, replay, None))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)
        raise
    except (Exception, asyncio.CancelledError):
        # Whether or not the change was applied: if its step stored the answer, the
        # compare-and-delete leaves it; if not, nothing changed and the key is freed.
        await _settle(idempotency, replay, None)
        raise
    if not replay.written:
        await idempotency.finish(begun, status, msgspec.json.encode(result))
    return JSONResponse(result, status_code=status)


async def _settle(
    idempotency: IdempotencyService, replay: ReplayWrite, answer: tuple[int, bytes] | None
) -> None:
    """After a failure: store the error as the answer, or release the key. A fault here
    (Redis down) must not hide the request's own error: the lock then lapses on its TTL."""
    try:
        if answer is None:
            await idempotency.abandon(replay.claim)
        else:
            await idempotency.finish(replay.claim, *answer)
    except Exception as exc:  # the request's own error is what the client must get
        log.warning("idempotency.settle_failed", error=type(exc).__name__)
