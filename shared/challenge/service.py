"""SMS challenge: send a code to an elevated-risk session's phone, verify what the shopper
types. The rules are in model.py; every change is one compare-and-set write of the session
with its event, so racing requests are decided one after the other on fresh state."""

from __future__ import annotations

import structlog

from shared.challenge.model import (
    ChallengeLimits,
    CodeNotSent,
    CodeNotSentForGood,
    SentChallenge,
    attempts_left,
    check_send,
    code_secret,
    judge,
    mask_phone,
    new_code,
    require_challenge_level,
    require_open,
    resends_left,
    sms_number,
    sms_text,
    started,
    verdict_error,
)
from shared.challenge.sms import SmsError, SmsSender
from shared.checkout.service import RiskDecider
from shared.clock import Clock
from shared.crypto import DataCipher
from shared.errors import ChallengesOff, InternalError, NotFound, PaymentInProgress
from shared.sessions.model import SessionRecord
from shared.sessions.service import SessionService
from shared.sessions.store import WriteOutcome

log = structlog.get_logger(__name__)

# Re-reads of a session that changed under a send or verify before giving up.
_MAX_CAS_ATTEMPTS = 8


class ChallengeService:
    def __init__(
        self,
        sessions: SessionService,
        risk: RiskDecider,
        sender: SmsSender,
        cipher: DataCipher,
        clock: Clock,
        limits: ChallengeLimits | None = None,
        *,
        enabled: bool = True,
    ) -> None:
        self._sessions = sessions
        self._enabled = enabled
        self._risk = risk
        self._sender = sender
        self._cipher = cipher
        self._clock = clock
        self.limits = limits or ChallengeLimits()

    async def start(self) -> None:
        """Open the sender's client (the API's start-up)."""
        await self._sender.start()

    async def aclose(self) -> None:
        """Close the sender's client (the API's shutdown)."""
        await self._sender.aclose()

    async def send(self, record: SessionRecord) -> SentChallenge:
        """Text a new code to the session's phone; raises when none is needed or allowed."""
        require_open(record, self._clock.now_ms())
        # The level confirm acts on (scored inline when the job has not run; timing
        # re-checked), so the challenge is offered exactly where confirm will ask for it.
        require_challenge_level(await self._risk.decide(record, False))
        if not self._enabled:
            raise ChallengesOff()
        signals = (
            await self._sessions.load_fraud_signals(record.id) if record.has_fraud_signals else None
        )
        phone = sms_number(signals.phone if signals is not None else None)
        limits = self.limits
        for _ in range(_MAX_CAS_ATTEMPTS):
            current = await self._fresh(record.id)
            now = self._clock.now_ms()
            require_open(current, now)
            check_send(current, now, limits)
            code = new_code()
            changed = started(
                current, self._cipher.secret_hash(code_secret(current.id, code)), now, limits
            )
            outcome = await self._sessions.record_challenge_sent(
                current,
                changed,
                resends_left=resends_left(changed, limits),
                attempts_left=attempts_left(changed, limits),
            )
            if self._written(outcome):
                break
        else:
            raise InternalError("session changed concurrently too often; retry")
        # Sent only once its hash is stored: a racing send loses the write and sends nothing,
        # so the shopper never holds a code that cannot pass.
        branding = changed.branding
        text = sms_text(code, branding.merchant_display_name if branding else None, limits)
        try:
            await self._sender.send(phone, text, reference=changed.id)
        except SmsError as exc:
            # The type only: a provider's message may quote the number.
            log.error("challenge.send_failed", session_id=changed.id, error=type(exc).__name__)
            if not exc.transient:
                raise CodeNotSentForGood("The code could not be sent to this phone") from None
            # The code is counted as sent (after a timeout it may have gone out), so a new
            # one waits out the resend interval: one request never sends two different codes.
            raise CodeNotSent(
                "The code could not be sent; ask for a new one shortly",
                retry_after=limits.resend_interval_ms // 1000,
            ) from None
        log.info("challenge.sent", session_id=changed.id, sends=changed.challenge_sends)
        return SentChallenge(
            expires_at_ms=changed.challenge_expires_at_ms or now,
            phone_hint=mask_phone(phone),
            resends_left=resends_left(changed, limits),
        )

    async def verify(self, record: SessionRecord, code: str) -> None:
        """Check a code once: passes the challenge, or raises challenge_failed (with the
        attempts left) and counts the wrong code; the last allowed wrong code locks it."""
        limits = self.limits
        for _ in range(_MAX_CAS_ATTEMPTS):
            current = await self._fresh(record.id)
            now = self._clock.now_ms()
            require_open(current, now)
            stored = current.challenge_code_hash
            matches = stored is not None and self._cipher.secret_matches(
                code_secret(current.id, code), stored
            )
            verdict = judge(current, matches, now, limits)
            if verdict.kind == "passed":
                outcome = await self._sessions.record_challenge_passed(current, verdict.record)
            else:
                outcome = await self._sessions.record_challenge_failed(
                    current,
                    verdict.record,
                    reason=verdict.kind,
                    attempts_left=verdict.attempts_left,
                    locked=verdict.locked,
                )
            if not self._written(outcome):
                continue  # another verify or send changed it first: judge the fresh state
            log.info(
                "challenge.verified",
                session_id=current.id,
                outcome=verdict.kind,
                attempts_left=verdict.attempts_left,
                locked=verdict.locked,
            )
            error = verdict_error(verdict)
            if error is not None:
                raise error
            return
        raise InternalError("session changed concurrently too often; retry")

    async def _fresh(self, session_id: str) -> SessionRecord:
        record = await self._sessions.load(session_id)
        if record is None:
            raise NotFound(f"No such hosted session: '{session_id[:40]}'")
        return record

    @staticmethod
    def _written(outcome: WriteOutcome) -> bool:
        """True when the change was written; False on a conflict (decide again)."""
        if outcome.result == "held":
            raise PaymentInProgress("A payment of this session is in progress")
        return outcome.result == "ok"
