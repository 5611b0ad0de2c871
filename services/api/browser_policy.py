"""CORS and rate limits of the browser endpoints (docs/browser-security.md).

Three pieces, wired in app.py:
- `BrowserPolicy.middleware` (pure ASGI, inside the request-id middleware): per-client-address
  limits before anything else runs, CORS preflights answered from the path alone, and
  `Access-Control-Allow-Origin` + `Vary: Origin` on every response to an allowed origin,
  errors included.
- `BrowserPolicy.limit_session` (app-level `before_request`, which Litestar runs after the
  guards): the per-session limit, counted only once the client secret is verified.
A settings change made through a process applies to its origin cache at once (the PATCH
route forgets the account's cached origins).
The merchant (admin) endpoints are server to server: they get no CORS and no browser limits.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, cast

import msgspec
import structlog
from litestar import Request
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Message,
    Receive,
    Scope,
    Send,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.api.auth.browser import ORIGIN_VERDICT, origin_allowed, session_origins
from services.api.errors import ErrorEnvelope
from services.api.lifespan import AppServices, app_services, services_in
from services.api.middleware import bind_log_context
from shared.config import Settings
from shared.errors import OriginNotAllowed, RateLimited, ServiceError, StoreUnavailable
from shared.ids import partition_of_session
from shared.redis.ratelimit import Bucket

log = structlog.get_logger(__name__)

# Every browser endpoint, by the part after the session id. A new browser route must be
# added here to get CORS and limits (tests/api/test_origins_cors.py checks the app's routes).
# Slashes as Litestar's router reads them (`normalize_path`, then the trie's split): any run
# of them separates two segments, and any number may lead or trail. `//confirm` reaches the
# confirm handler, so it must get the confirm policy (tests/api/test_origins_cors.py
# compares this with the router on such spellings). One regex: no per-request normalising.
_BROWSER_PATH = re.compile(
    r"^/*v1/+hosted-sessions/+(?P<session_id>[^/]+)/+"
    r"(?P<action>config|quote-fee|challenge/+verify|challenge|confirm"
    r"|payment-methods(?:/+[^/]+)?)/*$"
)
_ACTIONS: dict[str, tuple[Bucket, str]] = {
    "config": ("read", "GET"),
    "quote-fee": ("read", "POST"),
    "challenge": ("challenge", "POST"),
    "challenge/verify": ("challenge", "POST"),
    "confirm": ("confirm", "POST"),
    "payment-methods": ("read", "GET, POST"),
    "payment-methods/": ("read", "DELETE"),
}
# What a checkout page sends: the client secret, JSON, idempotency keys, correlation ids.
ALLOW_HEADERS = "authorization, content-type, idempotency-key, x-request-id"
# Response headers a page's script may read beyond the CORS-safelisted ones.
EXPOSE_HEADERS = "retry-after, x-request-id"

# Scope state keys set by the middleware for the hook and the routes.
_ROUTE = "browser_route"
_CLIENT_IP = "client_ip"

# A session's own origins (its success/cancel pages) never change after creation, so a
# process keeps them a while for preflights and early errors (the TTL bounds any later change).
_SESSION_CACHE_SECONDS = 300.0
_SESSION_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class BrowserRoute:
    """A request to a browser endpoint: its session, its limit bucket, its methods."""

    session_id: str
    bucket: Bucket
    methods: str
    template: str  # the route's path template, for metrics of the answers given here


def browser_route(path: str) -> BrowserRoute | None:
    """The browser endpoint a path names, or None (merchant endpoints and everything else)."""
    match = _BROWSER_PATH.match(path)
    if match is None:
        return None
    action = match["action"]
    if action.startswith("challenge/"):
        action = "challenge/verify"
    template = f"/v1/hosted-sessions/{{session_id}}/{action}"
    if action.startswith("payment-methods/"):
        action = "payment-methods/"
        template = "/v1/hosted-sessions/{session_id}/payment-methods/{method_id}"
    bucket, methods = _ACTIONS[action]
    return BrowserRoute(
        session_id=match["session_id"], bucket=bucket, methods=methods, template=template
    )


def _routed_path(scope: Scope) -> str:
    """The path the router matches: without the root path, as Litestar's ASGIRouter cuts it
    (the server sets none today; a deployment under a prefix must not lose the policy)."""
    path = scope["path"]
    if root_path := scope.get("root_path"):
        path = path.split(root_path, maxsplit=1)[-1]
    return path


def client_address(scope: Scope, trusted_hops: int) -> str:
    """The caller's address: the TCP peer, or with `trusted_hops` proxies of ours in front,
    the X-Forwarded-For entry that many from the right (what the outermost trusted proxy
    saw). Entries further left are written by the client and never trusted."""
    client = scope.get("client")
    peer = str(client[0]) if client else ""
    if trusted_hops <= 0:
        return peer
    forwarded = ",".join(
        value.decode("latin-1") for name, value in scope["headers"] if name == b"x-forwarded-for"
    )
    entries = [entry.strip() for entry in forwarded.split(",") if entry.strip()]
    if not entries:
        return peer
    # Fewer entries than proxies: the request skipped an outer proxy, and every entry there
    # is was still written by one of ours.
    candidate = entries[-trusted_hops] if len(entries) >= trusted_hops else entries[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return peer


def client_ip_of(request: Request[Any, Any, Any]) -> str | None:
    """The client address the middleware settled on for this browser request; the TCP peer
    if it settled on none (the card-testing guard must count every confirm by an address)."""
    value = request.scope.get("state", {}).get(_CLIENT_IP)
    if value:
        return str(value)
    client = request.scope.get("client")
    return str(client[0]) if client else None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class _SessionOriginCache:
    """session id -> (account, the session's own origins), LRU with a TTL."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[float, str, frozenset[str]]] = OrderedDict()

    def get(self, session_id: str) -> tuple[str, frozenset[str]] | None:
        entry = self._entries.get(session_id)
        if entry is None or time.monotonic() - entry[0] >= _SESSION_CACHE_SECONDS:
            return None
        self._entries.move_to_end(session_id)
        return entry[1], entry[2]

    def put(self, session_id: str, account_uid: str, origins: frozenset[str]) -> None:
        self._entries[session_id] = (time.monotonic(), account_uid, origins)
        self._entries.move_to_end(session_id)
        while len(self._entries) > _SESSION_CACHE_SIZE:
            self._entries.popitem(last=False)


class BrowserPolicy:
    """CORS and rate limits for the browser endpoints; one per app (see the module doc)."""

    def __init__(self, settings: Settings) -> None:
        self._trusted_hops = settings.trusted_proxy_hops
        self._max_age = str(settings.cors_max_age_seconds).encode()
        self._public_base_url = settings.public_base_url
        self._sessions = _SessionOriginCache()

    # --- ASGI -------------------------------------------------------------------------

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Wrap the app: browser paths get address limits, preflights and CORS headers."""

        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            route = browser_route(_routed_path(scope)) if scope["type"] == ScopeType.HTTP else None
            if route is None:
                await app(scope, receive, send)
                return
            await self._serve(app, route, cast("HTTPScope", scope), receive, send)

        return middleware

    async def _serve(
        self, app: ASGIApp, route: BrowserRoute, scope: HTTPScope, receive: Receive, send: Send
    ) -> None:
        services = services_in(scope)
        state = scope.setdefault("state", {})
        address = client_address(scope, self._trusted_hops)
        state[_ROUTE] = route
        state[_CLIENT_IP] = address
        # Answers given here never reach the router: label their metrics as the route would.
        scope["path_template"] = route.template
        origin = _header(scope, b"origin")
        preflight = (
            scope["method"] == "OPTIONS"
            and origin is not None
            and _header(scope, b"access-control-request-method") is not None
        )
        # Preflights count as reads (a page sends one before its first calls).
        bucket: Bucket = "read" if preflight else route.bucket
        error: ServiceError
        try:
            # Before any session lookup: unauthenticated floods cost one Redis step each.
            wait = await services.limits.check_address(address, bucket)
            if wait:
                bind_log_context(rate_limited="address", bucket=bucket)
                allowed = origin is not None and await self._allowed(services, route, origin)
                error = RateLimited("Too many requests from this address", retry_after=wait)
                await _send_error(send, state, error, origin if allowed else None)
                return
            if preflight:
                assert origin is not None
                if await self._allowed(services, route, origin):
                    await self._send_preflight(send, route, origin)
                else:
                    # An unknown session answers exactly like a disallowed origin.
                    error = OriginNotAllowed("Calls from this origin are not allowed")
                    await _send_error(send, state, error, None)
                return
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("redis.unavailable", error=type(exc).__name__)
            error = StoreUnavailable("The service is briefly unavailable; retry", retry_after=1)
            await _send_error(send, state, error, None)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                # Responses differ by Origin: shared caches must not serve one page's to another.
                headers.append((b"vary", b"Origin"))
                if origin is not None and await self._response_allowed(
                    services, route, origin, state
                ):
                    headers += _cors_headers(origin)
                message["headers"] = headers
            await send(message)

        await app(scope, receive, send_with_cors)

    async def _response_allowed(
        self, services: AppServices, route: BrowserRoute, origin: str, state: dict[str, Any]
    ) -> bool:
        verdict = state.get(ORIGIN_VERDICT)
        if verdict is not None:  # the guard decided (the usual case: no extra lookup)
            return bool(verdict)
        # Failed before the guard's origin check (401, 410, a wrong scope): decide from the
        # path as a preflight does, so the page can read the error it caused.
        try:
            return await self._allowed(services, route, origin)
        except (RedisConnectionError, RedisTimeoutError):
            return False

    async def _allowed(self, services: AppServices, route: BrowserRoute, origin: str) -> bool:
        """Whether `origin` may call the path's session, knowing only its id (no secret)."""
        if partition_of_session(route.session_id) is None:
            return False
        cached = self._sessions.get(route.session_id)
        if cached is None:
            record = await services.core.sessions.load(route.session_id)
            if record is None:
                return False
            own = frozenset(session_origins(record, self._public_base_url))
            cached = (record.account_uid, own)
            self._sessions.put(route.session_id, *cached)
        account_uid, own = cached
        return await origin_allowed(services, account_uid, own, origin)

    async def _send_preflight(self, send: Send, route: BrowserRoute, origin: str) -> None:
        headers = [
            *_cors_headers(origin),
            (b"access-control-allow-methods", route.methods.encode()),
            (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
            (b"access-control-max-age", self._max_age),
            (b"vary", b"Origin"),
        ]
        await send(HTTPResponseStartEvent(type="http.response.start", status=204, headers=headers))
        await send(HTTPResponseBodyEvent(type="http.response.body", body=b"", more_body=False))

    # --- Litestar hooks ---------------------------------------------------------------

    async def limit_session(self, request: Request[Any, Any, Any]) -> None:
        """Per-session limit of a browser call (before_request: after the guard verified the
        secret, before the body is read)."""
        state = request.scope.get("state", {})
        route = state.get(_ROUTE)
        record = state.get("session")  # set by require_client_secret
        if not isinstance(route, BrowserRoute) or record is None:
            return
        services = app_services(request)
        wait = await services.limits.check_session(record.id, route.bucket)
        if wait:
            bind_log_context(rate_limited="session", bucket=route.bucket)
            raise RateLimited("Too many requests for this checkout session", retry_after=wait)


def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    # The origin itself, never `*`: the page sends Authorization. No Allow-Credentials: the
    # credential is a header the page sets, not a cookie.
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
    ]


_ENVELOPE = msgspec.json.Encoder()


async def _send_error(
    send: Send, state: dict[str, Any], error: ServiceError, origin: str | None
) -> None:
    """The envelope for an error decided outside Litestar (its handlers cannot see it)."""
    body = _ENVELOPE.encode(
        ErrorEnvelope(
            code=error.code,
            message=error.message,
            recoverable=error.recoverable,
            request_id=str(state.get("request_id", "")),
        )
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"vary", b"Origin"),
    ]
    if error.retry_after is not None:
        headers.append((b"retry-after", str(error.retry_after).encode()))
    if origin is not None:
        headers += _cors_headers(origin)
    await send(
        HTTPResponseStartEvent(type="http.response.start", status=error.status, headers=headers)
    )
    await send(HTTPResponseBodyEvent(type="http.response.body", body=body, more_body=False))
