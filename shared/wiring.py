"""Builds the session service the same way for the API and the workers."""

from __future__ import annotations

from arq.connections import ArqRedis
from redis.asyncio import Redis

from shared.accounts.service import AccountService
from shared.accounts.store import AccountStore
from shared.challenge.model import ChallengeLimits
from shared.challenge.service import ChallengeService
from shared.challenge.sms import DevSmsSender, SmsSender, UnconfiguredSmsSender
from shared.challenge.store import DevSmsOutbox
from shared.checkout.risk import ConfirmRisk
from shared.checkout.service import CheckoutService
from shared.checkout.store import CheckoutStore
from shared.clock import Clock
from shared.config import Settings
from shared.crypto import DataCipher
from shared.fees.service import FeeService
from shared.fees.store import FeeQuoteStore
from shared.idempotency.service import IdempotencyService
from shared.idempotency.store import IdempotencyStore
from shared.jobs import JobQueue, deserialize_job, serialize_job
from shared.payments.processor import SimulatedProcessor
from shared.redis.keys import Keys
from shared.risk.service import RiskService
from shared.risk.store import RiskStore
from shared.sessions.service import SessionService
from shared.sessions.store import SessionStore
from shared.wallet.store import WalletStore


def arq_client(redis: Redis) -> ArqRedis:
    """arq on the same pool: one set of connections, timeouts and retries."""
    return ArqRedis(
        connection_pool=redis.connection_pool,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
    )


def build_session_service(
    settings: Settings, redis: Redis, clock: Clock
) -> tuple[SessionService, IdempotencyService]:
    keys = Keys(settings.key_prefix)
    cipher = DataCipher(settings.data_key_bytes)
    idempotency = IdempotencyService(
        IdempotencyStore(redis, keys),
        cipher,
        ttl_seconds=settings.idempotency_ttl_seconds,
        lock_seconds=settings.idempotency_lock_seconds,
    )
    sessions = SessionService(
        SessionStore(redis, keys),
        JobQueue(arq_client(redis), keys),
        idempotency,
        cipher,
        clock,
        settings.public_base_url,
    )
    return sessions, idempotency


def build_fee_service(settings: Settings, redis: Redis, clock: Clock) -> FeeService:
    """Fee quotes and the fee confirm charges, read from the account's fee schedule."""
    keys = Keys(settings.key_prefix)
    return FeeService(
        AccountService(AccountStore(redis, keys)),
        FeeQuoteStore(redis, keys),
        clock,
        quote_ttl_seconds=settings.fee_quote_ttl_seconds,
    )


def build_checkout_service(
    settings: Settings, redis: Redis, sessions: SessionService, clock: Clock
) -> tuple[CheckoutService, WalletStore]:
    """Confirm's collaborators: the simulator as processor, inline risk, the wallet, and
    the account's fee schedule with its quotes."""
    keys = Keys(settings.key_prefix)
    cipher = DataCipher(settings.data_key_bytes)
    wallet = WalletStore(redis, keys)
    risk = RiskService(RiskStore(redis, keys), sessions, cipher)
    checkout = CheckoutService(
        sessions,
        CheckoutStore(redis, keys),
        wallet,
        SimulatedProcessor(redis, settings.key_prefix),
        ConfirmRisk(risk, sessions, clock),
        build_fee_service(settings, redis, clock),
        cipher,
        clock,
    )
    return checkout, wallet


def build_challenge_service(
    settings: Settings, redis: Redis, sessions: SessionService, clock: Clock
) -> ChallengeService:
    """SMS challenges: the dev sender (codes readable in the dev outbox) everywhere but
    production, where no provider is integrated yet and sending fails loudly."""
    keys = Keys(settings.key_prefix)
    cipher = DataCipher(settings.data_key_bytes)
    limits = ChallengeLimits()
    risk = ConfirmRisk(RiskService(RiskStore(redis, keys), sessions, cipher), sessions, clock)
    sender: SmsSender = UnconfiguredSmsSender()
    if settings.env != "production":
        # The outbox keeps a text as long as its code lives.
        outbox = DevSmsOutbox(redis, keys, ttl_seconds=limits.code_ttl_ms // 1000)
        sender = DevSmsSender(settings, outbox)
    return ChallengeService(sessions, risk, sender, cipher, clock, limits)
