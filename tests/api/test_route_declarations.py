"""How routes are declared: one decorator family, headers declared once (on the layer that
checks them), and the OpenAPI document still naming every header a merchant sends."""

from __future__ import annotations

from typing import Any

from litestar.enums import ParamType
from litestar.params import ParameterKwarg
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from services.api.app import create_app
from services.api.auth.guards import require_admin
from services.api.routing import ReadOnlyGuardsHandler
from shared.config import Settings

IDEMPOTENT_POSTS = {
    "/v1/hosted-sessions",
    "/v1/hosted-sessions/{session_id}/expire",
    "/v1/webhook-endpoints",
    "/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
    "/v1/webhook-deliveries/{delivery_id}/redeliver",
}


def _handlers(settings: Settings) -> list[tuple[str, Any]]:
    app = create_app(settings)
    return [
        (route.path, handler)
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        # Litestar's own: the automatic OPTIONS answer and the OpenAPI document's pages
        if handler.handler_name != "options_handler" and not route.path.startswith("/openapi")
    ]


def test_every_route_uses_the_house_decorators(settings: Settings) -> None:
    """services/api/routing.py's get/post/...: guards read the handler, never a per-request
    copy of it. A route made with Litestar's own decorator would silently pay for the copy."""
    handlers = _handlers(settings)
    assert len(handlers) >= 30
    stray = [path for path, h in handlers if not isinstance(h, ReadOnlyGuardsHandler)]
    assert stray == []


def test_no_handler_declares_a_header_it_does_not_read(settings: Settings) -> None:
    """The account header is read by require_admin, Idempotency-Key by run_idempotent: both
    are declared once, as layer parameters (documented), never as handler arguments."""
    declared = [
        (path, name)
        for path, h in _handlers(settings)
        for name, field in h.parsed_fn_signature.parameters.items()
        if isinstance(field.kwarg_definition, ParameterKwarg)
        and field.kwarg_definition.param_type == ParamType.HEADER
    ]
    assert declared == []


async def test_the_openapi_document_names_the_headers(settings: Settings) -> None:
    app = create_app(settings)
    async with AsyncTestClient(app) as client:
        doc = (await client.get("/openapi/openapi.json")).json()
    admin_paths = {
        path.replace(":str", "")
        for path, h in _handlers(settings)
        if require_admin in h.resolve_guards()
    }
    assert len(admin_paths) >= 8
    checked = idempotent = 0
    for path in admin_paths:
        for method, op in doc["paths"][path].items():
            headers = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "header"}
            account = headers["x-payment-account-uid"]
            assert account["required"] is True, (method, path)
            checked += 1
            if method == "post" and path in IDEMPOTENT_POSTS:
                key = headers["idempotency-key"]
                assert key["required"] is False
                assert key["schema"] == {"type": "string", "maxLength": 255}
                idempotent += 1
            else:
                assert "idempotency-key" not in headers, (method, path)
    assert checked >= 12
    assert idempotent == len(IDEMPOTENT_POSTS)


async def test_a_too_long_idempotency_key_is_refused_before_anything_is_made(
    client: AsyncTestClient[Any], admin_headers: dict[str, str]
) -> None:
    body = {"url": "https://hooks.example.com/in", "enabled_events": ["hosted_session.created"]}
    r = await client.post(
        "/v1/webhook-endpoints", json=body, headers={**admin_headers, "Idempotency-Key": "k" * 256}
    )
    assert r.status_code == 400
    assert r.json()["code"] == "validation_error"
    assert "Idempotency-Key" in r.json()["message"]
    listed = await client.get("/v1/webhook-endpoints", headers=admin_headers)
    assert listed.json()["data"] == []
    ok = await client.post(
        "/v1/webhook-endpoints", json=body, headers={**admin_headers, "Idempotency-Key": "k" * 255}
    )
    assert ok.status_code == 201
