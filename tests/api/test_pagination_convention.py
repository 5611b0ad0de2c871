"""One pagination convention, said by the OpenAPI document: every list route takes the last
object's id as `starting_after`, and the API's description states the rule once."""

from __future__ import annotations

from typing import Any

from services.api.app import create_app
from services.api.pagination import PAGINATION_CONVENTION
from shared.config import Settings

LISTS = {
    "/v1/hosted-sessions": "session",
    "/v1/events": "event",
    "/v1/webhook-endpoints": "endpoint",
    "/v1/webhook-endpoints/{endpoint_id}/deliveries": "delivery",
}


def test_every_list_documents_starting_after_the_last_objects_id(settings: Settings) -> None:
    schema: dict[str, Any] = create_app(settings).openapi_schema.to_schema()
    assert schema["info"]["description"] == PAGINATION_CONVENTION
    assert "`id` of the last object of this page as `starting_after`" in PAGINATION_CONVENTION
    # Every GET answering a list (`has_more`) takes `starting_after`: none is left out.
    listing = set()
    for path, operations in schema["paths"].items():
        get = operations.get("get")
        if get is None:
            continue
        ok = get["responses"].get("200", {}).get("content", {}).get("application/json", {})
        ref = ok.get("schema", {}).get("$ref", "")
        component = schema["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {})
        if "has_more" in component.get("properties", {}):
            listing.add(path)
    assert listing == set(LISTS)
    for path, kind in LISTS.items():
        [param] = [
            p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == "starting_after"
        ]
        assert param["in"] == "query"
        assert param["description"].startswith(f"The `id` of the last {kind} of the previous page")
