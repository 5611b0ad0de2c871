"""The SMS challenge's rules (pure): codes, masking, limits, and what a send or a verify does
to the session's challenge state. No I/O; the service writes the changes with their events.
"""

from __future__ import annotations

import re
import secrets
from typing import Literal

import msgspec

from shared.digits import ascii_digits_in
from shared.errors import (
    AlreadyConfirmed,
    ChallengeFailed,
    ChallengeLocked,
    RateLimited,
    ServiceError,
    SessionExpired,
    ValidationFailed,
)
from shared.sessions.model import SessionRecord, effective_status

CODE_DIGITS = 6
_CODE_SPACE = 10**CODE_DIGITS
_CODE_IN_TEXT = re.compile(rf"(?<!\d)(\d{{{CODE_DIGITS}}})(?!\d)")
# E.164 allows at most 15 digits; fewer than 7 is no number an SMS can reach.
_MIN_PHONE_DIGITS = 7
_MAX_PHONE_DIGITS = 15
# What may separate a phone's digits: spaces (and no-break spaces), dashes, dots, brackets.
_PHONE_PUNCTUATION = frozenset(" \u00a0-.()\u2010\u2011\u2012\u2013")
_MERCHANT_NAME_IN_SMS = 30  # keeps the message inside one 160-character SMS


class ChallengeLimits(msgspec.Struct, frozen=True, kw_only=True):
    """How long a code lives, how many go out and how fast, and how many guesses a session
    gets. Guesses count per session, not per code, so resending never buys more guesses:
    an attacker's odds stay at max_attempts in a million."""

    code_ttl_ms: int = 300_000
    max_sends: int = 3
    resend_interval_ms: int = 30_000
    max_attempts: int = 5


class ChallengeSendsExhausted(RateLimited):
    """Raised when a session has had every code it may get (waiting does not help)."""

    recoverable = False


class CodeNotSent(ServiceError):
    """Raised when the SMS provider did not take the code (a new one can be asked for)."""

    code = "processing_error"
    status = 502
    recoverable = True


class CodeNotSentForGood(CodeNotSent):
    """Raised when the SMS provider refused the code for good (asking again will not help)."""

    recoverable = False


