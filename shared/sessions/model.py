"""The session's domain types and pure rules (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

SessionStatus = Literal["open", "complete", "expired"]
PaymentStatus = Literal["unpaid", "paid"]
Layout = Literal["hosted", "embedded"]
PaymentMethodType = Literal["card", "ach", "apple_pay", "paypal"]
SetupFutureUsage = Literal["off", "on_session", "off_session"]
Scope = Literal["payment", "wallet"]
AvsField = Literal[
    "cardholder", "zip", "street", "street2", "city", "state", "country", "phone", "email"
]
ExpiredReason = Literal["time", "merchant"]

# The seed's bounds and the limits merchants know from the big providers.
MIN_EXPIRES_IN = 300
MAX_EXPIRES_IN = 86_400
DEFAULT_EXPIRES_IN = 1_800
MAX_AMOUNT = 99_999_999  # $999,999.99, the usual single-charge ceiling
MAX_LINE_ITEMS = 100
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LEN = 40
MAX_METADATA_VALUE_LEN = 500

# Absolute http(s) URL with a host; length as browsers and providers accept.
URL_PATTERN = r"^https?://[A-Za-z0-9\-._~%]+(:[0-9]{1,5})?([/?#][^\s]*)?$"
EMAIL_PATTERN = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"  # noqa: E501

Url = Annotated[str, msgspec.Meta(pattern=URL_PATTERN, max_length=2048)]
Email = Annotated[str, msgspec.Meta(pattern=EMAIL_PATTERN, max_length=254)]
Cents = Annotated[int, msgspec.Meta(ge=0, le=MAX_AMOUNT)]
PositiveCents = Annotated[int, msgspec.Meta(gt=0, le=MAX_AMOUNT)]
ShortText = Annotated[str, msgspec.Meta(max_length=255)]
Description = Annotated[str, msgspec.Meta(max_length=1000)]
AccentColor = Annotated[str, msgspec.Meta(pattern=r"^#[0-9A-Fa-f]{6}$")]
Metadata = Annotated[dict[str, str], msgspec.Meta(max_length=MAX_METADATA_KEYS)]


def check_metadata(metadata: dict[str, str], field: str = "metadata") -> None:
    """Raise ValueError naming the key when a metadata key or value breaks the limits."""
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY_LEN:
            raise ValueError(f"{field}: key '{key[:50]}' must be 1-{MAX_METADATA_KEY_LEN} chars")
        if len(value) > MAX_METADATA_VALUE_LEN:
            raise ValueError(
                f"{field}.{key}: value must be at most {MAX_METADATA_VALUE_LEN} characters"
            )


class LineItem(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    description: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    amount: Cents
    quantity: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    metadata: Metadata = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_metadata(self.metadata)


class Branding(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    logo_url: Url | None = None
    accent_color: AccentColor | None = None
    merchant_display_name: Annotated[str, msgspec.Meta(max_length=100)] | None = None


class FraudSignals(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """PII: stored encrypted, never returned, never logged. Stored by position
    (`shared.sessions.store.encode_fraud_signals`): new fields go last, existing ones never move."""

    ip_address: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    user_agent: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    email: Email | None = None
    phone: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    account_type: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    request_timestamp: Annotated[int, msgspec.Meta(ge=0)] | None = None
    is_authorized: bool | None = None
    is_admin: bool | None = None


RiskLevel = Literal["normal", "elevated", "highest"]


class Risk(msgspec.Struct, frozen=True, kw_only=True):
    """The fraud decision; `pending` until the scoring job has run."""

    status: Literal["pending", "scored"] = "pending"
    score: int | None = None
    level: RiskLevel | None = None
    reasons: tuple[str, ...] = ()
    scored_at_ms: int | None = None


class PaymentInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a successful charge leaves on the session: never a PAN or CVC."""

    method: PaymentMethodType
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    charge_id: str
    amount: int  # charged in total: the session's amount plus the quoted fee
    fee: int = 0
    saved_method_id: str | None = None


class SessionRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What is stored for a session (the secret's hash and the signals live beside it)."""

    id: str
    account_uid: str
    status: SessionStatus = "open"
    payment_status: PaymentStatus = "unpaid"
    amount: int
    currency: str
    description: str | None = None
    line_items: tuple[LineItem, ...] = ()
    customer_id: str | None = None
    customer_email: str | None = None
    success_url: str
    cancel_url: str
    layout: Layout = "embedded"
    allowed_methods: tuple[PaymentMethodType, ...] = ()
    setup_future_usage: SetupFutureUsage = "off"
    scope: Scope = "payment"
    branding: Branding | None = None
    required_avs_fields: tuple[AvsField, ...] = ()
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    has_fraud_signals: bool = False
    risk: Risk = Risk()
    created_at_ms: int
    updated_at_ms: int
    expires_at_ms: int
    expired_at_ms: int | None = None
    expired_reason: ExpiredReason | None = None
    completed_at_ms: int | None = None
    payment: PaymentInfo | None = None
    # Failed charges so far: the card-testing guard stops confirms after a few.
    failed_payments: int = 0
    # Set when the shopper passed the SMS challenge an elevated risk asks for.
    challenge_passed: bool = False
    # Event sequence of the last change: the record's version for compare-and-set writes.
    sequence: int = 1
    # The SMS challenge (docs/challenge.md), changed only with its events: the live code's
    # keyed hash and expiry (no hash once used, expired or locked), codes sent and when the
    # last went out, wrong codes entered, and the lock once they are spent.
    challenge_code_hash: str | None = None
    challenge_expires_at_ms: int | None = None
    challenge_sends: int = 0
    challenge_sent_at_ms: int | None = None
    challenge_failures: int = 0
    challenge_locked: bool = False


def effective_status(record: SessionRecord, now_ms: int) -> SessionStatus:
    """An open session past `expires_at` acts as expired at once, before any worker runs."""
    if record.status == "open" and now_ms >= record.expires_at_ms:
        return "expired"
    return record.status


def line_items_total(items: tuple[LineItem, ...] | list[LineItem]) -> int:
    return sum(item.amount * item.quantity for item in items)


# "YYYY-MM-DDTHH:MM:SS" per whole second: a view formats several timestamps of the same few
# seconds, and datetime's formatting is slow (docs/performance.md). Cleared when it grows.
_SECOND_TEXT: dict[int, str] = {}
_SECOND_TEXT_MAX = 8192


def iso_ms(ms: int) -> str:
    """RFC 3339 UTC with milliseconds, the format of every timestamp on the wire."""
    second, milli = divmod(ms, 1000)
    text = _SECOND_TEXT.get(second)
    if text is None:
        if len(_SECOND_TEXT) >= _SECOND_TEXT_MAX:
            _SECOND_TEXT.clear()
        text = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _SECOND_TEXT[second] = text
    return f"{text}.{milli:03d}Z"


class RiskView(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["pending", "scored"]
    score: int | None
    level: str | None
    reasons: tuple[str, ...]


class SessionView(msgspec.Struct, frozen=True, kw_only=True):
    """The merchant's view of a session: no secret, no fraud signals. Also events' `data`."""

    object: Literal["hosted_session"] = "hosted_session"
    id: str
    status: SessionStatus
    payment_status: PaymentStatus
    amount: int
    currency: str
    description: str | None
    line_items: tuple[LineItem, ...]
    customer_id: str | None
    customer_email: str | None
    success_url: str
    cancel_url: str
    layout: Layout
    allowed_methods: tuple[PaymentMethodType, ...]
    setup_future_usage: SetupFutureUsage
    scope: Scope
    branding: Branding | None
    required_avs_fields: tuple[AvsField, ...]
    metadata: dict[str, str]
    risk: RiskView
    hosted_url: str
    embed_url: str
    created_at: str
    updated_at: str
    expires_at: str
    expired_at: str | None
    expired_reason: ExpiredReason | None
    completed_at: str | None
    payment: PaymentInfo | None = None


def hosted_url(base_url: str, session_id: str) -> str:
    return f"{base_url.rstrip('/')}/{session_id}"


def embed_url(base_url: str, session_id: str) -> str:
    return f"{base_url.rstrip('/')}/embed/{session_id}"


def to_view(record: SessionRecord, now_ms: int, base_url: str) -> SessionView:
    """Explicit converter: only listed fields leave the service."""
    status = effective_status(record, now_ms)
    expired_at_ms = record.expired_at_ms
    expired_reason = record.expired_reason
    if status == "expired" and record.status == "open":
        expired_at_ms, expired_reason = record.expires_at_ms, "time"
    return SessionView(
        id=record.id,
        status=status,
        payment_status=record.payment_status,
        amount=record.amount,
        currency=record.currency,
        description=record.description,
        line_items=record.line_items,
        customer_id=record.customer_id,
        customer_email=record.customer_email,
        success_url=record.success_url,
        cancel_url=record.cancel_url,
        layout=record.layout,
        allowed_methods=record.allowed_methods,
        setup_future_usage=record.setup_future_usage,
        scope=record.scope,
        branding=record.branding,
        required_avs_fields=record.required_avs_fields,
        metadata=record.metadata,
        risk=RiskView(
            status=record.risk.status,
            score=record.risk.score,
            level=record.risk.level,
            reasons=record.risk.reasons,
        ),
        hosted_url=hosted_url(base_url, record.id),
        embed_url=embed_url(base_url, record.id),
        created_at=iso_ms(record.created_at_ms),
        updated_at=iso_ms(record.updated_at_ms),
        expires_at=iso_ms(record.expires_at_ms),
        expired_at=iso_ms(expired_at_ms) if expired_at_ms is not None else None,
        expired_reason=expired_reason,
        completed_at=iso_ms(record.completed_at_ms) if record.completed_at_ms else None,
        payment=record.payment,
    )
