from typing import Any

from litestar.testing import AsyncTestClient

from tests.api.conftest import seed_body


async def test_create_then_get(client: AsyncTestClient[Any], admin_headers: dict[str, str]) -> None:
    r = await client.post("/v1/hosted-sessions", json=seed_body(), headers=admin_headers)
    assert r.status_code == 201, r.text
    created = r.json()
    r = await client.get(f"/v1/hosted-sessions/{created['session_id']}", headers=admin_headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "open"
