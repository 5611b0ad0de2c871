"""Sending a text: the `SmsSender` seam, the dev/test sender, and the placeholder of a
process without a sender. Amazon SNS, and choosing among them: `shared/challenge/senders.py`.
"""

from __future__ import annotations

from typing import Protocol

import structlog

from shared.challenge.model import mask_phone
from shared.challenge.store import DevSmsOutbox
from shared.config import Settings

log = structlog.get_logger(__name__)


class SmsError(Exception):
    """Raised when a text could not be handed to an SMS provider. `transient`: asking again
    later may work (throttling, an outage, no answer); otherwise it will not (a refused
    number, a sender without permission)."""

    transient = False


class SmsNotConfigured(SmsError):
    """Raised when a text is sent where no SMS provider is configured."""


class SmsUnavailable(SmsError):
    """Raised when the provider throttled, failed or did not answer within the send budget;
    the text may or may not have gone out (a timeout is ambiguous)."""

    transient = True


class SmsRejected(SmsError):
    """Raised when the provider refused the message for good (or it was refused before any
    send, e.g. a number that is not E.164)."""


class SmsSender(Protocol):
    async def send(self, phone: str, text: str, *, reference: str = "") -> None:
        """Hand one text to the provider, or raise SmsError. `reference` is the caller's id
        for the message (providers' client reference; the session id here)."""
        ...

    async def start(self) -> None:
        """Open the provider's client (once per process, at start-up)."""
        ...

    async def aclose(self) -> None:
        """Close what start() opened (at shutdown)."""
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

    async def start(self) -> None:
        """Nothing to open."""

    async def aclose(self) -> None:
        """Nothing to close."""


class UnconfiguredSmsSender:
    """A production process without a sender (refused at start-up by `sms_config_problems`
    unless challenges are off, when it is never called): every send fails loudly."""

    async def start(self) -> None:
        """Nothing to open."""

    async def aclose(self) -> None:
        """Nothing to close."""

    async def send(self, phone: str, text: str, *, reference: str = "") -> None:
        """Always raises SmsNotConfigured."""
        raise SmsNotConfigured(
            "no SMS provider configured: SMS challenges cannot be sent in production"
        )
