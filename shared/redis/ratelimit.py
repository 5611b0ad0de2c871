"""Rate limits shared by every API replica: GCRA in Redis, one Lua step per check.

GCRA (the generic cell rate algorithm) keeps one number per limited thing: the theoretical
arrival time (TAT) of the next call. A limit of `count` per `period` lets a burst of `count`
through, then one call every `period / count`; it never needs a log of calls (a sliding
window log of 600 calls a minute per client would cost 600 zset members per address).
Times are the caller's clock in microseconds, so tests move time with their own clock and
every replica (NTP-synchronised) agrees to within its skew.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from typing import Literal

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.clock import Clock
from shared.config import Settings
from shared.crypto import DataCipher
from shared.errors import RateLimited
from shared.ids import partition_of_session
from shared.redis.keys import Keys
from shared.redis.scripts import load_script

log = structlog.get_logger(__name__)

Bucket = Literal["read", "confirm", "challenge"]


@dataclass(frozen=True, slots=True)
class Limit:
    """`count` calls per `period_s` seconds; a count of 0 means no limit."""

    count: int
    period_s: int

    @property
    def enabled(self) -> bool:
        """False for a limit turned off in settings."""
        return self.count > 0


Check = tuple[str, Limit]


def retry_after_seconds(wait_us: int) -> int:
    """A wait as the Retry-After header states it: whole seconds, at least 1."""
    return max(1, math.ceil(wait_us / 1_000_000))


class RateLimiter:
    """GCRA limits over Redis; every method is one round trip (EVALSHA)."""

    def __init__(self, redis: Redis, clock: Clock) -> None:
        self._clock = clock
        self._script = load_script(redis, "ratelimit_gcra")

    async def _run(self, mode: str, checks: tuple[Check, ...]) -> int:
        live = [(key, limit) for key, limit in checks if limit.enabled]
        if not live:
            return 0
        args: list[int | str] = [self._clock.now_ms() * 1000, mode]
        for _, limit in live:
            period_us = limit.period_s * 1_000_000
            # Floored to whole µs: count * interval never exceeds the period, so a full burst
            # of `count` always passes.
            args += [period_us // limit.count, period_us]
        wait = await self._script(keys=[key for key, _ in live], args=args)
        return int(wait)

    async def hit(self, *checks: Check) -> int:
        """Take one call from every limit, or from none if any is spent. Returns 0 when the
        call may proceed, else the wait in µs. Keys of one call must share a Cluster slot."""
        return await self._run("hit", checks)

    async def peek(self, *checks: Check) -> int:
        """The wait in µs before one more call would pass (0: it would); takes nothing."""
        return await self._run("peek", checks)

    async def record(self, *checks: Check) -> None:
        """Count one event against every limit, passed or not (e.g. a declined charge)."""
        await self._run("record", checks)


def address_bucket(address: str) -> str:
    """What one client is limited as: an IPv4 address, or an IPv6 address's /64 (one
    subscriber's whole prefix, which they rotate through freely). Anything else as given."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address.strip()
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class AddressDigest:
    """Keyed hash of a client address: key names never hold an IP (it is personal data)."""

    def __init__(self, cipher: DataCipher) -> None:
        self._cipher = cipher

    def __call__(self, address: str) -> str:
        return self._cipher.secret_hash("client-ip:" + address_bucket(address))[:32]


class RequestLimits:
    """Per-session and per-client-address limits of the browser endpoints, per bucket."""

    def __init__(
        self,
        limiter: RateLimiter,
        keys: Keys,
        digest: AddressDigest,
        per_session: dict[Bucket, Limit],
        per_address: dict[Bucket, Limit],
    ) -> None:
        self._limiter = limiter
        self._keys = keys
        self._digest = digest
        self._per_session = per_session
        self._per_address = per_address

    async def check_address(self, address: str, bucket: Bucket) -> int:
        """Count a call from `address`; 0 when it may proceed, else Retry-After seconds."""
        limit = self._per_address[bucket]
        if not limit.enabled:
            return 0
        key = self._keys.rate_limit_client(bucket, self._digest(address))
        wait = await self._limiter.hit((key, limit))
        return retry_after_seconds(wait) if wait else 0

    async def check_session(self, session_id: str, bucket: Bucket) -> int:
        """Count a call of an authenticated session; 0 when it may proceed, else Retry-After
        seconds. Only verified credentials are counted: a caller who knows a session's id
        but not its secret cannot spend that session's budget."""
        limit = self._per_session[bucket]
        partition = partition_of_session(session_id)
        if not limit.enabled or partition is None:
            return 0
        key = self._keys.rate_limit_session(partition, session_id, bucket)
        wait = await self._limiter.hit((key, limit))
        return retry_after_seconds(wait) if wait else 0


