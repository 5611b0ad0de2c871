"""Sessions made the way a test needs them: through the API (HTTP, asserted 201) or through
the service directly (no HTTP), from the seed body (`tests.support.seed_body`) by default."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
from litestar.testing import AsyncTestClient

from shared.sessions.params import CreateSessionParams
from shared.sessions.service import SessionService
from tests.support import ACCOUNT, seed_body

SESSIONS_URL = "/v1/hosted-sessions"
# The in-process app's test client, as the API tests type it.
Client = AsyncTestClient[Any]


async def create_session_reply(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """POST a session (`body`, else the seed body with `overrides`); asserts 201 and returns
    the reply's JSON (id, client secret, URLs...)."""
    sent = body if body is not None else seed_body(**overrides)
    response = await client.post(SESSIONS_URL, json=sent, headers=headers)
    assert response.status_code == 201, response.text
    reply: dict[str, Any] = response.json()
    return reply


async def create_session(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
    **overrides: Any,
) -> str:
    """`create_session_reply`'s session id."""
    session_id: str = (await create_session_reply(client, headers, body, **overrides))["session_id"]
    return session_id


async def create_session_in_service(
    sessions: SessionService, body: dict[str, Any], account: str = ACCOUNT
) -> str:
    """A session made by `SessionService.create` (no HTTP) from a request body; its id."""
    created = await sessions.create(account, msgspec.convert(body, CreateSessionParams))
    return created.session_id
