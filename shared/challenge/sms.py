"""Sending a text: the `SmsSender` seam, the dev/test sender, and production's placeholder.

No SMS provider is wired yet: production refuses to send rather than pretend to.
"""

from __future__ import annotations

from typing import Protocol

import structlog

from shared.challenge.model import mask_phone
from shared.challenge.store import DevSmsOutbox
from shared.config import Settings

log = structlog.get_logger(__name__)


class SmsError(Exception):
    """Raised when a text could not be handed to an SMS provider."""


class SmsNotConfigured(SmsError):
    """Raised when a text is sent where no SMS provider is configured."""


class SmsSender(Protocol):
    async def send(self, phone: str, text: str, *, reference: str = "") -> None:
        """Hand one text to the provider, or raise SmsError. `reference` is the caller's id
        for the message (providers' client reference; the session id here)."""
        ...


class DevSmsSender:
    """Dev and test: nothing leaves the machine. Logs a masked line (never the text, which
    holds the code) and keeps the text in the dev outbox under its reference."""

    def __init__(self, settings: Settings, outbox: DevSmsOutbox) -> None:
        if settings.env == "production":
            # The outbox holds codes in clear: a production process must never have one.
            raise ValueError("the dev SMS sender is refused in production")
        self._outbox = outbox

    async def send(self, phone: str, text: str, *, reference: str = "") -> None:
        """Log `sms.dev_sent` with a masked phone and keep the text for the dev outbox."""
        log.info("sms.dev_sent", to=mask_phone(phone), reference=reference, chars=len(text))
        if reference:
            await self._outbox.keep(reference, text)


class UnconfiguredSmsSender:
    """Production until an SMS provider is integrated: every send fails loudly."""

    async def send(self, phone: str, text: str, *, reference: str = "") -> None:
        """Always raises SmsNotConfigured."""
        raise SmsNotConfigured(
            "no SMS provider configured: SMS challenges cannot be sent in production"
        )
