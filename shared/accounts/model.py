"""Per-account settings (pure): today the risk thresholds; later fee schedules and origins.

Every field has a default, and decoding ignores fields it does not know, so a stored document
written by an older or newer release still reads: adding a setting means adding a field with
a default, never renaming or re-typing one.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import msgspec

from shared.fees.model import FeeSchedule, FeeScheduleUpdate, apply_fee_update
from shared.risk.rules import DEFAULT_ELEVATED_THRESHOLD, DEFAULT_HIGHEST_THRESHOLD, Thresholds

Threshold = Annotated[int, msgspec.Meta(ge=1, le=100)]


class RiskSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Scores at or above `elevated_threshold` are elevated (confirm asks for a challenge);
    at or above `highest_threshold`, highest (confirm refuses)."""

    elevated_threshold: int = DEFAULT_ELEVATED_THRESHOLD
    highest_threshold: int = DEFAULT_HIGHEST_THRESHOLD

    @property
    def thresholds(self) -> Thresholds:
        """The thresholds as the scoring rules take them."""
        return Thresholds(elevated=self.elevated_threshold, highest=self.highest_threshold)


MAX_ALLOWED_ORIGINS = 20
# `scheme://host[:port]` as a browser sends it in `Origin`: no path, user, query or wildcard.
OriginValue = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^https?://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:[0-9]{1,5})?$",
        max_length=270,
        examples=["https://shop.example.com"],
    ),
]
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1")


class OriginSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Origins whose pages may call the browser endpoints (embedded checkout), beyond the
    checkout's own and each session's success/cancel pages; normalized as browsers send
    them (lower case, no default port)."""

    allowed_origins: tuple[str, ...] = ()


class AccountSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What an account has configured; an account that never did has all the defaults."""

    risk: RiskSettings = RiskSettings()
    # Convenience fees per payment method (docs/fees.md); the default charges none.
    fees: FeeSchedule = FeeSchedule()
    # Browser origins allowed beyond the session's own (docs/browser-security.md).
    origins: OriginSettings = OriginSettings()


class RiskSettingsUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    elevated_threshold: Threshold | msgspec.UnsetType = msgspec.UNSET
    highest_threshold: Threshold | msgspec.UnsetType = msgspec.UNSET


class OriginSettingsUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The new list replaces the old one whole (send [] to clear it)."""

    allowed_origins: (
        Annotated[list[OriginValue], msgspec.Meta(max_length=MAX_ALLOWED_ORIGINS)]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class AccountSettingsUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of PATCH /v1/account/settings: absent fields keep their value."""

    risk: RiskSettingsUpdate | msgspec.UnsetType = msgspec.UNSET
    fees: FeeScheduleUpdate | msgspec.UnsetType = msgspec.UNSET
    origins: OriginSettingsUpdate | msgspec.UnsetType = msgspec.UNSET


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(AccountSettings)


def encode_settings(settings: AccountSettings) -> bytes:
    """The stored form (msgpack). Defaults are written out: a value an account chose stays
    chosen even if the default moves later."""
    return _ENCODER.encode(settings)


def decode_settings(raw: bytes | None) -> AccountSettings:
    """The stored form back; nothing stored means every default."""
    return AccountSettings() if not raw else _DECODER.decode(raw)


def apply_update(settings: AccountSettings, update: AccountSettingsUpdate) -> AccountSettings:
    """The settings with the update merged in; ValueError("<field>: <reason>") when the result
    breaks a rule across fields."""
    risk = settings.risk
    if not isinstance(update.risk, msgspec.UnsetType):
        changes = {
            name: getattr(update.risk, name)
            for name in RiskSettingsUpdate.__struct_fields__
            if not isinstance(getattr(update.risk, name), msgspec.UnsetType)
        }
        risk = msgspec.structs.replace(risk, **changes)
    if risk.elevated_threshold >= risk.highest_threshold:
        raise ValueError(
            f"risk.elevated_threshold: must be below risk.highest_threshold "
            f"(would be {risk.elevated_threshold} and {risk.highest_threshold})"
        )
    if not isinstance(update.fees, msgspec.UnsetType):
        # Each fee field's range is checked when the body is decoded; no rule spans them.
        settings = msgspec.structs.replace(
            settings, fees=apply_fee_update(settings.fees, update.fees)
        )
    if not isinstance(update.origins, msgspec.UnsetType) and not isinstance(
        update.origins.allowed_origins, msgspec.UnsetType
    ):
        origins = normalize_origins(update.origins.allowed_origins)
        settings = msgspec.structs.replace(
            settings, origins=OriginSettings(allowed_origins=origins)
        )
    return msgspec.structs.replace(settings, risk=risk)


def normalize_origins(values: list[str]) -> tuple[str, ...]:
    """Origins as browsers send them (lower case, default port dropped), duplicates removed;
    ValueError naming the entry when one cannot be a checkout page's origin."""
    out: list[str] = []
    for i, value in enumerate(values):
        field = f"origins.allowed_origins[{i}]"
        parts = urlsplit(value)
        host = (parts.hostname or "").lower()
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0 or (port is not None and port > 65535):
            raise ValueError(f"{field}: port must be 1-65535")
        # A payment page served over plain HTTP can be rewritten in transit; only a
        # developer's own machine is exempt.
        if parts.scheme != "https" and host not in _LOOPBACK_HOSTS:
            raise ValueError(f"{field}: must use https (http only for localhost)")
        default = 443 if parts.scheme == "https" else 80
        origin = f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")
        if origin not in out:
            out.append(origin)
    return tuple(out)
