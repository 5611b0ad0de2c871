"""The API's Prometheus endpoint counts requests by route template, never by raw id."""

from typing import Any

from litestar.testing import AsyncTestClient

from tests.support import seed_body


async def test_requests_are_counted_by_route_template(
    client: AsyncTestClient[Any], admin_headers: dict[str, str]
) -> None:
    created = await client.post("/v1/hosted-sessions", json=seed_body(), headers=admin_headers)
    session_id = created.json()["session_id"]
    await client.get(f"/v1/hosted-sessions/{session_id}", headers=admin_headers)
    await client.get("/no/such/path")
    text = (await client.get("/metrics")).text
    assert 'hs_http_requests_total{method="POST",route="/v1/hosted-sessions",status="201"}' in text
    assert 'route="/v1/hosted-sessions/{session_id}",status="200"' in text
    assert 'route="unrouted",status="404"' in text
    assert session_id not in text
    assert "hs_http_request_duration_seconds_bucket" in text
