"""Session business rules: create, read, list, update, expire. All Redis work is in store.py."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import msgspec
import structlog

from shared.clock import Clock
from shared.crypto import DataCipher
from shared.errors import (
    AlreadyConfirmed,
    InternalError,
    NotAuthenticated,
    NotFound,
    PaymentInProgress,
    SemanticValidationFailed,
    SessionExpired,
    ValidationFailed,
)
from shared.events.model import (
    EVENT_ENCODER,
    ChallengeFailedData,
    ChallengeRequiredData,
    Event,
    ExpiredData,
    PaymentError,
    PaymentFailedData,
    RiskScoredData,
    SessionChallengeFailed,
    SessionChallengeRequired,
    SessionChallengeSucceeded,
    SessionCompleted,
    SessionCreated,
    SessionData,
    SessionExpiredEvent,
    SessionPaymentFailed,
    SessionRiskScored,
    SessionUpdated,
    UpdatedData,
)
from shared.idempotency.service import ReplayWrite
from shared.ids import (
    SECRET_MARKER,
    new_client_secret,
    new_session_id,
    partition_of_account,
    partition_of_session,
)
from shared.sessions.model import (
    ExpiredReason,
    FraudSignals,
    PaymentInfo,
    Risk,
    RiskView,
    SessionRecord,
    SessionStatus,
    SessionView,
    effective_status,
    embed_url,
    hosted_url,
    iso_ms,
    to_view,
)
from shared.sessions.params import CreateSessionParams, UpdateSessionParams, check_items_total
from shared.sessions.store import (
    SessionStore,
    SessionWrite,
    StoredMemo,
    StoredSession,
    WriteOutcome,
    decode_fraud_signals,
    encode_fraud_signals,
    index_member,
)

log = structlog.get_logger(__name__)

_STATUSES: tuple[SessionStatus, ...] = ("open", "complete", "expired")
# Compare-and-set retries before giving up on a session under heavy concurrent change.
# Due sessions per load + write script call of the expiry loop (see expire_due).
_EXPIRY_CHUNK = 250
_MAX_CAS_ATTEMPTS = 8


class CreatedSession(msgspec.Struct, frozen=True, kw_only=True):
    """The create response of the seed: the only place the client secret ever appears."""

    session_id: str
    client_secret: str
    expires_at: str
    hosted_url: str
    embed_url: str


class ExpiryBatch(msgspec.Struct, kw_only=True):
    lags: list[int] = msgspec.field(default_factory=list)
    held: list[str] = msgspec.field(default_factory=list)


class SessionPage(msgspec.Struct, frozen=True, kw_only=True):
    data: list[SessionView]
    has_more: bool


def _first_try(
    current: SessionRecord | None, session_id: str, attempt: int
) -> SessionRecord | None:
    """The caller's record on a compare-and-set's first attempt (re-read on the later ones)."""
    return current if attempt == 0 and current is not None and current.id == session_id else None


def _fraud_context(session_id: str) -> str:
    return f"fraud_signals:{session_id}"


class SessionService:
    def __init__(
        self,
        store: SessionStore,
        cipher: DataCipher,
        clock: Clock,
        public_base_url: str,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._clock = clock
        self._base_url = public_base_url

    def view(self, record: SessionRecord) -> SessionView:
        return to_view(record, self._clock.now_ms(), self._base_url)

    # --- create -----------------------------------------------------------------------

    async def create(
        self, account_uid: str, params: CreateSessionParams, replay: ReplayWrite | None = None
    ) -> CreatedSession:
        """Create a session, its `created` event and (with an Idempotency-Key) its replay,
        in one step."""
        try:
            check_items_total(params.amount, params.line_items)
        except ValueError as exc:
            raise SemanticValidationFailed(str(exc)) from None
        now = self._clock.now_ms()
        session_id = new_session_id(partition_of_account(account_uid))
        secret = new_client_secret(session_id)
        record = SessionRecord(
            id=session_id,
            account_uid=account_uid,
            amount=params.amount,
            currency=params.currency,
            description=params.description,
            line_items=tuple(params.line_items),
            customer_id=params.customer_id,
            customer_email=params.customer_email,
            success_url=params.success_url,
            cancel_url=params.cancel_url,
            layout=params.layout,
            allowed_methods=tuple(params.allowed_methods),
            setup_future_usage=params.setup_future_usage,
            scope=params.scope,
            branding=params.branding,
            required_avs_fields=tuple(params.required_avs_fields),
            metadata=params.metadata,
            has_fraud_signals=params.fraud_signals is not None,
            created_at_ms=now,
            updated_at_ms=now,
            expires_at_ms=now + params.expires_in_seconds * 1000,
        )
        view = to_view(record, now, self._base_url)
        event = SessionCreated.of(record, now, SessionData(object=view))
        response = CreatedSession(
            session_id=session_id,
            client_secret=secret,
            expires_at=view.expires_at,
            hosted_url=hosted_url(self._base_url, session_id),
            embed_url=embed_url(self._base_url, session_id),
        )
        fraud_blob = (
            self._cipher.encrypt(
                encode_fraud_signals(params.fraud_signals), _fraud_context(session_id)
            )
            if params.fraud_signals is not None
            else b""
        )
        write = SessionWrite(
            record=record,
            previous_status=None,
            event_json=EVENT_ENCODER.encode(event),
            event_type=event.type,
            secret_hash=self._cipher.secret_hash(secret),
            fraud_blob=fraud_blob,
            idempotency_key=replay.key if replay else "",
            idempotency_record=replay.record(response) if replay else b"",
            idempotency_ttl=replay.ttl_seconds if replay else 0,
        )
        outcome = await self._store.write(write)
        # "exists" can only be our own write retried after a lost reply (ids are random).
        if outcome.result == "conflict":
            raise InternalError("session id collision")
        if replay:
            replay.written = True  # "ok", or "exists": the first run of this step wrote it
        # Nothing to enqueue: the fraud workers score it from its `created` event (written in
        # the same step), and the expiry loop finds it in the expiry schedule. No log line of
        # its own: the request's canonical line names the session (a second line per create
        # would repeat it at a cost, docs/performance.md), and the event is the lasting record.
        return response

    # --- browser credential ---------------------------------------------------------------

    async def authenticate_secret(self, session_id: str, secret: str) -> StoredSession:
        """The session a client secret opens (record and encrypted signals, for confirm's
        timing check): only its own, compared in constant time.

        Unknown session, another session's secret and a wrong secret all answer the same 401;
        the secret of an expired session answers 410 (the seed's `session_expired`)."""
        owner, marker, _ = secret.partition(SECRET_MARKER)
        if not marker or owner != session_id:
            raise NotAuthenticated("Invalid client secret for this session")
        stored = await self._store.load(session_id)
        # Hash even when unknown, so timing does not tell which ids exist.
        expected = stored.secret_hash if stored else "0" * 64
        if not self._cipher.secret_matches(secret, expected) or stored is None:
            raise NotAuthenticated("Invalid client secret for this session")
        if effective_status(stored.record, self._clock.now_ms()) == "expired":
            raise SessionExpired("This checkout session has expired")
        return stored

    # --- read -------------------------------------------------------------------------

    async def _load_owned(self, account_uid: str, session_id: str) -> SessionRecord:
        """The account's session, or NotFound exactly as for a missing one."""
        stored = await self._store.load(session_id)
        if stored is None or stored.record.account_uid != account_uid:
            raise NotFound(f"No such hosted session: '{session_id[:40]}'")
        return stored.record

    async def get(self, account_uid: str, session_id: str) -> SessionView:
        return self.view(await self._load_owned(account_uid, session_id))

    async def list_page(
        self,
        account_uid: str,
        *,
        limit: int,
        starting_after: str | None = None,
        status: str | None = None,
        customer_id: str | None = None,
    ) -> SessionPage:
        """Newest first; `starting_after` is the last id of the previous page."""
        if status is not None and status not in _STATUSES:
            raise ValidationFailed(f"status: must be one of {', '.join(_STATUSES)}")
        partition = partition_of_account(account_uid)
        after_member = None
        if starting_after is not None:
            if partition_of_session(starting_after) != partition:
                raise ValidationFailed("starting_after: no such hosted session")
            cursor = await self._store.load(starting_after)
            if cursor is None or cursor.record.account_uid != account_uid:
                raise ValidationFailed("starting_after: no such hosted session")
            after_member = index_member(cursor.record)
        now = self._clock.now_ms()
        views: list[SessionView] = []
        # Status moves lag the clock by up to the worker's expiry lag, and a customer index
        # holds every status, so records are filtered on their effective status here.
        while True:
            ids = await self._store.page(
                partition,
                account_uid,
                status=None if customer_id else status,
                customer_id=customer_id,
                after_member=after_member,
                count=limit + 1,
            )
            loaded = await self._store.load_many(ids) if ids else []
            # The account check again: an index is the account's, but a read never trusts it.
            records = [r for r in loaded if r is not None and r.account_uid == account_uid]
            for record in records:
                if status is None or effective_status(record, now) == status:
                    views.append(to_view(record, now, self._base_url))
            if len(views) > limit or len(ids) <= limit:
                break
            after_member = index_member(records[-1])
        return SessionPage(data=views[:limit], has_more=len(views) > limit)

    # --- update -----------------------------------------------------------------------

    async def update(
        self, account_uid: str, session_id: str, params: UpdateSessionParams
    ) -> SessionView:
        for _ in range(_MAX_CAS_ATTEMPTS):
            record = await self._load_owned(account_uid, session_id)
            now = self._clock.now_ms()
            self._require_open(record, now)
            changed, previous = _apply_patch(record, params, now)
            if not previous:
                return to_view(record, now, self._base_url)
            view = to_view(changed, now, self._base_url)
            event = SessionUpdated.of(
                changed, now, UpdatedData(object=view, previous_attributes=previous)
            )
            outcome = await self._store.write(
                SessionWrite(
                    record=changed,
                    previous_status="open",
                    event_json=EVENT_ENCODER.encode(event),
                    event_type=event.type,
                )
            )
            if outcome.result == "ok":
                return view
            if outcome.result == "held":
                raise PaymentInProgress("A payment of this session is in progress")
        raise InternalError("session changed concurrently too often; retry")

    @staticmethod
    def _require_open(record: SessionRecord, now_ms: int) -> None:
        status = effective_status(record, now_ms)
        if status == "complete":
            raise AlreadyConfirmed("This hosted session is already complete")
        if status == "expired":
            raise SessionExpired("This hosted session has expired")

    # --- expire -----------------------------------------------------------------------

    async def expire(
        self, account_uid: str, session_id: str, replay: ReplayWrite | None = None
    ) -> SessionView:
        """The merchant's expire: open → expired; again → the same session; complete → 409.
        With an Idempotency-Key, the answer is written in the expiring step itself."""
        await self._load_owned(account_uid, session_id)
        record, _ = await self._expire(session_id, "merchant", replay)
        if record is None:  # vanished between the two reads: cannot happen without deletes
            raise NotFound(f"No such hosted session: '{session_id[:40]}'")
        if record.status == "complete":
            raise AlreadyConfirmed("This hosted session is already complete")
        return self.view(record)

    async def _expire(
        self, session_id: str, reason: ExpiredReason, replay: ReplayWrite | None = None
    ) -> tuple[SessionRecord | None, bool]:
        """Expire an open session (a merchant's call on a session past its time counts as
        time); terminal sessions are returned unchanged. Guarded by compare-and-set.
        Returns the record and whether this call expired it (then `replay`, if any, was
        written with it)."""
        for _ in range(_MAX_CAS_ATTEMPTS):
            stored = await self._store.load(session_id)
            if stored is None:
                return None, False
            record = stored.record
            now = self._clock.now_ms()
            if record.status != "open" or (reason == "time" and record.expires_at_ms > now):
                return record, False
            change = self._expired_change(record, now, reason, replay)
            result = (await self._store.write(change)).result
            if result == "ok":
                if replay:
                    replay.written = True
                log.info(
                    "session.expired", session_id=session_id, reason=change.record.expired_reason
                )
                return change.record, True
            if result == "held":
                # A charge in flight holds the session; its outcome decides (DESIGN.md).
                if reason == "merchant":
                    raise PaymentInProgress("A payment of this session is in progress")
                return record, False
        raise InternalError("session changed concurrently too often; retry")

    def _expired_change(
        self,
        record: SessionRecord,
        now: int,
        reason: ExpiredReason,
        replay: ReplayWrite | None = None,
    ) -> SessionWrite:
        why: ExpiredReason = "time" if now >= record.expires_at_ms else reason
        changed = msgspec.structs.replace(
            record,
            status="expired",
            expired_at_ms=record.expires_at_ms if why == "time" else now,
            expired_reason=why,
            updated_at_ms=now,
            sequence=record.sequence + 1,
        )
        view = to_view(changed, now, self._base_url)
        event = SessionExpiredEvent.of(changed, now, ExpiredData(object=view, reason=why))
        return SessionWrite(
            record=changed,
            previous_status="open",
            event_json=EVENT_ENCODER.encode(event),
            event_type=event.type,
            # The merchant's answer is this view (an expired record's view is the same at
            # any later instant, so `expire` returning `self.view(record)` sends these bytes).
            idempotency_key=replay.key if replay else "",
            idempotency_record=replay.record(view) if replay else b"",
            idempotency_ttl=replay.ttl_seconds if replay else 0,
        )

    async def expire_due(self, partition: int, limit: int) -> ExpiryBatch:
        """Expire up to `limit` of the partition's due sessions (the expiry loop): each expired
        session's lag in ms past `expires_at`, and the due sessions a charge holds (their
        outcome decides; the loop reconciles stale ones).

        The due ids are cut into chunks expired concurrently, one load and one write script
        call each: Redis runs one chunk's script while Python builds the next chunk's events
        (a burst of due sessions in one partition is otherwise Redis time plus Python time)."""
        now = self._clock.now_ms()
        ids = await self._store.due_for_expiry(partition, now, limit)
        if not ids:
            return ExpiryBatch()
        chunks = [ids[i : i + _EXPIRY_CHUNK] for i in range(0, len(ids), _EXPIRY_CHUNK)]
        batch = ExpiryBatch()
        for part in await asyncio.gather(*(self._expire_chunk(partition, c, now) for c in chunks)):
            batch.lags.extend(part.lags)
            batch.held.extend(part.held)
        return batch

    async def _expire_chunk(self, partition: int, ids: list[str], now: int) -> ExpiryBatch:
        records = await self._store.load_many(ids)
        stale = [
            sid
            for sid, rec in zip(ids, records, strict=True)
            if rec is None or rec.status != "open"
        ]
        if stale:  # cannot normally happen (the write script unschedules); never loop on them
            await self._store.unschedule(partition, stale)
        due = [
            rec
            for rec in records
            if rec is not None and rec.status == "open" and rec.expires_at_ms <= now
        ]
        changes = [self._expired_change(rec, now, "time") for rec in due]
        outcomes = await self._store.write_many(changes)
        batch = ExpiryBatch()
        lags = batch.lags
        for record, outcome in zip(due, outcomes, strict=True):
            if outcome.result == "ok":
                lags.append(now - record.expires_at_ms)
            elif outcome.result == "held":
                batch.held.append(record.id)  # the schedule keeps it for later
            elif (await self._expire(record.id, "time"))[1]:
                # Changed meanwhile (a PATCH, a racing worker): one guarded retry decides.
                lags.append(self._clock.now_ms() - record.expires_at_ms)
        return batch

    # --- payment outcomes (the held charge's own writes) ---------------------------------

    async def complete_payment(
        self,
        session_id: str,
        payment: PaymentInfo,
        *,
        current: SessionRecord | None = None,
        memo: StoredMemo | None = None,
    ) -> SessionRecord:
        """open -> complete/paid with its `completed` event; drops the charge hold.

        `current`: the record as the caller last read it (a confirm's, unchanged while its
        charge held the session), tried first instead of reading it again; the write is a
        compare-and-set on its sequence, so a stale one only costs a re-read. `memo`: a
        record written in the same step (the duplicate-payment memo)."""
        for attempt in range(_MAX_CAS_ATTEMPTS):
            record = _first_try(current, session_id, attempt) or await self._require(session_id)
            if record.status == "complete":
                return record  # this charge's outcome was written already (a retry)
            now = self._clock.now_ms()
            changed = msgspec.structs.replace(
                record,
                status="complete",
                payment_status="paid",
                payment=payment,
                completed_at_ms=now,
                updated_at_ms=now,
                sequence=record.sequence + 1,
            )
            view = to_view(changed, now, self._base_url)
            event = SessionCompleted.of(changed, now, SessionData(object=view))
            if await self._write_outcome(record, changed, event, release_hold=True, memo=memo):
                return changed
        raise InternalError("session changed concurrently too often; retry")

    async def record_payment_failure(
        self, session_id: str, code: str, message: str, *, current: SessionRecord | None = None
    ) -> SessionRecord:
        """A failed charge: counted, with its `payment_failed` event; drops the charge hold.
        A session whose time ran out under the charge stays in the expiry schedule, so the
        expiry loop expires it on its next tick. `current` as for complete_payment."""
        for attempt in range(_MAX_CAS_ATTEMPTS):
            record = _first_try(current, session_id, attempt) or await self._require(session_id)
            now = self._clock.now_ms()
            changed = msgspec.structs.replace(
                record,
                failed_payments=record.failed_payments + 1,
                updated_at_ms=now,
                sequence=record.sequence + 1,
            )
            view = to_view(changed, now, self._base_url)
            event = SessionPaymentFailed.of(
                changed,
                now,
                PaymentFailedData(object=view, error=PaymentError(code=code, message=message)),
            )
            if await self._write_outcome(record, changed, event, release_hold=True):
                return changed
        raise InternalError("session changed concurrently too often; retry")

    async def _require(self, session_id: str) -> SessionRecord:
        stored = await self._store.load(session_id)
        if stored is None:
            raise NotFound(f"No such hosted session: '{session_id[:40]}'")
        return stored.record

    async def _write_outcome(
        self,
        before: SessionRecord,
        after: SessionRecord,
        event: Event,
        *,
        release_hold: bool,
        memo: StoredMemo | None = None,
    ) -> bool:
        outcome = await self._store.write(
            SessionWrite(
                record=after,
                previous_status=before.status,
                event_json=EVENT_ENCODER.encode(event),
                event_type=event.type,
                release_hold=release_hold,
                idempotency_key=memo.key if memo else "",
                idempotency_record=memo.value if memo else b"",
                idempotency_ttl=memo.ttl_seconds if memo else 0,
            )
        )
        return outcome.result == "ok"

    # --- fraud --------------------------------------------------------------------------

    async def load_fraud_signals(self, session_id: str) -> FraudSignals | None:
        """The decrypted signals (PII: for the risk rules only; never returned or logged)."""
        blob = await self._store.load_fraud_blob(session_id)
        return self.open_fraud_signals(session_id, blob)

    async def load_many_with_blobs(
        self, session_ids: list[str]
    ) -> list[tuple[SessionRecord, bytes | None] | None]:
        """Records of ONE partition's sessions with their encrypted signals (open them with
        `open_fraud_signals`), in the order of the ids (None where unknown): one MGET."""
        return await self._store.load_many_with_blobs(session_ids)

    def open_fraud_signals(self, session_id: str, blob: bytes | None) -> FraudSignals | None:
        """The decrypted signals of a session's stored blob (PII: for the risk rules only;
        never returned or logged)."""
        if not blob:
            return None
        plain = self._cipher.decrypt(blob, _fraud_context(session_id))
        return decode_fraud_signals(plain)

    async def load(self, session_id: str) -> SessionRecord | None:
        stored = await self._store.load(session_id)
        return None if stored is None else stored.record

    async def load_many(self, session_ids: list[str]) -> list[SessionRecord | None]:
        """Records of ONE partition's sessions, in the order of the ids (None where unknown)."""
        return await self._store.load_many(session_ids)

    async def record_risk(self, session_id: str, risk: Risk) -> bool:
        """Store a risk decision with its `risk_scored` event, once: a session already scored
        keeps its first decision, and a terminal session is left alone. True if written."""
        for _ in range(_MAX_CAS_ATTEMPTS):
            stored = await self._store.load(session_id)
            if stored is None:
                return False
            record = stored.record
            if record.risk.status == "scored" or record.status != "open":
                return False
            outcome = await self._store.write(self._risk_change(record, risk, self._clock.now_ms()))
            if outcome.result == "ok":
                return True
            if outcome.result == "held":
                return False  # confirm scores inline before it holds: this decision is late
        raise InternalError("session changed concurrently too often; retry")

    async def record_risk_many(self, decisions: list[tuple[SessionRecord, Risk]]) -> list[bool]:
        """`record_risk` for ONE partition's sessions, from their records as just loaded, in
        one script call (the scoring loop). Each write is still compare-and-set on `seq`: a
        session changed since its load goes through `record_risk` alone. True where written."""
        now = self._clock.now_ms()
        written = [False] * len(decisions)
        todo = [
            i
            for i, (record, _) in enumerate(decisions)
            if record.risk.status != "scored" and record.status == "open"
        ]
        changes = [self._risk_change(*decisions[i], now) for i in todo]
        outcomes = await self._store.write_many(changes) if changes else []
        for i, outcome in zip(todo, outcomes, strict=True):
            if outcome.result == "ok":
                written[i] = True
            elif outcome.result == "conflict":
                # Changed meanwhile (a PATCH, an inline score at confirm): decide again alone.
                written[i] = await self.record_risk(decisions[i][0].id, decisions[i][1])
            # "held": confirm scores inline before it holds, so this decision is late.
        return written

    def _risk_change(self, record: SessionRecord, risk: Risk, now: int) -> SessionWrite:
        changed = msgspec.structs.replace(
            record,
            risk=msgspec.structs.replace(risk, status="scored", scored_at_ms=now),
            updated_at_ms=now,
            sequence=record.sequence + 1,
        )
        # The event carries what scoring adds, not the whole view (memory: every event stays
        # in the stream for the retention period).
        data = RiskScoredData(
            risk=RiskView(
                status="scored", score=risk.score, level=risk.level, reasons=risk.reasons
            ),
            status=effective_status(changed, now),
        )
        event = SessionRiskScored.of(changed, now, data)
        return SessionWrite(
            record=changed,
            previous_status=record.status,
            event_json=EVENT_ENCODER.encode(event),
            event_type=event.type,
            # Same status and expires_at: the expiry schedule entry stands.
            keeps_schedule=record.status == "open",
        )

    # --- SMS challenge (rules in shared/challenge; each change is one compare-and-set write
    # with its event; the caller re-reads and decides again on a conflict) ------------------

    async def record_challenge_sent(
        self, before: SessionRecord, after: SessionRecord, *, resends_left: int, attempts_left: int
    ) -> WriteOutcome:
        """A new code's hash on the session with its `challenge_required` event."""
        now = after.updated_at_ms
        view = to_view(after, now, self._base_url)
        event = SessionChallengeRequired.of(
            after,
            now,
            ChallengeRequiredData(
                object=view,
                expires_at=iso_ms(after.challenge_expires_at_ms or now),
                sends=after.challenge_sends,
                resends_left=resends_left,
                attempts_left=attempts_left,
            ),
        )
        return await self._write_challenge(before, after, event)

    async def record_challenge_passed(
        self, before: SessionRecord, after: SessionRecord
    ) -> WriteOutcome:
        """`challenge_passed` set (the code used up) with its `challenge_succeeded` event."""
        now = after.updated_at_ms
        view = to_view(after, now, self._base_url)
        event = SessionChallengeSucceeded.of(after, now, SessionData(object=view))
        return await self._write_challenge(before, after, event)

    async def record_challenge_failed(
        self,
        before: SessionRecord,
        after: SessionRecord,
        *,
        reason: Literal["wrong_code", "expired"],
        attempts_left: int,
        locked: bool,
    ) -> WriteOutcome:
        """A wrong or expired code counted (or the lock) with its `challenge_failed` event."""
        now = after.updated_at_ms
        view = to_view(after, now, self._base_url)
        event = SessionChallengeFailed.of(
            after,
            now,
            ChallengeFailedData(
                object=view, reason=reason, attempts_left=attempts_left, locked=locked
            ),
        )
        return await self._write_challenge(before, after, event)

    async def _write_challenge(
        self, before: SessionRecord, after: SessionRecord, event: Event
    ) -> WriteOutcome:
        # Not _write_outcome: the caller must tell a conflict (decide again) from a charge
        # in flight (answer at once), and a challenge change never releases a hold.
        return await self._store.write(
            SessionWrite(
                record=after,
                previous_status=before.status,
                event_json=EVENT_ENCODER.encode(event),
                event_type=event.type,
            )
        )


def _apply_patch(
    record: SessionRecord, params: UpdateSessionParams, now_ms: int
) -> tuple[SessionRecord, dict[str, Any]]:
    """The patched record and the previous values of what changed (empty: nothing did)."""
    changes: dict[str, Any] = {}
    unset = msgspec.UNSET
    if params.amount is not unset:
        changes["amount"] = params.amount
    if params.line_items is not unset:
        changes["line_items"] = tuple(params.line_items)
    if params.description is not unset:
        changes["description"] = params.description
    if params.customer_email is not unset:
        changes["customer_email"] = params.customer_email
    if params.allowed_methods is not unset:
        changes["allowed_methods"] = tuple(params.allowed_methods)
    if params.branding is not unset:
        changes["branding"] = params.branding
    if params.metadata is not unset:
        merged = dict(record.metadata)
        for key, value in params.metadata.items():
            if value:
                merged[key] = value
            else:
                merged.pop(key, None)
        if len(merged) > 50:
            raise ValidationFailed("metadata: at most 50 keys after the merge")
        changes["metadata"] = merged
    if params.expires_in_seconds is not unset:
        expires_at = record.created_at_ms + params.expires_in_seconds * 1000
        if expires_at <= now_ms:
            raise SemanticValidationFailed(
                "expires_in_seconds: counts from the session's creation and must lie in the "
                "future; use the expire endpoint to end a session now"
            )
        changes["expires_at_ms"] = expires_at
    changes = {k: v for k, v in changes.items() if getattr(record, k) != v}
    if not changes:
        return record, {}
    amount = changes.get("amount", record.amount)
    items = changes.get("line_items", record.line_items)
    try:
        check_items_total(amount, items)
    except ValueError as exc:
        raise SemanticValidationFailed(str(exc)) from None
    before = to_view(record, now_ms, "")
    changed = msgspec.structs.replace(
        record, **changes, updated_at_ms=now_ms, sequence=record.sequence + 1
    )
    after = to_view(changed, now_ms, "")
    previous = {
        field: msgspec.to_builtins(getattr(before, field))
        for field in SessionView.__struct_fields__
        if field != "updated_at" and getattr(before, field) != getattr(after, field)
    }
    return changed, previous
