"""The one error tree: each class declares its wire code, HTTP status and recoverability.

The seed's list of codes is closed, so transport-level failures (401, 404, 413, …) reuse
`validation_error` and the HTTP status tells them apart (DESIGN.md). The code is a property
of each class, not of its ancestry: those failures are not `ValidationFailed`, so a handler of
rejected input (`except ValidationFailed`) never swallows a 401, 404 or 413.
"""

from __future__ import annotations

from typing import ClassVar, Literal

ErrorCode = Literal[
    "card_declined",
    "expired_card",
    "incorrect_cvc",
    "insufficient_funds",
    "processing_error",
    "network_error",
    "session_expired",
    "validation_error",
    "origin_not_allowed",
    "rate_limited",
    "challenge_required",
    "challenge_failed",
    "duplicate_payment",
    "already_confirmed",
    "insufficient_scope",
]


class ServiceError(Exception):
    """Base of every error that reaches a client as the envelope."""

    code: ClassVar[ErrorCode] = "processing_error"
    status: ClassVar[int] = 500
    recoverable: ClassVar[bool] = True
    # Under an Idempotency-Key, this error is the request's saved answer, replayed to a retry:
    # the endpoint ran and reached a result about the resource. Rejected input, conflicts
    # with a concurrent change and faults are not saved, so a retry runs again (Stripe's rule).
    replayed: ClassVar[bool] = False

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class ValidationFailed(ServiceError):
    """Raised when input is malformed or breaks a rule; the message names the field."""

    code = "validation_error"
    status = 400
    recoverable = False


class SemanticValidationFailed(ValidationFailed):
    """Raised when the body parsed but its content is inconsistent (e.g. item totals)."""

    status = 422


class NotAuthenticated(ServiceError):
    """Raised when a credential is missing, malformed, expired or fails verification."""

    code = "validation_error"
    status = 401
    recoverable = False


class NotFound(ServiceError):
    """Raised for an unknown resource, including another account's (never tells them apart)."""

    code = "validation_error"
    status = 404
    recoverable = False
    replayed = True


class PayloadTooLarge(ServiceError):
    """Raised when a request body exceeds the configured limit."""

    code = "validation_error"
    status = 413
    recoverable = False


class UnsupportedMediaType(ValidationFailed):
    """Raised when a body is not JSON."""

    status = 415


class MethodNotAllowed(ValidationFailed):
    """Raised when a route exists but not for this method."""

    status = 405


class IdempotencyKeyReused(ValidationFailed):
    """Raised when an Idempotency-Key is reused with a different request."""

    status = 422


class IdempotencyInFlight(ValidationFailed):
    """Raised when the first request with an Idempotency-Key is still running."""

    status = 409
    recoverable = True


class InsufficientScope(ServiceError):
    """Raised when a valid credential lacks the right (other account, wallet scope, group)."""

    code = "insufficient_scope"
    status = 403
    recoverable = False


class AlreadyConfirmed(ServiceError):
    """Raised when a completed session is asked to change."""

    code = "already_confirmed"
    status = 409
    recoverable = False
    replayed = True


class PaymentInProgress(ServiceError):
    """Raised when a change meets a session held by a charge in flight (retry shortly)."""

    code = "already_confirmed"
    status = 409
    recoverable = True


class SessionExpired(ServiceError):
    """Raised when an expired session is asked to change, or its client secret is used."""

    code = "session_expired"
    status = 410
    recoverable = False
    replayed = True


class RateLimited(ServiceError):
    """Raised when a caller exceeds a rate limit; carries Retry-After."""

    code = "rate_limited"
    status = 429
    recoverable = True


class StoreUnavailable(ServiceError):
    """Raised when Redis cannot be reached or times out; the request changed nothing."""

    code = "network_error"
    status = 503
    recoverable = True


class InternalError(ServiceError):
    """Raised for a fault of ours; logged with the request id, never with details out."""

    code = "processing_error"
    status = 500
    recoverable = True


class CardDeclined(ServiceError):
    """Raised when the processor declines the card (another card may work)."""

    code: ClassVar[ErrorCode] = "card_declined"
    status = 402
    recoverable = True
    replayed = True


class FraudDeclined(CardDeclined):
    """Raised when the risk decision refuses the payment (told as a plain decline)."""

    recoverable = False


class ExpiredCard(CardDeclined):
    """Raised when the card's expiry has passed."""

    code = "expired_card"


class IncorrectCvc(CardDeclined):
    """Raised when the processor rejects the card's security code."""

    code = "incorrect_cvc"


class InsufficientFunds(CardDeclined):
    """Raised when the processor reports insufficient funds."""

    code = "insufficient_funds"


_CARD_ERRORS: dict[str, type[CardDeclined]] = {
    cls.code: cls for cls in (CardDeclined, ExpiredCard, IncorrectCvc, InsufficientFunds)
}


def card_error(code: str, message: str) -> CardDeclined:
    """The 402 error for a processor's decline code."""
    return _CARD_ERRORS.get(code, CardDeclined)(message)


class ProcessorFailed(ServiceError):
    """Raised when the processor could not process the payment (safe to retry)."""

    code = "processing_error"
    status = 502
    recoverable = True


class ProcessorUnreachable(ServiceError):
    """Raised when the processor did not answer; a retry learns the outcome, never doubles it."""

    code = "network_error"
    status = 503
    recoverable = True


class ChallengeRequired(ServiceError):
    """Raised when an elevated-risk session confirms without a passed SMS challenge."""

    code = "challenge_required"
    status = 403
    recoverable = True


class ChallengesOff(ChallengeRequired):
    """Raised for an elevated-risk session where SMS challenges are switched off
    (HS_SMS_CHALLENGES=off): it can never be verified, so it can never be paid."""

    recoverable = False

    def __init__(
        self,
        message: str = (
            "This checkout needs SMS verification, which is switched off for this service:"
            " it cannot be paid"
        ),
    ) -> None:
        super().__init__(message)


class ChallengeFailed(ServiceError):
    """Raised when an SMS code is wrong or expired (recoverable while attempts remain)."""

    code = "challenge_failed"
    status = 403
    recoverable = True


class ChallengeLocked(ChallengeFailed):
    """Raised when the challenge's attempts are spent."""

    recoverable = False


class DuplicatePayment(ServiceError):
    """Raised when the same method paid the same amount for the customer moments ago."""

    code = "duplicate_payment"
    status = 409
    recoverable = False
    replayed = True


class OriginNotAllowed(ServiceError):
    """Raised when a browser call comes from an origin the account does not allow."""

    code = "origin_not_allowed"
    status = 403
    recoverable = False


class PaymentAttemptsExhausted(RateLimited):
    """Raised when a session has spent its failed-payment attempts (card-testing guard)."""

    recoverable = False
