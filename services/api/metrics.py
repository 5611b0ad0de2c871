"""Prometheus metrics of the API process, served at GET /metrics."""

from __future__ import annotations

from typing import Any

from litestar.response import Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from services.api.routing import get

REQUESTS = Counter(
    "hs_http_requests_total",
    "HTTP requests by method, route and status",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "hs_http_request_duration_seconds",
    "HTTP request latency by method and route",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


# (method, route, status) -> its two children: `labels()` looks each up under a lock and
# rebuilds the key every call, on every request (cost: docs/performance.md). The label
# sets are few (routes are templates, unrouted paths share one); the bound only guards
# against odd methods.
_CHILDREN: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_CHILDREN_MAX = 4096


def observe(method: str, route: str, status: int, seconds: float) -> None:
    """Count one finished request (route = the path template, so ids do not explode labels)."""
    key = (method, route, status)
    children = _CHILDREN.get(key)
    if children is None:
        if len(_CHILDREN) >= _CHILDREN_MAX:
            _CHILDREN.clear()
        children = (REQUESTS.labels(method, route, str(status)), LATENCY.labels(method, route))
        _CHILDREN[key] = children
    children[0].inc()
    children[1].observe(seconds)


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics() -> Response[bytes]:
    """The process's metrics in the Prometheus text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
