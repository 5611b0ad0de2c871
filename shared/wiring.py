"""The one wiring site: every Redis client and every core service is built here, once per
process, into one typed `Core` that the API (`services/api/lifespan.py`) and the workers
(`workers/main.py`) both receive. The API adds only HTTP things on top (admin auth and its
JWKS cache, request limits, the origin cache); the workers only queue things (arq pools,
the webhook runtime, their id)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from arq.connections import ArqRedis
from redis.asyncio import Redis

from shared.accounts.service import AccountService
from shared.accounts.store import AccountStore
from shared.challenge.model import ChallengeLimits
from shared.challenge.senders import build_sms_sender, sms_challenges_on
from shared.challenge.service import ChallengeService
from shared.checkout.risk import ConfirmRisk
from shared.checkout.service import CheckoutService
from shared.checkout.store import CheckoutStore
from shared.clock import Clock
from shared.config import Settings
from shared.crypto import DataCipher
from shared.events.stream import AccountEvents
from shared.fees.service import FeeService
from shared.fees.store import FeeQuoteStore
from shared.idempotency.service import IdempotencyService
from shared.idempotency.store import IdempotencyStore
from shared.payments.factory import build_processor
from shared.redis.client import create_redis
from shared.redis.jobs import JobQueue, deserialize_job, serialize_job
from shared.redis.keys import Keys
from shared.redis.ratelimit import build_card_testing
from shared.risk.service import RiskService
from shared.risk.store import RiskStore
from shared.sessions.service import SessionService
from shared.sessions.store import SessionStore
from shared.wallet.store import WalletStore
from shared.webhooks.service import WebhookService
from shared.webhooks.ssrf import private_allowed
from shared.webhooks.store import WebhookStore


class Managed(Protocol):
    """Something that lives as long as the process: started after wiring, closed at exit
    (a refresher task, a pooled client of an outside service)."""

    def start(self) -> None: ...

    async def aclose(self) -> None: ...


M = TypeVar("M", bound=Managed)


@dataclass(slots=True)
class Lifetime:
    """The process-lifetime resources of one wiring, started in order, closed in reverse."""

    _items: list[Managed] = field(default_factory=list)

    def add(self, item: M) -> M:
        """Register `item` (returned, so construction and registration are one statement)."""
        self._items.append(item)
        return item

    def start(self) -> None:
        for item in self._items:
            item.start()

    async def aclose(self) -> None:
        for item in reversed(self._items):
            await item.aclose()


def data_client(settings: Settings, client_name: str) -> Redis:
    """The data store's client (sessions, events, limits, ...). Single commands and scripts
    share one auto-pipelined connection (shared/redis/multiplex.py)."""
    return create_redis(settings, client_name=client_name, multiplex_scripts=True)


def queue_client(settings: Settings, client_name: str) -> ArqRedis:
    """A pool for arq's job queue (a worker's poll loop holds one per queue). The data store
    and the queue may become separate servers (a cluster for data): only this changes."""
    return arq_client(create_redis(settings, client_name=client_name))


def arq_client(redis: Redis) -> ArqRedis:
    """arq over `redis`'s pool, with our job serialization."""
    return ArqRedis(
        connection_pool=redis.connection_pool,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
    )


@dataclass(frozen=True, slots=True)
class Core:
    """Every service of the core, built once per process by `build_core`."""

    settings: Settings
    clock: Clock
    # The data store's client. The webhook JobQueue enqueues over it too (one pool) until
    # the queue gets its own server; `build_core` is where that split goes.
    redis: Redis
    keys: Keys
    cipher: DataCipher
    sessions: SessionService
    idempotency: IdempotencyService
    accounts: AccountService
    risk: RiskService
    fees: FeeService
    wallet: WalletStore
    checkout: CheckoutService
    challenge: ChallengeService
    webhooks: WebhookService
    webhook_store: WebhookStore
    jobs: JobQueue
    events: AccountEvents
    lifetime: Lifetime

    def start(self) -> None:
        """Start the process-lifetime resources (call once, inside the event loop)."""
        self.lifetime.start()

    async def aclose(self) -> None:
        """Close the resources, then the Redis pool."""
        try:
            await self.lifetime.aclose()
        finally:
            await self.redis.aclose(close_connection_pool=True)


def build_core(settings: Settings, clock: Clock, *, client_name: str) -> Core:
    """The core over a new data-store client: nothing connects until first use."""
    return wire_core(settings, data_client(settings, client_name), clock)


def wire_core(settings: Settings, redis: Redis, clock: Clock) -> Core:
    """The core over a given client (tests and benches bring their own; the processes use
    `build_core`). `Core.aclose` closes that client too."""
    keys = Keys(settings.key_prefix)
    cipher = DataCipher(settings.data_key_bytes)
    lifetime = Lifetime()
    sessions = SessionService(SessionStore(redis, keys), cipher, clock, settings.public_base_url)
    idempotency = IdempotencyService(
        IdempotencyStore(redis, keys),
        cipher,
        ttl_seconds=settings.idempotency_ttl_seconds,
        lock_seconds=settings.idempotency_lock_seconds,
    )
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

    # --- payment processor ---
    processor = build_processor(settings, redis)

    checkout = CheckoutService(
        sessions,
        CheckoutStore(redis, keys),
        wallet,
        processor,
        confirm_risk,
        fees,
        cipher,
        clock,
        # Counts declines per card and client address; only the API's confirm knows one.
        card_testing=build_card_testing(settings, redis, clock, keys, cipher),
    )
    limits = ChallengeLimits()

    # --- SMS sender --- (HS_SMS_SENDER; opened and closed by the API's lifespan)
    sender = build_sms_sender(settings, redis, keys, limits)
    challenges_on = sms_challenges_on(settings)  # HS_SMS_CHALLENGES
    if not challenges_on:
        checkout = checkout.without_sms_challenges()
    challenge = ChallengeService(
        sessions, confirm_risk, sender, cipher, clock, limits, enabled=challenges_on
    )
    webhook_store = WebhookStore(redis, keys)
    jobs = JobQueue(redis, keys)
    webhooks = WebhookService(
        webhook_store,
        jobs,
        cipher,
        clock,
        require_https=settings.env == "production",
        allow_private=private_allowed(settings),
    )
    return Core(
        settings=settings,
        clock=clock,
        redis=redis,
        keys=keys,
        cipher=cipher,
        sessions=sessions,
        idempotency=idempotency,
        accounts=accounts,
        risk=risk,
        fees=fees,
        wallet=wallet,
        checkout=checkout,
        challenge=challenge,
        webhooks=webhooks,
        webhook_store=webhook_store,
        jobs=jobs,
        events=AccountEvents(redis, keys),
        lifetime=lifetime,
    )
