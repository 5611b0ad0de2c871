"""Route decorators like Litestar's, with guards called on the handler itself.

Litestar passes each guard a fresh `copy()` of the route handler, per request, so that a
guard cannot change the handler: measured at 3 % of a create's and 6 % of a config read's CPU
(py-spy). Our guards only read the handler (its `opt`), so they get the handler itself."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.enums import HttpMethod
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute


class ReadOnlyGuardsHandler(HTTPRouteHandler):
    async def authorize_connection(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        for guard in self.resolve_guards():
            await guard(connection, self)  # type: ignore[misc]  # Litestar types guards loosely


# Status defaults come from the method, as with Litestar's own: 201 for POST, 204 for DELETE.
def get(path: str | None = None, **kwargs: Any) -> ReadOnlyGuardsHandler:
    return ReadOnlyGuardsHandler(path, http_method=HttpMethod.GET, **kwargs)


def post(path: str | None = None, **kwargs: Any) -> ReadOnlyGuardsHandler:
    return ReadOnlyGuardsHandler(path, http_method=HttpMethod.POST, **kwargs)


def patch(path: str | None = None, **kwargs: Any) -> ReadOnlyGuardsHandler:
    return ReadOnlyGuardsHandler(path, http_method=HttpMethod.PATCH, **kwargs)


def delete(path: str | None = None, **kwargs: Any) -> ReadOnlyGuardsHandler:
    return ReadOnlyGuardsHandler(path, http_method=HttpMethod.DELETE, **kwargs)


def repoint_options_handlers(app: Litestar) -> None:
    """Make each path's automatic OPTIONS answer list all of the path's methods in `Allow`.

    Litestar 2 builds that handler as a closure over the route object of the path's first
    handler; a path whose handlers are registered in more than one step (a controller's GET and
    POST on one path) gets a new route object but keeps the old closure, whose `Allow` names
    only the first methods (litestar-org/litestar#4169, fixed in Litestar 3 only). Found by
    the contract fuzz (tests/fuzz); tests/api/test_bad_input.py checks the header."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            fn = handler.fn
            if handler.handler_name != "options_handler" or fn.__closure__ is None:
                continue
            for name, cell in zip(fn.__code__.co_freevars, fn.__closure__, strict=True):
                if name == "self" and isinstance(cell.cell_contents, HTTPRoute):
                    cell.cell_contents = route
