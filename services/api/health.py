"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request
from litestar.response import Response

from services.api.lifespan import core_of
from services.api.routing import get


@get("/healthz", include_in_schema=False, sync_to_thread=False)
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    """Redis answers: the process can serve. Within HS_REDIS_READY_TIMEOUT_SECONDS: a load
    balancer's probe must get its 503 before its own timeout, however Redis fails."""
    core = core_of(request)
    try:
        async with asyncio.timeout(core.settings.redis_ready_timeout_seconds):
            await core.redis.ping()
    except Exception:
        return Response({"status": "unavailable"}, status_code=503)
    return Response({"status": "ok"})
