"""The validated inputs of the session service (decoded straight from request bodies).

Field constraints are msgspec `Meta` annotations, so a violation names its path; rules across
fields raise ValueError("<field>: <reason>") from `__post_init__`.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.sessions.currencies import ISO_4217
from shared.sessions.model import (
    MAX_EXPIRES_IN,
    MAX_LINE_ITEMS,
    MIN_EXPIRES_IN,
    AvsField,
    Branding,
    Description,
    Email,
    FraudSignals,
    Layout,
    LineItem,
    Metadata,
    PaymentMethodType,
    PositiveCents,
    Scope,
    SetupFutureUsage,
    ShortText,
    Url,
    check_metadata,
    line_items_total,
)

ExpiresIn = Annotated[int, msgspec.Meta(ge=MIN_EXPIRES_IN, le=MAX_EXPIRES_IN)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{3}$")]
LineItems = Annotated[list[LineItem], msgspec.Meta(max_length=MAX_LINE_ITEMS)]
Methods = Annotated[list[PaymentMethodType], msgspec.Meta(min_length=1, max_length=4)]
AvsFields = Annotated[list[AvsField], msgspec.Meta(max_length=9)]


def _check_currency(currency: str) -> str:
    code = currency.upper()
    if code not in ISO_4217:
        raise ValueError(f"currency: '{currency}' is not an ISO 4217 currency code")
    return code


def _check_unique(values: list[str], field: str) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{field}: values must not repeat")


def check_items_total(amount: int, items: list[LineItem] | tuple[LineItem, ...]) -> None:
    """`sum(amount x quantity)` of the items must equal `amount` (the error names both)."""
    if items and (total := line_items_total(items)) != amount:
        raise ValueError(
            f"line_items: items total {total} (sum of amount x quantity) "
            f"does not equal amount {amount}"
        )


class CreateSessionParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of POST /v1/hosted-sessions: every field, default and range of the seed."""

    amount: PositiveCents
    currency: Currency
    description: Description | None = None
    line_items: LineItems = msgspec.field(default_factory=list)
    customer_id: ShortText | None = None
    customer_email: Email | None = None
    success_url: Url
    cancel_url: Url
    layout: Layout = "embedded"
    allowed_methods: Methods = msgspec.field(default_factory=lambda: ["card"])
    setup_future_usage: SetupFutureUsage = "off"
    scope: Scope = "payment"
    expires_in_seconds: ExpiresIn = 1800
    branding: Branding | None = None
    required_avs_fields: AvsFields = msgspec.field(default_factory=list)
    metadata: Metadata = msgspec.field(default_factory=dict)
    fraud_signals: FraudSignals | None = None

    def __post_init__(self) -> None:
        self.currency = _check_currency(self.currency)
        _check_unique(list(self.allowed_methods), "allowed_methods")
        _check_unique(list(self.required_avs_fields), "required_avs_fields")
        check_metadata(self.metadata)


class UpdateSessionParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of PATCH: only the mutable fields; absent = unchanged, null = cleared.

    `metadata` merges: a key set to null (or "") is deleted. `expires_in_seconds` counts
    from the session's creation, within the seed's bounds, and must lie in the future.
    """

    amount: PositiveCents | msgspec.UnsetType = msgspec.UNSET
    line_items: LineItems | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    customer_email: Email | msgspec.UnsetType | None = msgspec.UNSET
    allowed_methods: Methods | msgspec.UnsetType = msgspec.UNSET
    branding: Branding | msgspec.UnsetType | None = msgspec.UNSET
    metadata: Annotated[dict[str, str | None], msgspec.Meta(max_length=50)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    expires_in_seconds: ExpiresIn | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if not isinstance(self.allowed_methods, msgspec.UnsetType):
            _check_unique(list(self.allowed_methods), "allowed_methods")
        if not isinstance(self.metadata, msgspec.UnsetType):
            check_metadata({k: v or "" for k, v in self.metadata.items()})


class ListSessionsParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    starting_after: str | None = None
    status: str | None = None
    customer_id: str | None = None


__all__ = [
    "CreateSessionParams",
    "ListSessionsParams",
    "UpdateSessionParams",
    "check_items_total",
]
