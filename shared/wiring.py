"""Builds the core services the same way for the API and the workers."""

from __future__ import annotations

from dataclasses import dataclass

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
from shared.payments.processor import SimulatedProcessor
from shared.payments.store import SimulatorLedger
from shared.redis.jobs import deserialize_job, serialize_job
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
        cipher,
        clock,
        settings.public_base_url,
    )
    return sessions, idempotency


@dataclass(frozen=True, slots=True)
class Domain:
    """Every service of the core, built once per process over one Redis pool (the API's app
    state and the workers' context hold one each)."""

    keys: Keys
    cipher: DataCipher
    sessions: SessionService
    idempotency: IdempotencyService
    accounts: AccountService
    risk: RiskService
    fees: FeeService
    checkout: CheckoutService
    wallet: WalletStore
    challenge: ChallengeService


def build_domain(settings: Settings, redis: Redis, clock: Clock) -> Domain:
    """Wire the core: nothing connects until first use."""
    keys = Keys(settings.key_prefix)
    cipher = DataCipher(settings.data_key_bytes)
    sessions, idempotency = build_session_service(settings, redis, clock)
    accounts = AccountService(AccountStore(redis, keys))
    risk = RiskService(RiskStore(redis, keys), sessions, cipher)
    confirm_risk = ConfirmRisk(risk, sessions, clock)
    fees = FeeService(
        accounts,
        FeeQuoteStore(redis, keys),
        clock,
        quote_ttl_seconds=settings.fee_quote_ttl_seconds,
    )
    wallet = WalletStore(redis, keys)
    checkout = CheckoutService(
        sessions,
        CheckoutStore(redis, keys),
        wallet,
        SimulatedProcessor(
            SimulatorLedger(redis, keys),
            answer_delay_seconds=settings.payment_simulator_answer_delay_seconds,
        ),
        confirm_risk,
        fees,
        cipher,
        clock,
    )
    limits = ChallengeLimits()
    sender: SmsSender = UnconfiguredSmsSender()
    if settings.env != "production":
        # The dev outbox keeps a text as long as its code lives (tests and the dev page read it);
        # production has no provider integrated yet and sending fails loudly.
        outbox = DevSmsOutbox(redis, keys, ttl_seconds=limits.code_ttl_ms // 1000)
        sender = DevSmsSender(settings, outbox)
    challenge = ChallengeService(sessions, confirm_risk, sender, cipher, clock, limits)
    return Domain(
        keys=keys,
        cipher=cipher,
        sessions=sessions,
        idempotency=idempotency,
        accounts=accounts,
        risk=risk,
        fees=fees,
        checkout=checkout,
        wallet=wallet,
        challenge=challenge,
    )
