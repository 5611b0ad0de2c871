"""Wire types of the account settings endpoints (responses built by an explicit converter)."""

from __future__ import annotations

from typing import Literal

import msgspec

from shared.accounts.model import AccountSettings, AccountSettingsUpdate, RiskSettingsUpdate
from shared.fees.model import FeeSchedule, MethodFee


class RiskSettingsView(msgspec.Struct, frozen=True, kw_only=True):
    elevated_threshold: int
    highest_threshold: int


class MethodFeeView(msgspec.Struct, frozen=True, kw_only=True):
    percent_bps: int
    fixed: int
    minimum: int


class FeeScheduleView(msgspec.Struct, frozen=True, kw_only=True):
    card: MethodFeeView
    ach: MethodFeeView
    apple_pay: MethodFeeView
    paypal: MethodFeeView


def _fee_view(fee: MethodFee) -> MethodFeeView:
    return MethodFeeView(percent_bps=fee.percent_bps, fixed=fee.fixed, minimum=fee.minimum)


def to_fee_schedule_view(fees: FeeSchedule) -> FeeScheduleView:
    """The fee schedule as the settings endpoints show it."""
    return FeeScheduleView(
        card=_fee_view(fees.card),
        ach=_fee_view(fees.ach),
        apple_pay=_fee_view(fees.apple_pay),
        paypal=_fee_view(fees.paypal),
    )


class OriginSettingsView(msgspec.Struct, frozen=True, kw_only=True):
    allowed_origins: list[str]


class AccountSettingsView(msgspec.Struct, frozen=True, kw_only=True):
    object: Literal["account_settings"] = "account_settings"
    account_uid: str
    risk: RiskSettingsView
    fees: FeeScheduleView
    origins: OriginSettingsView


def to_view(account_uid: str, settings: AccountSettings) -> AccountSettingsView:
    """Only listed fields leave the service (later settings may hold secrets)."""
    return AccountSettingsView(
        account_uid=account_uid,
        risk=RiskSettingsView(
            elevated_threshold=settings.risk.elevated_threshold,
            highest_threshold=settings.risk.highest_threshold,
        ),
        fees=to_fee_schedule_view(settings.fees),
        origins=OriginSettingsView(allowed_origins=list(settings.origins.allowed_origins)),
    )


__all__ = [
    "AccountSettingsUpdate",
    "AccountSettingsView",
    "FeeScheduleView",
    "MethodFeeView",
    "RiskSettingsUpdate",
    "RiskSettingsView",
    "to_view",
]
