"""Choosing the SMS sender (`build_sms_sender`), production's check of that choice
(`sms_config_problems`), and the Amazon SNS sender. docs/challenge.md, Senders.

The SNS client is aiobotocore's: region, credentials and an endpoint override come from the
standard AWS chain (AWS_REGION / AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID…, AWS_PROFILE and
~/.aws/config, instance and task roles, AWS_ENDPOINT_URL_SNS / AWS_ENDPOINT_URL). One client
per process: `start()` at start-up, `aclose()` at shutdown.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from contextlib import AsyncExitStack
from typing import Any

import structlog
from redis.asyncio import Redis

from shared.challenge.model import ChallengeLimits, mask_phone
from shared.challenge.sms import (
    DevSmsSender,
    SmsRejected,
    SmsSender,
    SmsUnavailable,
    UnconfiguredSmsSender,
)
from shared.challenge.store import DevSmsOutbox
from shared.config import Settings
from shared.redis.keys import Keys

log = structlog.get_logger(__name__)

# What SNS dials: "+", a country code that does not start with 0, at most 15 digits in all.
E164 = re.compile(r"\+[1-9][0-9]{6,14}")

# SNS error codes after which the same request may pass later (throttling, their faults).
_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "KMSThrottling",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)


def aws_region() -> str | None:
    """The region as the AWS SDKs resolve it: AWS_REGION (which botocore alone does not read),
    then AWS_DEFAULT_REGION and the profile's `region`."""
    # AWS's SDK is imported where used: it costs about a second of start-up to every process,
    # and only an API with HS_SMS_SENDER=sns (or check-config) needs it.
    from aiobotocore.session import get_session

    region = os.environ.get("AWS_REGION") or get_session().get_config_variable("region")
    return str(region) if region else None


def sender_choice(settings: Settings) -> str:
    """The sender this process uses: the setting, else dev outside production and none
    ("") in production."""
    if settings.sms_sender:
        return settings.sms_sender
    return "" if settings.env == "production" else "dev"


def sms_challenges_on(settings: Settings) -> bool:
    """False when HS_SMS_CHALLENGES=off: elevated-risk sessions are refused outright."""
    return settings.sms_challenges == "on"


def sms_config_problems(settings: Settings) -> list[tuple[str, str]]:
    """What production would refuse about the SMS settings, as (setting, reason) pairs; empty
    outside production. The AWS region is looked up as the SNS client will (environment,
    profile); credentials are not (an instance or task role resolves only when first used)."""
    if settings.env != "production" or not sms_challenges_on(settings):
        return []
    choice = sender_choice(settings)
    if choice == "dev":
        return [
            (
                "HS_SMS_SENDER",
                "the dev sender keeps codes in clear and sends nothing: set HS_SMS_SENDER=sns"
                " (or HS_SMS_CHALLENGES=off to refuse elevated-risk sessions instead)",
            )
        ]
    if choice != "sns":
        return [
            (
                "HS_SMS_SENDER",
                "no SMS sender: elevated-risk shoppers could never pay; set HS_SMS_SENDER=sns"
                " (or HS_SMS_CHALLENGES=off to refuse elevated-risk sessions instead)",
            )
        ]
    if aws_region() is None:
        return [
            (
                "AWS_REGION",
                "the SNS sender needs a region: set AWS_REGION (or AWS_DEFAULT_REGION, or a"
                " region in the AWS profile)",
            )
        ]
    return []


