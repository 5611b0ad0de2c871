"""JSONResponse: the lean path sends exactly what Litestar's Response would, and everything
it does not handle takes Litestar's own path."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar import Litestar, get
from litestar.response import Response
from litestar.testing import TestClient

from services.api.responses import JSONResponse


class Item(msgspec.Struct):
    name: str
    amount: int
    tags: list[str]
    note: str | None = None


ITEM = Item(name="caf\u00e9 \u2603", amount=1250, tags=["a", "b"])


@get("/lean", sync_to_thread=False)
def lean() -> Item:
    return ITEM


@get("/plain", sync_to_thread=False)
def plain() -> Response[Item]:
    return Response(ITEM, status_code=202)


@get("/fast", sync_to_thread=False)
def fast() -> Response[Item]:
    return JSONResponse(ITEM, status_code=202)


@get("/headers", sync_to_thread=False)
def with_headers() -> Response[Item]:
    return JSONResponse(ITEM, headers={"Retry-After": "3"})


@get("/raw", sync_to_thread=False)
def raw_bytes() -> Response[Any]:
    return JSONResponse(b'{"already":"encoded"}', status_code=201)


@pytest.fixture
def client() -> Any:
    app = Litestar([lean, plain, fast, with_headers, raw_bytes], response_class=JSONResponse)
    with TestClient(app) as test_client:
        yield test_client


def test_the_lean_path_sends_litestars_bytes_and_headers(client: Any) -> None:
    litestar_own = client.get("/plain")
    ours = client.get("/fast")
    assert ours.status_code == litestar_own.status_code == 202
    assert ours.content == litestar_own.content == msgspec.json.encode(ITEM)
    assert ours.headers["content-type"] == litestar_own.headers["content-type"]
    assert ours.headers["content-length"] == litestar_own.headers["content-length"]


def test_a_route_returning_a_struct_uses_the_app_response_class(client: Any) -> None:
    answer = client.get("/lean")
    assert answer.status_code == 200
    assert msgspec.json.decode(answer.content, type=Item) == ITEM


def test_extra_headers_take_litestars_path_and_are_sent(client: Any) -> None:
    answer = client.get("/headers")
    assert answer.headers["retry-after"] == "3"
    assert msgspec.json.decode(answer.content, type=Item) == ITEM


def test_bytes_are_sent_as_they_are(client: Any) -> None:
    answer = client.get("/raw")
    assert answer.status_code == 201
    assert answer.content == b'{"already":"encoded"}'
    assert answer.headers["content-type"] == "application/json"
