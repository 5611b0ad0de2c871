"""The shopper's checkout pages: `GET /{session_id}` (hosted) and `GET /embed/{session_id}`
(embedded), plus their static assets. docs/pages.md.

The pages are a fixed shell (no session data, no secret): the page's script reads the client
secret from the URL fragment (or, embedded, from the parent page by postMessage) and talks
to the browser API only. What the server decides here is the security envelope: the CSP
(`frame-ancestors` above all) and, for the embedded page, the one parent origin the page
may exchange messages with.
"""

from __future__ import annotations

import html
import re
from functools import cache
from importlib.resources import files
from typing import Any, Literal

from litestar import Request, Response
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery

from services.api.auth.browser import origin_allowed, origin_of, session_origins
from services.api.lifespan import app_services
from services.api.routing import get
from shared.ids import partition_of_session
from shared.payments.factory import is_test_mode

AnyRequest = Request[Any, Any, Any]
Mode = Literal["hosted", "embedded"]

ASSETS_PATH = "/checkout-assets"
# name -> media type: the only files served (no directory listing, no path walking).
_ASSETS = {
    "checkout.js": "text/javascript; charset=utf-8",
    "checkout.css": "text/css; charset=utf-8",
}

_BASE_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
# The page shell never changes per shopper, but holds no secret either: no shared caching so a
# rotated origin list (frame-ancestors) applies at once.
_PAGE_HEADERS = {
    **_BASE_HEADERS,
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def csp(frame_ancestors: str) -> str:
    """The pages' Content-Security-Policy: own scripts and styles only, API calls to the
    own origin only, no forms posting anywhere, framing as the mode allows."""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' https: data:",
            "connect-src 'self'",
            f"frame-ancestors {frame_ancestors}",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


# What only test mode shows (the simulator's token field and its hint) sits between these.
_TEST_MODE_BLOCK = re.compile(r"[ \t]*<!--test-mode-->.*?<!--/test-mode-->\n?", re.DOTALL)


@cache
def _static(name: str) -> bytes:
    return files("services.api.pages").joinpath("static", name).read_bytes()


@cache
def _template(test_mode: bool) -> str:
    """The page template; outside test mode without the test-mode block at all (nothing
    hidden that a real processor's shopper could reveal), and marked so for the script."""
    template = _static("page.html").decode()
    if not test_mode:
        template = _TEST_MODE_BLOCK.sub("", template)
    return template.replace("{{test_mode}}", "true" if test_mode else "false")


def _shell(mode: Mode, session_id: str, parent_origin: str, *, test_mode: bool) -> bytes:
    """The page: escaped attributes only, everything else is the static template."""
    return (
        _template(test_mode)
        .replace("{{mode}}", html.escape(mode))
        .replace("{{session_id}}", html.escape(session_id))
        .replace("{{parent_origin}}", html.escape(parent_origin))
        .replace("{{assets}}", ASSETS_PATH)
        .encode()
    )


def _page(body: bytes, frame_ancestors: str) -> Response[bytes]:
    return Response(
        body,
        media_type="text/html; charset=utf-8",
        headers={**_PAGE_HEADERS, "Content-Security-Policy": csp(frame_ancestors)},
    )


def _check_id(session_id: str) -> None:
    # Anything that is not a session id (favicon.ico, typos) is a plain 404.
    if partition_of_session(session_id) is None:
        raise NotFoundException()


@get("/{session_id:str}", include_in_schema=False, sync_to_thread=False)
def hosted_page(request: AnyRequest, session_id: FromPath[str]) -> Response[bytes]:
    """The hosted page: never framed. No lookup: the shell is the same for every session,
    and an unknown one answers exactly like a known one until the page calls the API."""
    _check_id(session_id)
    test_mode = is_test_mode(app_services(request).core.settings)
    return _page(_shell("hosted", session_id, "", test_mode=test_mode), "'none'")


@get("/embed/{session_id:str}", include_in_schema=False)
async def embed_page(
    request: AnyRequest, session_id: FromPath[str], parent_origin: FromQuery[str | None] = None
) -> Response[bytes]:
    """The embedded page: framed only by the origins that may use the session (its own, the
    merchant's success/cancel pages, the account's allowed origins). The parent origin the
    page talks to is the merchant's `parent_origin` when allowed, else the success page's."""
    _check_id(session_id)
    services = app_services(request)
    test_mode = is_test_mode(services.core.settings)
    record = await services.core.sessions.load(session_id)
    if record is None:
        # Same shell, nothing frames it, nothing to talk to: the page shows it cannot load.
        return _page(_shell("embedded", session_id, "", test_mode=test_mode), "'none'")
    own = session_origins(record, services.core.settings.public_base_url)
    account = await services.allowed_origins(record.account_uid)
    ancestors = sorted(o for o in own | account if o.startswith(("https://", "http://")))
    parent = origin_of(record.success_url)
    if parent_origin is not None:
        wanted = origin_of(parent_origin)
        allowed = await origin_allowed(services, record.account_uid, own, wanted)
        parent = wanted if allowed else ""
    shell = _shell("embedded", session_id, parent, test_mode=test_mode)
    return _page(shell, " ".join(ancestors) or "'none'")


@get(f"{ASSETS_PATH}/{{name:str}}", include_in_schema=False, sync_to_thread=False)
def asset(name: FromPath[str]) -> Response[bytes]:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFoundException()
    return Response(
        _static(name),
        media_type=media_type,
        headers={**_BASE_HEADERS, "Cache-Control": "public, max-age=300"},
    )


PAGE_HANDLERS = [hosted_page, embed_page, asset]
