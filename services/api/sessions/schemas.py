"""Wire types of the merchant's session endpoints (responses are built by converters)."""

from __future__ import annotations

import msgspec

from shared.sessions.model import SessionView
from shared.sessions.params import CreateSessionParams, UpdateSessionParams
from shared.sessions.service import CreatedSession


class SessionList(msgspec.Struct, frozen=True, kw_only=True):
    object: str = "list"
    data: list[SessionView]
    has_more: bool


__all__ = [
    "CreateSessionParams",
    "CreatedSession",
    "SessionList",
    "SessionView",
    "UpdateSessionParams",
]
