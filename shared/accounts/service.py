"""Account settings rules: read with defaults, merge a partial update, validate, store."""

from __future__ import annotations

import structlog

from shared.accounts.model import (
    AccountSettings,
    AccountSettingsUpdate,
    apply_update,
    decode_settings,
    encode_settings,
)
from shared.accounts.store import AccountStore
from shared.errors import InternalError, SemanticValidationFailed

log = structlog.get_logger(__name__)

# Compare-and-set retries before giving up under heavy concurrent change of one account.
_MAX_CAS_ATTEMPTS = 8


class AccountService:
    def __init__(self, store: AccountStore) -> None:
        self._store = store

    async def settings(self, account_uid: str) -> AccountSettings:
        """The account's settings (every default where it set nothing)."""
        return decode_settings(await self._store.get(account_uid))

    async def update_settings(
        self, account_uid: str, update: AccountSettingsUpdate
    ) -> AccountSettings:
        """Merge `update` into the stored settings; SemanticValidationFailed (422) when the
        result breaks a rule across fields (e.g. elevated must stay below highest)."""
        for _ in range(_MAX_CAS_ATTEMPTS):
            raw = await self._store.get(account_uid)
            current = decode_settings(raw)
            try:
                changed = apply_update(current, update)
            except ValueError as exc:
                raise SemanticValidationFailed(str(exc)) from None
            if changed == current:
                return current
            if await self._store.replace(account_uid, raw, encode_settings(changed)):
                # The audit trail of risk settings (bound to the request id of the change).
                log.info(
                    "account.settings_updated",
                    account_uid=account_uid,
                    elevated_threshold=changed.risk.elevated_threshold,
                    highest_threshold=changed.risk.highest_threshold,
                )
                return changed
        raise InternalError("account settings changed concurrently too often; retry")
