"""Merchant event listing and replay (newest first). Thin: authorise, call the reader."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter, QueryParameter

from services.api.auth.guards import ADMIN_PARAMETERS, principal_of, require_admin
from services.api.errors import ErrorEnvelope
from services.api.events.schemas import EventList
from services.api.lifespan import core_of
from services.api.middleware import bind_log_context
from services.api.pagination import STARTING_AFTER_EVENTS
from services.api.routing import get
from shared.errors import ValidationFailed
from shared.events.model import EVENT_CLASSES, EVENT_TYPES

AnyRequest = Request[Any, Any, Any]

# The last event's id (`evt_…`, the convention of every list), or a stream entry id
# (`<ms>-<seq>`, opaque: what `next_cursor` holds).
CURSOR_PATTERN = r"^(evt_[0-9A-Za-z]{20}|[0-9]{1,20}-[0-9]{1,20})$"
# Each half of a stream id is an unsigned 64-bit number: 20 digits can exceed it, and Redis
# answers such an id with an error (which was a 500).
_STREAM_ID_MAX = 2**64 - 1


def stream_cursor(value: str) -> str:
    """The cursor in its canonical form (an event id as it is; a stream id without leading
    zeros); 400 when a half of a stream id is out of range."""
    if value.startswith("evt_"):
        return value
    ms, _, seq = value.partition("-")
    ms_n, seq_n = int(ms), int(seq)
    if ms_n > _STREAM_ID_MAX or seq_n > _STREAM_ID_MAX:
        raise ValidationFailed("starting_after: not a cursor this API gave (out of range)")
    return f"{ms_n}-{seq_n}"


_ERRORS = {
    status: ResponseSpec(data_container=ErrorEnvelope, description=text)
    for status, text in {
        400: "validation_error: malformed or out-of-range cursor, `starting_after` not an "
        "event of this account still kept, unknown type, limit outside 1-100, or header",
        401: "validation_error: missing or invalid admin token",
        403: "insufficient_scope: the token may not act on this account",
        503: "network_error: the store is briefly unavailable (recoverable)",
    }.items()
}


class EventController(Controller):
    path = "/v1/events"
    guards = [require_admin]  # noqa: RUF012  (Litestar reads the class attribute)
    parameters = ADMIN_PARAMETERS
    tags = ["events (merchant)"]  # noqa: RUF012
    security = [{"BearerAuth": []}]  # noqa: RUF012

    @get(
        "/",
        summary="List the account's events, newest first (replay)",
        description=(
            "Events kept in the stream (at least HS_EVENT_MIN_RETENTION_SECONDS) are listed "
            "newest first. Like every list: pass the last event's id as `starting_after` for "
            "the next (older) page. `next_cursor` (a stream position) works too, and is the "
            "way on when a filtered page ends with `has_more` but no event (a filter may "
            "leave a page short of `limit`); `0-0` is a valid position with nothing older. "
            f"Types: {', '.join(EVENT_TYPES)}."
        ),
        responses=_ERRORS,
    )
    async def list_events(
        self,
        request: AnyRequest,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 10,
        starting_after: Annotated[
            str | None,
            Parameter(
                max_length=41,
                pattern=CURSOR_PATTERN,
                description=STARTING_AFTER_EVENTS,
            ),
        ] = None,
        event_type: Annotated[str | None, QueryParameter(name="type", max_length=64)] = None,
        session_id: Annotated[str | None, Parameter(max_length=64)] = None,
    ) -> EventList:
        kind = None if event_type is None else EVENT_CLASSES.get(event_type)
        if event_type is not None and kind is None:
            raise ValidationFailed(f"type: must be one of {', '.join(EVENT_TYPES)}")
        if session_id is not None:
            bind_log_context(session_id=session_id)
        page = await core_of(request).events.page(
            principal_of(request).account_uid,
            limit=limit,
            starting_after=None if starting_after is None else stream_cursor(starting_after),
            kind=kind,
            session_id=session_id,
        )
        return EventList(data=page.events, has_more=page.has_more, next_cursor=page.next_cursor)
