"""create_app(settings) -> Litestar: the only wiring site of the HTTP side."""

from __future__ import annotations

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from services.api.accounts.routes import AccountSettingsController
from services.api.browser_policy import BrowserPolicy
from services.api.checkout.challenge_routes import ChallengeController
from services.api.checkout.fee_routes import FeeQuoteController
from services.api.checkout.routes import CheckoutController
from services.api.errors import EXCEPTION_HANDLERS
from services.api.events.routes import EventController
from services.api.health import healthz, readyz
from services.api.lifespan import lifespan
from services.api.metrics import metrics
from services.api.middleware import request_context_middleware
from services.api.pages.routes import PAGE_HANDLERS
from services.api.pagination import PAGINATION_CONVENTION
from services.api.path_ids import require_well_formed_ids
from services.api.responses import JSONResponse
from services.api.routing import repoint_options_handlers
from services.api.sessions.routes import SessionController
from services.api.wallet.routes import WalletController
from services.api.webhooks.routes import WebhookController
from shared.clock import Clock, SystemClock
from shared.config import Settings


def create_app(settings: Settings, *, clock: Clock | None = None) -> Litestar:
    """The API application; nothing connects until its lifespan starts."""
    browser = BrowserPolicy(settings)
    app = Litestar(
        route_handlers=[
            healthz,
            readyz,
            metrics,
            SessionController,
            AccountSettingsController,
            WebhookController,
            EventController,
            CheckoutController,
            ChallengeController,
            FeeQuoteController,
            WalletController,
            # Last: `/{session_id}` is the catch-all the other top-level paths win against.
            *PAGE_HANDLERS,
        ],
        lifespan=[lifespan(settings, clock or SystemClock(settings.clock_offset_ms))],
        exception_handlers=EXCEPTION_HANDLERS,
        # Before every route's own guards (Litestar runs the app's first): a malformed id
        # in a path is a 404 whoever asks, and never reaches a key.
        guards=[require_well_formed_ids],
        # Runs after the guards: the browser routes' per-session limit counts verified
        # credentials only. No route may set its own before_request (a test checks).
        before_request=browser.limit_session,
        request_max_body_size=settings.max_body_bytes,
        # Plain JSON answers skip Litestar's ASGIResponse building (services/api/responses.py).
        response_class=JSONResponse,
        openapi_config=OpenAPIConfig(
            title="Hosted Sessions",
            version="1.0.0",
            description=PAGINATION_CONVENTION,
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
    repoint_options_handlers(app)
    # Outside the router (Litestar's own middleware runs only for matched routes), so 404s,
    # 405s and every other error get a request id, the X-Request-Id header and a log line.
    # Browser CORS and address limits inside it: their own answers (preflights, 429s) carry
    # the request id too. It also reads what an error left of the body (a 413 reaches a
    # client that is still sending it).
    app.asgi_handler = request_context_middleware(
        browser.middleware(app.asgi_handler), drain_limit=settings.max_body_drain_bytes
    )
    return app