class SentChallenge(msgspec.Struct, frozen=True, kw_only=True):
    """What a send tells the shopper: never the code, only a masked phone."""

    expires_at_ms: int
    phone_hint: str
    resends_left: int


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one verify and the changed record to write with its event."""

    kind: Literal["passed", "wrong_code", "expired"]
    record: SessionRecord
    attempts_left: int
    resends_left: int
    locked: bool = False


def new_code() -> str:
    """A uniformly random 6-digit code from the OS CSPRNG (leading zeros kept)."""
    return f"{secrets.randbelow(_CODE_SPACE):0{CODE_DIGITS}d}"


def code_secret(session_id: str, code: str) -> str:
    """What is hashed for a code: bound to its session, so a hash never verifies elsewhere."""
    return f"sms-challenge:{session_id}:{code}"


def code_in(text: str) -> str | None:
    """The code a message carries (the dev outbox's reader)."""
    match = _CODE_IN_TEXT.search(text)
    return match.group(1) if match else None


def sms_number(phone: str | None) -> str:
    """The phone to text as E.164 (`+` and 7-15 digits, the first not 0), spaces, dashes,
    dots and brackets dropped; raises when there is none usable (nothing is sent then)."""
    raw = (phone or "").strip()
    if not raw:
        raise ValidationFailed(
            "fraud_signals.phone: this checkout has no phone number to send a code to"
        )
    plus = raw[0] in "+\uff0b"  # full-width plus: what a Japanese IME types
    rest = raw[1:] if plus else raw
    digits = ascii_digits_in(rest)  # what an SMS gateway dials, whatever script was typed
    stray = any(not c.isdigit() and c not in _PHONE_PUNCTUATION for c in rest)
    if (
        not plus
        or stray
        or not _MIN_PHONE_DIGITS <= len(digits) <= _MAX_PHONE_DIGITS
        or digits.startswith("0")
    ):
        raise ValidationFailed(
            "fraud_signals.phone: not an international (E.164) number a code can be sent to,"
            " such as +15555550123"
        )
    return "+" + digits


def mask_phone(phone: str) -> str:
    """`+15555550123` -> `+1******0123`: the first and last four digits only."""
    digits = ascii_digits_in(phone)
    plus = "+" if phone.strip().startswith("+") else ""
    if len(digits) < _MIN_PHONE_DIGITS:  # too short to show any digit and still hide it
        return plus + "*" * len(digits)
    return f"{plus}{digits[0]}{'*' * (len(digits) - 5)}{digits[-4:]}"


def sms_text(code: str, merchant_name: str | None, limits: ChallengeLimits) -> str:
    """The message: code first (phones offer it for autofill), no link, a warning."""
    minutes = max(1, limits.code_ttl_ms // 60_000)
    name = (merchant_name or "").strip()[:_MERCHANT_NAME_IN_SMS]
    purpose = f"your {name} payment" if name else "your payment"
    return (
        f"{code} is the code to verify {purpose}. It expires in {minutes} minutes. "
        "Never share it with anyone."
    )


def attempts_left(record: SessionRecord, limits: ChallengeLimits) -> int:
    """Wrong codes the session may still enter."""
    return max(0, limits.max_attempts - record.challenge_failures)


def resends_left(record: SessionRecord, limits: ChallengeLimits) -> int:
    """Codes the session may still be sent."""
    return max(0, limits.max_sends - record.challenge_sends)


def require_open(record: SessionRecord, now_ms: int) -> None:
    """Only an open session can be challenged."""
    status = effective_status(record, now_ms)
    if status == "complete":
        raise AlreadyConfirmed("This checkout session is already paid")
    if status == "expired":
        raise SessionExpired("This checkout session has expired")


def require_challenge_level(level: str) -> None:
    """Only elevated risk is challenged: normal needs none, and highest is refused whatever a
    code says (the message does not tell a fraudster why)."""
    if level == "normal":
        raise ValidationFailed("No challenge needed for this checkout")
    if level != "elevated":
        raise ChallengeLocked("This checkout cannot be verified")


def _locked_error() -> ChallengeLocked:
    return ChallengeLocked("Too many wrong codes: this checkout can no longer be verified")


def check_send(record: SessionRecord, now_ms: int, limits: ChallengeLimits) -> None:
    """Raise when no code may be sent now: passed, locked, all sent, or too soon."""
    if record.challenge_passed:
        raise ValidationFailed("The challenge is already passed; confirm the payment")
    if record.challenge_locked:
        raise _locked_error()
    if record.challenge_sends >= limits.max_sends:
        raise ChallengeSendsExhausted("No more codes can be sent for this checkout")
    if record.challenge_sent_at_ms is not None:
        wait_ms = record.challenge_sent_at_ms + limits.resend_interval_ms - now_ms
        if wait_ms > 0:
            raise RateLimited(
                "A code was sent moments ago; wait before asking for another",
                retry_after=-(-wait_ms // 1000),  # whole seconds, rounded up
            )


def started(
    record: SessionRecord, code_hash: str, now_ms: int, limits: ChallengeLimits
) -> SessionRecord:
    """The record with a new live code (the previous one, if any, stops working)."""
    return msgspec.structs.replace(
        record,
        challenge_code_hash=code_hash,
        challenge_expires_at_ms=now_ms + limits.code_ttl_ms,
        challenge_sends=record.challenge_sends + 1,
        challenge_sent_at_ms=now_ms,
        updated_at_ms=now_ms,
        sequence=record.sequence + 1,
    )


def _attempts_text(left: int) -> str:
    return f"{left} attempt{'' if left == 1 else 's'} left"


def judge(record: SessionRecord, matches: bool, now_ms: int, limits: ChallengeLimits) -> Verdict:
    """Decide one verify on the record as read. `matches`: the entered code's hash equals the
    live code's (compared in constant time by the caller). Cases that change nothing raise."""
    if record.challenge_passed:
        raise ValidationFailed("The challenge is already passed; confirm the payment")
    if record.challenge_locked:
        raise _locked_error()
    left = attempts_left(record, limits)
    resends = resends_left(record, limits)
    if record.challenge_code_hash is None or record.challenge_expires_at_ms is None:
        if record.challenge_sends == 0:
            raise ValidationFailed("No code was sent yet: request one first")
        # The last code expired (a verify already said so): only a new one can pass.
        if resends == 0:
            raise ChallengeLocked("The code has expired and no more codes can be sent")
        raise ChallengeFailed(f"The code has expired; request a new one ({_attempts_text(left)})")
    if now_ms >= record.challenge_expires_at_ms:
        # Not a guess (the entered code is not even looked at), so no attempt is spent.
        changed = msgspec.structs.replace(
            record,
            challenge_code_hash=None,
            updated_at_ms=now_ms,
            sequence=record.sequence + 1,
        )
        return Verdict(kind="expired", record=changed, attempts_left=left, resends_left=resends)
    if matches:
        changed = msgspec.structs.replace(
            record,
            challenge_passed=True,
            challenge_code_hash=None,  # used once: a replay finds no live code
            updated_at_ms=now_ms,
            sequence=record.sequence + 1,
        )
        return Verdict(kind="passed", record=changed, attempts_left=left, resends_left=resends)
    failures = record.challenge_failures + 1
    locked = failures >= limits.max_attempts
    changed = msgspec.structs.replace(
        record,
        challenge_failures=failures,
        challenge_locked=locked,
        challenge_code_hash=None if locked else record.challenge_code_hash,
        updated_at_ms=now_ms,
        sequence=record.sequence + 1,
    )
    return Verdict(
        kind="wrong_code",
        record=changed,
        attempts_left=max(0, limits.max_attempts - failures),
        resends_left=resends,
        locked=locked,
    )


def verdict_error(verdict: Verdict) -> ServiceError | None:
    """The error a written verdict answers with (None: the challenge is passed)."""
    if verdict.kind == "passed":
        return None
    if verdict.locked:
        return _locked_error()
    if verdict.kind == "expired":
        if verdict.resends_left == 0:
            return ChallengeLocked("The code has expired and no more codes can be sent")
        return ChallengeFailed(
            f"The code has expired; request a new one ({_attempts_text(verdict.attempts_left)})"
        )
    return ChallengeFailed(f"Wrong code; {_attempts_text(verdict.attempts_left)}")
