"""create_app(settings) -> Litestar: the only wiring site of the HTTP side."""

from __future__ import annotations

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from services.api.errors import EXCEPTION_HANDLERS
from services.api.health import healthz, readyz
from services.api.lifespan import lifespan
from services.api.metrics import metrics
from services.api.middleware import request_context_middleware
from services.api.sessions.routes import SessionController
from shared.clock import Clock, SystemClock
from shared.config import Settings


def create_app(settings: Settings, *, clock: Clock | None = None) -> Litestar:
    """The API application; nothing connects until its lifespan starts."""
    app = Litestar(
        route_handlers=[healthz, readyz, metrics, SessionController],
        lifespan=[lifespan(settings, clock or SystemClock(settings.clock_offset_ms))],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Hosted Sessions",
            version="1.0.0",
            path="/openapi",
            components=Components(
                security_schemes={
                    "BearerAuth": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        bearer_format="JWT (admin) or client_secret (browser)",
                    )
                }
            ),
        ),
        debug=False,
        logging_config=None,
    )
    # Outside the router (Litestar's own middleware runs only for matched routes), so 404s,
    # 405s and every other error get a request id, the X-Request-Id header and a log line.
    app.asgi_handler = request_context_middleware(app.asgi_handler)
    return app
