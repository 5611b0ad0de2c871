"""The shopper's SMS challenge (docs/challenge.md): ask for a code, then verify it. Thin."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request
from litestar.params import JSONBody

from services.api.auth.browser import require_client_secret, session_of
from services.api.body import strict_body
from services.api.lifespan import core_of
from services.api.openapi_errors import BROWSER_ERRORS, error_responses
from services.api.routing import post
from shared.challenge.model import CODE_DIGITS, SentChallenge
from shared.sessions.model import iso_ms

AnyRequest = Request[Any, Any, Any]


class ChallengeSent(msgspec.Struct, frozen=True, kw_only=True):
    """A code went out: when it expires, where it went (masked), and how many more may."""

    status: Literal["sent"] = "sent"
    expires_at: str
    phone_hint: str
    resends_left: int


class VerifyParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of POST …/{id}/challenge/verify."""

    code: Annotated[str, msgspec.Meta(pattern=f"^[0-9]{{{CODE_DIGITS}}}$", examples=["123456"])]


class ChallengeVerified(msgspec.Struct, frozen=True, kw_only=True):
    """The challenge is passed: confirm may now proceed."""

    status: Literal["verified"] = "verified"


def _to_sent(sent: SentChallenge) -> ChallengeSent:
    return ChallengeSent(
        expires_at=iso_ms(sent.expires_at_ms),
        phone_hint=sent.phone_hint,
        resends_left=sent.resends_left,
    )


_errors = partial(
    error_responses,
    {**BROWSER_ERRORS, 409: "already_confirmed: the session is paid, or a payment is in flight"},
)


class ChallengeController(Controller):
    path = "/v1/hosted-sessions/{session_id:str}"
    guards = [require_client_secret]  # noqa: RUF012  (Litestar reads the class attribute)
    tags = ["checkout (browser)"]  # noqa: RUF012
    security = [{"BearerAuth": []}]  # noqa: RUF012

    @post(
        "/challenge",
        status_code=200,
        summary="Text a one-time code to the shopper's phone (elevated-risk sessions)",
        opt={"scope": "payment"},
        responses=_errors(
            s400=(
                "validation_error: no challenge needed, already passed, or no E.164 phone "
                "(fraud_signals.phone)"
            ),
            s403=(
                "insufficient_scope (wallet credential) | origin_not_allowed | "
                "challenge_failed (not recoverable: locked, or this session cannot be verified)"
                " | challenge_required (not recoverable: SMS challenges are switched off)"
            ),
            s429=(
                "rate_limited: a code was sent moments ago (see Retry-After), or every code "
                "this session may get was sent (not recoverable)"
            ),
            s502=(
                "processing_error: the SMS could not be sent; recoverable (throttled, provider "
                "fault, no answer): ask again after Retry-After; not recoverable: the provider "
                "refused it"
            ),
        ),
    )
    async def send_code(self, request: AnyRequest) -> ChallengeSent:
        """Send a new code (the previous one stops working)."""
        sent = await core_of(request).challenge.send(session_of(request))
        return _to_sent(sent)

    @post(
        "/challenge/verify",
        status_code=200,
        summary="Verify the code the shopper received",
        opt={"scope": "payment"},
        responses=_errors(
            s400="validation_error: not a 6-digit code, no code sent yet, or already passed",
            s403=(
                "challenge_failed: wrong or expired code (recoverable, attempts left in the "
                "message) | challenge_failed not recoverable: attempts spent, the challenge is "
                "locked | insufficient_scope | origin_not_allowed"
            ),
        ),
        dto=strict_body(VerifyParams),
        return_dto=None,
    )
    async def verify_code(
        self, request: AnyRequest, data: JSONBody[VerifyParams]
    ) -> ChallengeVerified:
        """Pass the challenge with the code, or spend an attempt."""
        params = data  # decoded strictly, once (services/api/body.py)
        await core_of(request).challenge.verify(session_of(request), params.code)
        return ChallengeVerified()
