"""Webhook endpoints and deliveries: domain types, wire views and pure rules (no I/O)."""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated, Literal

import msgspec

from shared.events.model import EVENT_TYPES
from shared.ids import BASE62, DELIVERY_PREFIX, ENDPOINT_PREFIX, WEBHOOK_ID_CHARS
from shared.sessions.model import iso_ms

# The ids' shapes live in shared.ids (their patterns check every id a path names).
_ID_CHARS = WEBHOOK_ID_CHARS

WILDCARD = "*"
MAX_ENDPOINTS_PER_ACCOUNT = 16
MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 500
# A rotated-out secret keeps signing (beside the new one) this long, so merchants can roll
# their verifier without dropping a delivery.
SECRET_OVERLAP_MS = 24 * 3600 * 1000
# Rotations in quick succession keep only the newest replaced secrets signing (each one is
# a signature on every delivery).
MAX_PREVIOUS_SECRETS = 3
# Deliveries (and their attempt history) stay listable and redeliverable this long.
DELIVERY_RETENTION_SECONDS = 30 * 86_400
# Attempts kept in a delivery's history (the newest); the count of attempts is kept apart.
HISTORY_LIMIT = 25
# Jitter stretches each retry delay by up to this fraction, never shortens it, so the
# schedule's total stays the floor of how long a delivery is retried.
JITTER_FRACTION = 0.2

DeliveryState = Literal["pending", "delivered", "dead"]
# exhausted: every scheduled attempt failed; gone: the endpoint answered 410 (and was
# disabled); endpoint_disabled / endpoint_deleted: nowhere to send the next attempt.
DeadReason = Literal["exhausted", "gone", "endpoint_disabled", "endpoint_deleted"]


# --- ids -----------------------------------------------------------------------------------


def _base62(raw: bytes, length: int) -> str:
    number = int.from_bytes(raw, "big")
    out = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        out.append(BASE62[digit])
    return "".join(out)


def new_endpoint_id() -> str:
    """`we_` + 24 random base62 characters (~142 bits)."""
    return ENDPOINT_PREFIX + "".join(secrets.choice(BASE62) for _ in range(_ID_CHARS))


def delivery_id_for(event_id: str, endpoint_id: str) -> str:
    """Deterministic per (event, endpoint): a dispatcher that re-reads an event after a crash
    finds the delivery it already made instead of making a second one."""
    digest = hashlib.sha256(f"{event_id}\n{endpoint_id}".encode()).digest()
    return DELIVERY_PREFIX + _base62(digest, _ID_CHARS)


def stream_id_after(entry_id: str, cutoff: str) -> bool:
    """True when stream entry `entry_id` was appended after `cutoff` (both `ms-seq`)."""
    return _stream_id(entry_id) > _stream_id(cutoff)


def _stream_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


# --- endpoints -----------------------------------------------------------------------------


