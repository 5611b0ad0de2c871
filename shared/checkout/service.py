"""Confirm: charge a session once, never twice, never under an expired or held session.

The order of checks is the contract's: credential and scope (route guard), status, method and
billing details, recent declines of the card or client address (card-testing guard), risk
(scored inline if the job has not run; timing re-checked; elevated needs a passed challenge;
highest is refused), the fee quote, duplicate payments, then the hold, the charge, and its
outcome written with its event.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
from datetime import UTC, datetime
from typing import Protocol, assert_never

import msgspec
import structlog

from shared.checkout.model import (
    AchInput,
    ApplePayInput,
    BillingDetails,
    CardInput,
    ChargeHold,
    ConfirmParams,
    ConfirmResult,
    PaymentMethodInput,
    PaypalInput,
    ResolvedMethod,
    SavedInput,
)
from shared.checkout.store import CheckoutStore
from shared.clock import Clock
from shared.crypto import DataCipher
from shared.errors import (
    AlreadyConfirmed,
    CardDeclined,
    ChallengeRequired,
    ChallengesOff,
    DuplicatePayment,
    ExpiredCard,
    FraudDeclined,
    PaymentAttemptsExhausted,
    PaymentInProgress,
    ProcessorFailed,
    ProcessorUnreachable,
    RateLimited,
    SessionExpired,
    ValidationFailed,
    card_error,
)
from shared.fees.model import FeeSchedule
from shared.ids import new_payment_method_id
from shared.payments import cards
from shared.payments.processor import (
    ChargeOutcome,
    ChargeRequest,
    Processor,
    ProcessorTimeout,
    card_outcome,
)
from shared.redis.ratelimit import CardTestingGuard
from shared.sessions.model import PaymentInfo, PaymentMethodType, SessionRecord, effective_status
from shared.sessions.service import SessionService
from shared.wallet.model import SavedMethod
from shared.wallet.store import WalletStore

log = structlog.get_logger(__name__)

_MAX_ATTEMPTS = 4  # re-reads of a session that changed under a confirm
MAX_FAILED_PAYMENTS = 5  # per session: the card-testing guard's last line
DUPLICATE_WINDOW_SECONDS = 600
CHARGE_TIMEOUT_SECONDS = 10.0
# A hold older than this whose request died with its process is reconciled (asked of the
# processor by its key) rather than waited for.
STALE_HOLD_MS = int(CHARGE_TIMEOUT_SECONDS * 1000) + 20_000
# The test card every provider's test mode flags: refused before any charge.
HIGHEST_RISK_TEST_CARD = "4100000000000019"


class RiskDecider(Protocol):
    async def decide(
        self, record: SessionRecord, highest_risk_card: bool, fraud_blob: bytes | None = None
    ) -> str:
        """The risk level confirm acts on: `normal`, `elevated` or `highest`. `fraud_blob`:
        the session's encrypted signals if the caller read them already (else read here)."""
        ...


class FeeQuoter(Protocol):
    async def fee_for(
        self, record: SessionRecord, quote_id: str | None, method: str, schedule: FeeSchedule
    ) -> int:
        """The fee to charge on top of the amount (a valid quote's), or raise; `schedule` is
        the account's current one (confirm reads it with the charge hold)."""
        ...


class NoFees:
    """Until an account configures a fee schedule, nothing is added."""

    async def fee_for(
        self, record: SessionRecord, quote_id: str | None, method: str, schedule: FeeSchedule
    ) -> int:
        return 0