def build_sms_sender(
    settings: Settings, redis: Redis, keys: Keys, limits: ChallengeLimits
) -> SmsSender:
    """The process's sender, per HS_SMS_SENDER (nothing connects until `start()`)."""
    choice = sender_choice(settings)
    if choice == "sns":
        return SnsSmsSender(
            sender_id=settings.sms_sender_id,
            budget_seconds=settings.sms_send_budget_seconds,
        )
    if choice == "dev":
        # The dev outbox keeps a text as long as its code lives (tests and the dev page
        # read it); DevSmsSender refuses to be built in production.
        outbox = DevSmsOutbox(redis, keys, ttl_seconds=limits.code_ttl_ms // 1000)
        return DevSmsSender(settings, outbox)
    return UnconfiguredSmsSender()


class SnsSmsSender:
    """Publishes each text to one phone number through Amazon SNS (`sns:Publish`), as a
    Transactional SMS. Throttling, SNS faults, failed connections and timeouts are retried
    with jittered exponential backoff until `budget_seconds` is spent; every retry sends the
    same text (one code per request; after an ambiguous timeout the shopper may get the
    same code twice, never two different codes). A refusal (bad number, no permission) is
    not retried."""

    def __init__(
        self,
        *,
        sender_id: str = "",
        budget_seconds: float = 8.0,
        first_backoff_seconds: float = 0.2,
        max_backoff_seconds: float = 2.0,
        try_timeout_seconds: float | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self._sender_id = sender_id
        self._budget = budget_seconds
        self._first_backoff = first_backoff_seconds
        self._max_backoff = max_backoff_seconds
        # Connect and read timeout of one try: half the budget, 0.5-5 s, unless given.
        self._try_timeout = try_timeout_seconds or max(0.5, min(5.0, budget_seconds / 2))
        self._endpoint_url = endpoint_url  # tests; production uses AWS_ENDPOINT_URL_SNS
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._opening = asyncio.Lock()

    async def start(self) -> None:
        """Create the SNS client (reads the region; credentials resolve on first use)."""
        from aiobotocore.session import get_session
        from botocore.config import Config

        async with self._opening:
            if self._client is not None:
                return
            # No request may outlive the budget; our loop does the retries, not botocore's.
            config = Config(
                connect_timeout=self._try_timeout,
                read_timeout=self._try_timeout,
                retries={"total_max_attempts": 1},
            )
            stack = AsyncExitStack()
            self._client = await stack.enter_async_context(
                get_session().create_client(
                    "sns",
                    region_name=aws_region(),
                    config=config,
                    endpoint_url=self._endpoint_url,
                )
            )
            self._stack = stack

    async def aclose(self) -> None:
        """Close the client and its connections."""
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def send(self, phone: str, text: str, *, reference: str = "") -> None:
        """Publish `text` to `phone` (E.164), retrying transient failures within the budget."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        if E164.fullmatch(phone) is None:
            raise SmsRejected("not an E.164 number")
        if self._client is None:
            await self.start()
        attributes: dict[str, dict[str, str]] = {
            "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"},
        }
        if self._sender_id:
            attributes["AWS.SNS.SMS.SenderID"] = {
                "DataType": "String",
                "StringValue": self._sender_id,
            }
        deadline = time.monotonic() + self._budget
        backoff = self._first_backoff
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = await asyncio.wait_for(
                    self._client.publish(
                        PhoneNumber=phone, Message=text, MessageAttributes=attributes
                    ),
                    timeout=max(0.05, deadline - time.monotonic()),
                )
            except ClientError as exc:
                error = exc.response.get("Error", {})
                code = str(error.get("Code", ""))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                if code not in _TRANSIENT_CODES and status < 500:
                    # Never the provider's message: it may quote the number.
                    log.warning(
                        "sms.sns_rejected",
                        to=mask_phone(phone),
                        reference=reference,
                        error=code,
                        attempt=attempt,
                    )
                    raise SmsRejected(f"SNS refused the message ({code})") from None
                reason = code or f"http_{status}"
            except (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError) as exc:
                reason = type(exc).__name__
            except (ReadTimeoutError, TimeoutError) as exc:
                # Ambiguous: SNS may have taken it. A retry sends the same text again.
                reason = type(exc).__name__
            except BotoCoreError as exc:
                # Credentials or configuration missing: asking again will not help.
                log.error("sms.sns_unusable", reference=reference, error=type(exc).__name__)
                raise SmsRejected(f"SNS client unusable ({type(exc).__name__})") from None
            else:
                log.info(
                    "sms.sns_sent",
                    to=mask_phone(phone),
                    reference=reference,
                    message_id=str(answer.get("MessageId", "")),
                    attempt=attempt,
                    chars=len(text),
                )
                return
            pause = random.uniform(0, backoff)  # noqa: S311 - jitter, not a secret
            left = deadline - time.monotonic()
            log.warning(
                "sms.sns_retry",
                to=mask_phone(phone),
                reference=reference,
                error=reason,
                attempt=attempt,
            )
            if left <= pause:
                raise SmsUnavailable(f"SNS did not take the message ({reason})")
            await asyncio.sleep(pause)
            backoff = min(self._max_backoff, backoff * 2)