class SecretVersion(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    secret: str
    created_at_ms: int
    expires_at_ms: int | None = None  # None: the current secret


class EndpointRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An endpoint as stored (its secrets are stored apart, encrypted)."""

    id: str
    account_uid: str
    url: str
    description: str
    enabled_events: tuple[str, ...]
    enabled: bool
    created_at_ms: int
    updated_at_ms: int
    # Why the service disabled it (None when a merchant did, or when enabled).
    disabled_reason: Literal["gone"] | None = None
    # Until when the secret before the last rotation still signs (None: no overlap).
    previous_secret_expires_at_ms: int | None = None


def subscribes(endpoint: EndpointRecord, event_type: str) -> bool:
    """An enabled endpoint receives the types it lists, or every type with `*`."""
    return endpoint.enabled and (
        event_type in endpoint.enabled_events or WILDCARD in endpoint.enabled_events
    )


def check_enabled_events(values: list[str]) -> tuple[str, ...]:
    """Validate a subscription list: known types, or `["*"]` alone, without repeats."""
    if not values:
        raise ValueError("enabled_events: must list at least one event type, or '*'")
    if len(set(values)) != len(values):
        raise ValueError("enabled_events: values must not repeat")
    if WILDCARD in values and len(values) > 1:
        raise ValueError("enabled_events: '*' subscribes to every type and stands alone")
    unknown = [v for v in values if v != WILDCARD and v not in EVENT_TYPES]
    if unknown:
        raise ValueError(
            f"enabled_events: unknown event type '{unknown[0][:100]}' "
            f"(expected '*' or one of {', '.join(EVENT_TYPES)})"
        )
    return tuple(values)


def live_secrets(versions: list[SecretVersion], now_ms: int) -> list[SecretVersion]:
    """The secrets that sign now: the current one first, then any still in their overlap."""
    return [v for v in versions if v.expires_at_ms is None or v.expires_at_ms > now_ms]


def rotated(
    versions: list[SecretVersion], new_secret: str, now_ms: int
) -> tuple[list[SecretVersion], int]:
    """The versions after a rotation, and until when the replaced secret keeps signing."""
    until = now_ms + SECRET_OVERLAP_MS
    kept = [
        v
        if v.expires_at_ms is not None
        else SecretVersion(secret=v.secret, created_at_ms=v.created_at_ms, expires_at_ms=until)
        for v in live_secrets(versions, now_ms)
    ][:MAX_PREVIOUS_SECRETS]
    return [SecretVersion(secret=new_secret, created_at_ms=now_ms), *kept], until


# --- deliveries ----------------------------------------------------------------------------


class AttemptRecord(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    attempt: int
    at_ms: int
    status_code: int | None
    error: str | None
    duration_ms: int
    manual: bool = False


class AttemptOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What one POST came to: an HTTP status, or an error kind when there was no answer."""

    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0

    @property
    def delivered(self) -> bool:
        """A 2xx answer (a redirect is not followed, so 3xx is a failure)."""
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        """410 Gone: the receiver asks for no more deliveries."""
        return self.status_code == 410


class DeliveryRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One event on its way to one endpoint, across all its attempts."""

    id: str
    account_uid: str
    endpoint_id: str
    event_id: str
    event_type: str
    session_id: str
    created_at_ms: int
    state: DeliveryState = "pending"
    attempts: int = 0  # attempts whose outcome is recorded
    # A failure of this attempt makes the delivery dead (a manual redelivery is one attempt).
    final_attempt: int
    next_attempt_at_ms: int | None = None
    delivered_at_ms: int | None = None
    dead_reason: DeadReason | None = None
    # The attempt a merchant asked for by redelivering (0: none).
    manual_attempt: int = 0
    history: tuple[AttemptRecord, ...] = ()


def parse_retry_schedule(text: str) -> tuple[float, ...]:
    """`HS_WEBHOOK_RETRY_SCHEDULE`: comma-separated positive seconds before each retry."""
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"webhook retry schedule: not a list of seconds: {text!r}") from None
    if not delays or any(d <= 0 for d in delays):
        raise ValueError(f"webhook retry schedule: needs positive delays: {text!r}")
    return delays


def new_delivery(
    *,
    account_uid: str,
    endpoint_id: str,
    event_id: str,
    event_type: str,
    session_id: str,
    now_ms: int,
    schedule: tuple[float, ...],
) -> DeliveryRecord:
    """A delivery due now, allowed one attempt per schedule step plus the first."""
    return DeliveryRecord(
        id=delivery_id_for(event_id, endpoint_id),
        account_uid=account_uid,
        endpoint_id=endpoint_id,
        event_id=event_id,
        event_type=event_type,
        session_id=session_id,
        created_at_ms=now_ms,
        final_attempt=len(schedule) + 1,
        next_attempt_at_ms=now_ms,
    )


def retry_delay_ms(schedule: tuple[float, ...], failed_attempt: int, jitter: float) -> int:
    """Wait before the attempt after `failed_attempt` (1-based); `jitter` is in [0, 1)."""
    base = schedule[min(failed_attempt, len(schedule)) - 1]
    return round(base * (1 + JITTER_FRACTION * jitter) * 1000)


def after_attempt(
    record: DeliveryRecord,
    attempt: int,
    outcome: AttemptOutcome,
    now_ms: int,
    schedule: tuple[float, ...],
    jitter: float,
) -> DeliveryRecord:
    """The delivery once attempt `attempt` came to `outcome`."""
    entry = AttemptRecord(
        attempt=attempt,
        at_ms=now_ms,
        status_code=outcome.status_code,
        error=outcome.error,
        duration_ms=outcome.duration_ms,
        manual=attempt == record.manual_attempt,
    )
    base = msgspec.structs.replace(
        record, attempts=attempt, history=(*record.history, entry)[-HISTORY_LIMIT:]
    )
    if outcome.delivered:
        return msgspec.structs.replace(
            base, state="delivered", delivered_at_ms=now_ms, next_attempt_at_ms=None
        )
    if outcome.gone:
        return died(base, "gone")
    if attempt >= record.final_attempt:
        return died(base, "exhausted")
    return msgspec.structs.replace(
        base, next_attempt_at_ms=now_ms + retry_delay_ms(schedule, attempt, jitter)
    )


def died(record: DeliveryRecord, reason: DeadReason) -> DeliveryRecord:
    """The delivery given up: kept, listed and redeliverable, never retried by itself."""
    return msgspec.structs.replace(
        record, state="dead", dead_reason=reason, next_attempt_at_ms=None
    )


def redelivered(record: DeliveryRecord, now_ms: int) -> DeliveryRecord:
    """A dead delivery given one more (manual) attempt, due now."""
    attempt = record.attempts + 1
    return msgspec.structs.replace(
        record,
        state="pending",
        dead_reason=None,
        final_attempt=attempt,
        manual_attempt=attempt,
        next_attempt_at_ms=now_ms,
    )


# --- wire: requests ------------------------------------------------------------------------

EndpointUrl = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL_LENGTH)]
EventTypes = Annotated[list[str], msgspec.Meta(min_length=1, max_length=len(EVENT_TYPES) + 1)]
EndpointDescription = Annotated[str, msgspec.Meta(max_length=MAX_DESCRIPTION_LENGTH)]


class CreateEndpointParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: EndpointUrl
    enabled_events: EventTypes
    description: EndpointDescription = ""
    enabled: bool = True

    def __post_init__(self) -> None:
        check_enabled_events(self.enabled_events)


class UpdateEndpointParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: EndpointUrl | msgspec.UnsetType = msgspec.UNSET
    enabled_events: EventTypes | msgspec.UnsetType = msgspec.UNSET
    description: EndpointDescription | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if not isinstance(self.enabled_events, msgspec.UnsetType):
            check_enabled_events(self.enabled_events)


# --- wire: responses (built by converters, so a secret cannot leak from a record) -----------


class EndpointView(msgspec.Struct, frozen=True, kw_only=True):
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    id: str
    url: str
    description: str
    enabled_events: list[str]
    enabled: bool
    disabled_reason: str | None
    previous_secret_expires_at: str | None
    created_at: str
    updated_at: str


class EndpointWithSecret(EndpointView, frozen=True, kw_only=True):
    """Answer of create and rotate-secret: the only responses that carry the secret."""

    secret: str


class DeletedEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    id: str
    deleted: bool = True


class AttemptView(msgspec.Struct, frozen=True, kw_only=True):
    attempt: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: int
    manual: bool


class DeliveryView(msgspec.Struct, frozen=True, kw_only=True):
    object: Literal["webhook_delivery"] = "webhook_delivery"
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    session_id: str
    state: DeliveryState
    dead_reason: DeadReason | None
    attempts: int
    next_attempt_at: str | None
    delivered_at: str | None
    created_at: str
    attempt_history: list[AttemptView]


def _iso_or_none(ms: int | None) -> str | None:
    return None if ms is None else iso_ms(ms)


def endpoint_view(record: EndpointRecord) -> EndpointView:
    """The merchant's view of an endpoint (never a secret)."""
    return EndpointView(
        id=record.id,
        url=record.url,
        description=record.description,
        enabled_events=list(record.enabled_events),
        enabled=record.enabled,
        disabled_reason=record.disabled_reason,
        previous_secret_expires_at=_iso_or_none(record.previous_secret_expires_at_ms),
        created_at=iso_ms(record.created_at_ms),
        updated_at=iso_ms(record.updated_at_ms),
    )


def with_secret(record: EndpointRecord, secret: str) -> EndpointWithSecret:
    """The view plus the new secret, for the one response that shows it."""
    view = endpoint_view(record)
    fields = {name: getattr(view, name) for name in view.__struct_fields__}
    return EndpointWithSecret(**fields, secret=secret)


def delivery_view(record: DeliveryRecord) -> DeliveryView:
    """The merchant's view of a delivery and its recent attempts."""
    return DeliveryView(
        id=record.id,
        endpoint_id=record.endpoint_id,
        event_id=record.event_id,
        event_type=record.event_type,
        session_id=record.session_id,
        state=record.state,
        dead_reason=record.dead_reason,
        attempts=record.attempts,
        next_attempt_at=_iso_or_none(record.next_attempt_at_ms),
        delivered_at=_iso_or_none(record.delivered_at_ms),
        created_at=iso_ms(record.created_at_ms),
        attempt_history=[
            AttemptView(
                attempt=a.attempt,
                at=iso_ms(a.at_ms),
                status_code=a.status_code,
                error=a.error,
                duration_ms=a.duration_ms,
                manual=a.manual,
            )
            for a in reversed(record.history)
        ],
    )