class CardTestingGuard:
    """Declined charges per card fingerprint and per client address within one account.

    Card testers run many cards through many sessions (the per-session cap does not see
    them) or one stolen card through many sessions: both show up here. Only declines count,
    so a shopper paying normally never spends anything; the check runs before a charge."""

    def __init__(
        self,
        limiter: RateLimiter,
        keys: Keys,
        digest: AddressDigest,
        per_card: Limit,
        per_ip: Limit,
    ) -> None:
        self._limiter = limiter
        self._keys = keys
        self._digest = digest
        self._per_card = per_card
        self._per_ip = per_ip

    def _checks(self, account_uid: str, fingerprint: str, address: str | None) -> list[Check]:
        # Both keys carry the account's tag: one Lua step over one slot.
        # Never without the address check: a caller whose address is unknown (no peer, e.g. a
        # Unix socket) shares one budget with every other such caller rather than having none.
        address_key = self._keys.card_testing(
            account_uid, "ip", self._digest(address or _UNKNOWN_ADDRESS)
        )
        return [
            (self._keys.card_testing(account_uid, "fp", fingerprint), self._per_card),
            (address_key, self._per_ip),
        ]

    async def check(self, account_uid: str, fingerprint: str, address: str | None) -> None:
        """Raise RateLimited (with Retry-After) when this card or address has failed too
        often in this account lately."""
        wait = await self._limiter.peek(*self._checks(account_uid, fingerprint, address))
        if wait:
            # Neither the card's fingerprint nor the address is logged: the decision is enough.
            log.info("card_testing.refused", account_uid=account_uid)
            raise RateLimited(
                "Too many declined payments from this card or device; try again later",
                retry_after=retry_after_seconds(wait),
            )

    async def record_failure(self, account_uid: str, fingerprint: str, address: str | None) -> None:
        """Count a declined charge. A Redis fault here is logged, not raised: the decline
        the shopper must see is already decided and written."""
        try:
            await self._limiter.record(*self._checks(account_uid, fingerprint, address))
        except RedisError as exc:
            log.warning("card_testing.record_failed", error=type(exc).__name__)


_MINUTE = 60
_HOUR = 3600
_UNKNOWN_ADDRESS = "unknown"  # not an IP address: never any real client's budget


def build_request_limits(
    settings: Settings, redis: Redis, clock: Clock, keys: Keys, cipher: DataCipher
) -> RequestLimits:
    """The API's per-session and per-address request limits, from settings."""
    s = settings
    return RequestLimits(
        RateLimiter(redis, clock),
        keys,
        AddressDigest(cipher),
        per_session={
            "read": Limit(s.rate_limit_reads_per_session, _MINUTE),
            "confirm": Limit(s.rate_limit_confirms_per_session, _MINUTE),
            "challenge": Limit(s.rate_limit_challenges_per_session, _MINUTE),
        },
        per_address={
            "read": Limit(s.rate_limit_reads_per_ip, _MINUTE),
            "confirm": Limit(s.rate_limit_confirms_per_ip, _MINUTE),
            "challenge": Limit(s.rate_limit_challenges_per_ip, _MINUTE),
        },
    )


def build_card_testing(
    settings: Settings, redis: Redis, clock: Clock, keys: Keys, cipher: DataCipher
) -> CardTestingGuard:
    """The confirm's card-testing guard, from settings."""
    return CardTestingGuard(
        RateLimiter(redis, clock),
        keys,
        AddressDigest(cipher),
        per_card=Limit(settings.card_testing_failures_per_card, _HOUR),
        per_ip=Limit(settings.card_testing_failures_per_ip, _HOUR),
    )
