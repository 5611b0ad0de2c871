"""Wire types of the event listing (the envelopes are the stored events, field for field)."""

from __future__ import annotations

import msgspec

from shared.events.model import Event


class EventList(msgspec.Struct, frozen=True, kw_only=True):
    object: str = "list"
    data: list[Event]
    has_more: bool
    # Pass as `starting_after` for the next (older) page; null when there is none.
    next_cursor: str | None