class CheckoutService:
    def __init__(
        self,
        sessions: SessionService,
        store: CheckoutStore,
        wallet: WalletStore,
        processor: Processor,
        risk: RiskDecider,
        fees: FeeQuoter,
        cipher: DataCipher,
        clock: Clock,
        *,
        card_testing: CardTestingGuard | None = None,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._wallet = wallet
        self._processor = processor
        self._risk = risk
        self._fees = fees
        self._cipher = cipher
        self._clock = clock
        self._fingerprint_key = cipher.secret_hash("card-fingerprint").encode()
        self._card_testing = card_testing
        self._challenges_on = True

    def without_sms_challenges(self) -> CheckoutService:
        """This service, refusing elevated-risk sessions for good (HS_SMS_CHALLENGES=off)."""
        refusing = copy.copy(self)
        refusing._challenges_on = False
        return refusing

    async def confirm(
        self,
        record: SessionRecord,
        params: ConfirmParams,
        *,
        client_ip: str | None = None,
        fraud_blob: bytes | None = None,
    ) -> ConfirmResult:
        """Charge the session once; raises the error whose code the browser should show.
        `client_ip` is what the card-testing guard counts declines by (with the card);
        `fraud_blob` the session's encrypted signals as the caller read them with the record
        (written once, at create), which spares the risk check a read."""
        for _ in range(_MAX_ATTEMPTS):
            self._require_payable(record)
            # The fee needs the account's settings: read with the hold, one round trip.
            hold, settings = await self._store.hold_and_settings(record.id, record.account_uid)
            if hold is not None:
                # A charge is (or was) in flight: settle it before anything else.
                try:
                    return await self._settle_existing(record, hold)
                except CardDeclined:
                    await self._note_decline(record, hold.method, client_ip)
                    raise
            method = await self._resolve_method(record, params.payment_method)
            self._check_billing(record, params.billing_details)
            if self._card_testing is not None:
                # Before risk, the SMS challenge and the charge: a card or device that keeps
                # failing across sessions stops here (the per-session cap cannot see that).
                await self._card_testing.check(record.account_uid, method.fingerprint, client_ip)
            level = await self._risk.decide(
                record, method.fingerprint == self._highest_fp(), fraud_blob
            )
            if level == "highest":
                raise FraudDeclined("The payment was declined")
            if level == "elevated" and not record.challenge_passed:
                if not self._challenges_on:
                    raise ChallengesOff()
                raise ChallengeRequired("Verify with the code sent by SMS to continue")
            fee = await self._fees.fee_for(record, params.quote_id, method.type, settings.fees)
            total = record.amount + fee
            digest = self._duplicate_digest(record, method, total)
            now = self._clock.now_ms()
            hold = ChargeHold(
                state="in_flight",
                idempotency_key=f"{record.id}:{record.failed_payments + 1}",
                amount=total,
                fee=fee,
                method=method,
                started_at_ms=now,
            )
            # The duplicate-payment check and the hold are one step (checkout/store.py).
            taken = await self._store.acquire_hold(
                record.id,
                record.sequence,
                hold,
                account_uid=record.account_uid,
                digest=digest,
                now_ms=now,
                window_seconds=DUPLICATE_WINDOW_SECONDS,
            )
            if taken == "duplicate":
                raise DuplicatePayment(
                    "This payment method paid the same amount for this customer moments ago"
                )
            if taken == "ok":
                try:
                    return await self._charge(record, hold, digest)
                except CardDeclined:
                    # Only the processor's declines count: the signal card testing makes.
                    await self._note_decline(record, method, client_ip)
                    raise
            if taken == "held":
                raise PaymentInProgress("A payment of this session is in progress")
            # The session changed since it was read (risk just scored, expired, paid by a
            # concurrent confirm): decide again on the fresh version.
            fresh = await self._sessions.load(record.id)
            if fresh is None:
                raise SessionExpired("This checkout session has expired")
            record = fresh
        raise PaymentInProgress("This session is changing; retry")

    async def _note_decline(
        self, record: SessionRecord, method: ResolvedMethod, client_ip: str | None
    ) -> None:
        if self._card_testing is not None:
            await self._card_testing.record_failure(
                record.account_uid, method.fingerprint, client_ip
            )

    def _require_payable(self, record: SessionRecord) -> None:
        status = effective_status(record, self._clock.now_ms())
        if status == "complete":
            raise AlreadyConfirmed("This checkout session is already paid")
        if status == "expired":
            raise SessionExpired("This checkout session has expired")
        if record.failed_payments >= MAX_FAILED_PAYMENTS:
            raise PaymentAttemptsExhausted("Too many failed payment attempts for this checkout")

    def _highest_fp(self) -> str:
        return cards.fingerprint(self._fingerprint_key, HIGHEST_RISK_TEST_CARD)

    async def _charge(self, record: SessionRecord, hold: ChargeHold, digest: str) -> ConfirmResult:
        request = ChargeRequest(
            idempotency_key=hold.idempotency_key,
            account_uid=record.account_uid,
            amount=hold.amount,
            currency=record.currency,
            kind=hold.method.type,
            token=hold.method.token,
        )
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can drop a cancellation.
            async with asyncio.timeout(CHARGE_TIMEOUT_SECONDS):
                outcome = await self._processor.charge(request)
        except (ProcessorTimeout, TimeoutError):
            # The charge may have happened: keep the hold, marked unknown. The next confirm
            # asks the processor with the same key and never charges twice.
            await self._store.put_hold(record.id, msgspec.structs.replace(hold, state="unknown"))
            log.warning("confirm.processor_timeout", session_id=record.id)
            raise ProcessorUnreachable(
                "The payment processor did not answer; retry to learn the outcome"
            ) from None
        return await self._finish(record, hold, outcome, digest)

    async def _finish(
        self, record: SessionRecord, hold: ChargeHold, outcome: ChargeOutcome, digest: str
    ) -> ConfirmResult:
        if outcome.status == "succeeded" and outcome.charge_id:
            saved_id = await self._maybe_save(record, hold.method)
            payment = PaymentInfo(
                method=hold.method.type,
                brand=hold.method.brand,
                last4=hold.method.last4,
                exp_month=hold.method.exp_month,
                exp_year=hold.method.exp_year,
                charge_id=outcome.charge_id,
                amount=hold.amount,
                fee=hold.fee,
                saved_method_id=saved_id or hold.method.saved_method_id,
            )
            memo = self._store.payment_memo(
                record.account_uid,
                digest,
                record.id,
                self._clock.now_ms(),
                DUPLICATE_WINDOW_SECONDS,
            )
            # `record` is current: a held session changes only by this outcome.
            done = await self._sessions.complete_payment(
                record.id, payment, current=record, memo=memo
            )
            log.info("confirm.succeeded", session_id=record.id, method=hold.method.type)
            return ConfirmResult(
                status="complete",
                payment_status="paid",
                session_id=record.id,
                amount=hold.amount,
                fee=hold.fee,
                success_url=done.success_url,
            )
        code = outcome.code or "processing_error"
        await self._sessions.record_payment_failure(
            record.id, code, outcome.message, current=record
        )
        log.info("confirm.failed", session_id=record.id, code=code)
        if code == "processing_error":
            raise ProcessorFailed(outcome.message or "The payment could not be processed")
        raise card_error(code, outcome.message or "The payment was declined")

    async def _settle_existing(self, record: SessionRecord, hold: ChargeHold) -> ConfirmResult:
        """A hold is there: wait for a live charge, or learn a dead/timed-out one's outcome."""
        age = self._clock.now_ms() - hold.started_at_ms
        if hold.state == "in_flight" and age < STALE_HOLD_MS:
            raise PaymentInProgress("A payment of this session is in progress")
        outcome = await self._processor.retrieve(hold.idempotency_key)
        digest = self._duplicate_digest(record, hold.method, hold.amount)
        if outcome is None:
            if hold.state == "unknown":
                # Asked but unanswered, and the processor has no record: charge with the
                # same key (the processor dedupes it if the first call lands late).
                return await self._charge(record, hold, digest)
            # The request died before reaching the processor: nothing was charged.
            await self._store.drop_hold(record.id)
            raise PaymentInProgress("The previous attempt did not complete; retry")
        return await self._finish(record, hold, outcome, digest)

    async def reconcile(self, session_id: str) -> bool:
        """Settle a stale hold no shopper came back for (the expiry loop calls this).
        True when the hold was settled."""
        hold = await self._store.get_hold(session_id)
        record = await self._sessions.load(session_id)
        if hold is None or record is None:
            return False
        if self._clock.now_ms() - hold.started_at_ms < STALE_HOLD_MS:
            return False
        outcome = await self._processor.retrieve(hold.idempotency_key)
        if outcome is None:
            await self._sessions.record_payment_failure(
                session_id, "processing_error", "The payment did not complete"
            )
            return True
        # A failure is recorded with its event by _finish; there is nobody to tell.
        with contextlib.suppress(CardDeclined, ProcessorFailed):
            await self._finish(
                record, hold, outcome, self._duplicate_digest(record, hold.method, hold.amount)
            )
        return True

    async def _resolve_method(
        self, record: SessionRecord, method: PaymentMethodInput
    ) -> ResolvedMethod:
        resolved = await self._resolve(record, method)
        if resolved.type not in record.allowed_methods:
            raise ValidationFailed(
                f"payment_method.type: '{resolved.type}' is not allowed for this session"
            )
        return resolved

    def tokenize_card(self, card: CardInput) -> ResolvedMethod:
        """Check a typed card and turn it into a processor token plus what may be shown.

        The PAN and CVC go no further than this function (memory only)."""
        pan = cards.digits_only(card.number)
        if not cards.luhn_valid(pan):
            raise ValidationFailed("payment_method.number: not a valid card number")
        now = datetime.fromtimestamp(self._clock.now_ms() / 1000, tz=UTC)
        if (card.exp_year, card.exp_month) < (now.year, now.month):
            raise ExpiredCard("The card has expired")
        if not cards.ascii_digits(card.cvc):
            raise ValidationFailed("payment_method.cvc: 3 or 4 digits 0-9")
        brand = cards.brand_of(pan)
        if brand == "amex" and len(card.cvc) != 4:
            raise ValidationFailed("payment_method.cvc: American Express uses 4 digits")
        fp = cards.fingerprint(self._fingerprint_key, pan)
        return ResolvedMethod(
            type="card",
            token=f"tok_card_{card_outcome(pan)}_{fp[:12]}",
            fingerprint=fp,
            brand=brand,
            last4=pan[-4:],
            exp_month=card.exp_month,
            exp_year=card.exp_year,
        )

    async def save_card(self, record: SessionRecord, card: CardInput) -> tuple[SavedMethod, bool]:
        """Wallet scope: save a card to the session's customer (no charge). Returns the saved
        method and whether it is new (the same card saved before keeps its first id)."""
        if not record.customer_id:
            raise ValidationFailed("This session has no customer_id: there is no wallet")
        method = self.tokenize_card(card)
        saved = self._saved_from(method)
        if await self._wallet.save(record.account_uid, record.customer_id, saved):
            return saved, True
        for existing in await self._wallet.list(record.account_uid, record.customer_id):
            if existing.fingerprint == method.fingerprint:
                return existing, False
        raise RateLimited("This wallet is full; delete a saved method first")

    def _saved_from(self, method: ResolvedMethod) -> SavedMethod:
        return SavedMethod(
            id=new_payment_method_id(),
            type=method.type,
            brand=method.brand,
            last4=method.last4,
            exp_month=method.exp_month,
            exp_year=method.exp_year,
            fingerprint=method.fingerprint,
            token=method.token,
            created_at_ms=self._clock.now_ms(),
        )

    async def _resolve(self, record: SessionRecord, method: PaymentMethodInput) -> ResolvedMethod:
        match method:
            case CardInput():
                return self.tokenize_card(method)
            case AchInput(token=token):
                return self._token_method("ach", token)
            case ApplePayInput(token=token):
                return self._token_method("apple_pay", token)
            case PaypalInput(token=token):
                return self._token_method("paypal", token)
            case SavedInput(id=method_id):
                return await self._saved_method(record, method_id)
            case _:
                assert_never(method)

    def _token_method(self, kind: PaymentMethodType, token: str) -> ResolvedMethod:
        """A wallet or bank token: fingerprinted by the token (keyed), as the processor names it."""
        fp = hashlib.sha256(self._fingerprint_key + token.encode()).hexdigest()[:32]
        if not token.startswith("tok_"):
            token = f"tok_{kind}_{token}"
        return ResolvedMethod(type=kind, token=token, fingerprint=fp)

    async def _saved_method(self, record: SessionRecord, method_id: str) -> ResolvedMethod:
        saved = (
            await self._wallet.get(record.account_uid, record.customer_id, method_id)
            if record.customer_id
            else None
        )
        if saved is None:
            raise ValidationFailed("payment_method.id: no such saved method for this customer")
        return ResolvedMethod(
            type=saved.type,
            token=saved.token,
            fingerprint=saved.fingerprint,
            brand=saved.brand,
            last4=saved.last4,
            exp_month=saved.exp_month,
            exp_year=saved.exp_year,
            saved_method_id=saved.id,
        )

    @staticmethod
    def _check_billing(record: SessionRecord, billing: BillingDetails) -> None:
        for field in record.required_avs_fields:
            value = getattr(billing, field)
            if value is None or not value.strip():
                raise ValidationFailed(f"billing_details.{field}: required for this session")

    def _duplicate_digest(self, record: SessionRecord, method: ResolvedMethod, total: int) -> str:
        customer = record.customer_id or "-"
        return self._cipher.secret_hash(f"dup:{customer}:{method.fingerprint}:{total}")[:32]

    async def _maybe_save(self, record: SessionRecord, method: ResolvedMethod) -> str | None:
        """setup_future_usage saves a new method to the customer's wallet on success."""
        if record.setup_future_usage == "off" or not record.customer_id:
            return None
        if method.saved_method_id:
            return None
        saved = self._saved_from(method)
        return (
            saved.id
            if await self._wallet.save(record.account_uid, record.customer_id, saved)
            else None
        )
