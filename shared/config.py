"""Settings, read once from the environment and passed in (never read at import time)."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

Environment = Literal["development", "test", "production"]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every setting of the service; `from_env` documents the variable of each (README table)."""

    env: Environment = "development"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = 64
    # The longest any one Redis wait may take (a reply, a free pooled connection, a connect),
    # retries included: a hung Redis fails a request with 503 in about this long, well within
    # a client's patience (docs/architecture.md, Redis faults). /readyz waits at most the
    # second one.
    redis_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    redis_ready_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 0.5
    key_prefix: str = "hs"
    # base64 of 32 bytes: AES-256-GCM key for fraud signals and replayed responses at rest.
    data_key: str = ""
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_base_url: str = "https://checkout.govifi.com"
    max_body_bytes: int = 65_536
    # A body over max_body_bytes is still read (and dropped) up to this many bytes, so the
    # client, which is usually still sending, can read its 413 (docs/browser-security.md).
    max_body_drain_bytes: Annotated[int, msgspec.Meta(ge=0)] = 1_048_576
    # The request head (target and headers): more headers or bytes get a 431 and the
    # connection closed, before the app runs (services/api/server.py).
    max_header_count: Annotated[int, msgspec.Meta(ge=1)] = 100
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 16_384
    # Admin JWT verification (Cognito in production; a local key pair in dev and tests).
    jwks_url: str = ""
    jwks_file: str = ""
    jwt_issuer: str = "hosted-sessions-dev"
    jwt_token_use: str = "access"  # noqa: S105  (a Cognito claim value, not a secret)
    jwt_admin_group: str = "hosted-sessions-admin"
    jwt_platform_admin_group: str = "platform-admin"
    jwt_accounts_claim: str = "custom:payment_account_uids"
    jwt_leeway_seconds: int = 30
    # An unknown `kid` refetches the JWKS at most this often (made-up kids never flood the IdP).
    jwks_refresh_min_seconds: int = 60
    # A loaded key set is fetched again after its max-age: the JWKS response's Cache-Control
    # max-age held within [min, max], or the default when it gives none (and for a file).
    jwks_max_age_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    jwks_max_age_min_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    jwks_max_age_max_seconds: Annotated[float, msgspec.Meta(gt=0)] = 86_400.0
    # While refreshes fail, the last keys are trusted up to this many max-ages after they were
    # fetched; past that, admin calls answer 503 until the IdP answers again (fail closed).
    jwks_max_stale_factor: Annotated[float, msgspec.Meta(ge=1, le=100)] = 3.0
    idempotency_ttl_seconds: int = 86_400
    idempotency_lock_seconds: int = 60
    # Test seam: the API's clock runs this many ms off the real one (refused in production).
    clock_offset_ms: int = 0
    # Test seam: the payment simulator answers a charge it has just made this many seconds
    # late, so a fault test can kill the API between the charge and the session's update
    # (refused in production).
    payment_simulator_answer_delay_seconds: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.0
    # The payment processor: `simulator` (the built-in test mode; what empty means outside
    # production) or `module:function`, a factory taking the Settings and returning a
    # Processor (shared/payments/factory.py). Production refuses the simulator and empty.
    processor: str = ""
    log_level: str = "info"
    log_json: bool | None = None  # None: JSON when stdout is not a TTY
    worker_poll_delay_seconds: float = 0.25
    worker_max_jobs: int = 200
    # Prometheus endpoint of a worker process (0 = off; one port per process on a host).
    worker_metrics_port: int = 0
    worker_metrics_host: str = "127.0.0.1"
    # Where `dev` keeps its local key pair, JWKS and data key between runs.
    dev_dir: str = ".dev"
    # Event streams: an entry stays at least this long even once every consumer group has
    # read it (replay through GET /v1/events), and no longer than the maximum even when a
    # group has not (a forgotten group must not fill Redis, which runs with noeviction).
    event_min_retention_seconds: int = 86_400
    event_max_retention_seconds: int = 604_800
    event_trim_interval_seconds: int = 60
    # Webhooks: a delivery attempt succeeds on a 2xx within this many seconds (no redirects).
    webhook_timeout_seconds: float = 10.0
    # Seconds before each retry after a failed attempt (jitter adds up to 20 %); the last
    # failure marks the delivery dead. The default spans about 3 days and 3 hours.
    webhook_retry_schedule: str = "5,300,1800,7200,18000,36000,50400,72000,86400"
    # Webhook endpoints on private/loopback addresses (a receiver on the developer's own
    # machine). Unset: allowed in development, refused in test (the SSRF tests need the
    # production rules); production always refuses them and will not start with `true`.
    webhook_allow_private: bool | None = None
    # Requests in flight per receiving host (scheme, host, port) in each worker process; an
    # attempt that finds them all busy for a second is put back, not counted as failed.
    webhook_connections_per_host: int = 8
    # How long a fee quote holds (capped at its session's expiry): long enough to type a
    # card, short enough that a schedule change reaches shoppers soon (docs/fees.md).
    fee_quote_ttl_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 300
    # Browser endpoints (docs/browser-security.md). The client address is the TCP peer unless
    # this many proxies we run append to X-Forwarded-For (0: the header is never trusted).
    trusted_proxy_hops: Annotated[int, msgspec.Meta(ge=0, le=10)] = 0
    # Calls per minute, per session (after its secret is verified) and per client address;
    # 0 turns a limit off. Confirm and the SMS challenge are stricter than reads.
    rate_limit_reads_per_session: Annotated[int, msgspec.Meta(ge=0)] = 120
    rate_limit_reads_per_ip: Annotated[int, msgspec.Meta(ge=0)] = 600
    rate_limit_confirms_per_session: Annotated[int, msgspec.Meta(ge=0)] = 10
    rate_limit_confirms_per_ip: Annotated[int, msgspec.Meta(ge=0)] = 30
    rate_limit_challenges_per_session: Annotated[int, msgspec.Meta(ge=0)] = 10
    rate_limit_challenges_per_ip: Annotated[int, msgspec.Meta(ge=0)] = 30
    # Card-testing guard: declined charges per hour within one account, per card and per
    # client address, before confirm refuses further attempts (0: off).
    card_testing_failures_per_card: Annotated[int, msgspec.Meta(ge=0)] = 5
    card_testing_failures_per_ip: Annotated[int, msgspec.Meta(ge=0)] = 10
    # How long browsers may cache a CORS preflight (Chrome caps it at 7200).
    cors_max_age_seconds: Annotated[int, msgspec.Meta(ge=0, le=86_400)] = 600
    # How long each API process reuses an account's allowed origins before re-reading them
    # (a change made through this process applies at once; others within this time).
    origin_cache_seconds: Annotated[float, msgspec.Meta(ge=0, le=300)] = 5.0
    # SMS challenges (docs/challenge.md). The sender: "dev" (the outbox; every env but
    # production) or "sns" (Amazon SNS; region and credentials from the AWS chain); empty
    # means dev outside production and none in production. "off" switches challenges off:
    # elevated-risk sessions are then refused (challenge_required, not recoverable).
    sms_sender: Literal["", "dev", "sns"] = ""
    sms_challenges: Literal["on", "off"] = "on"
    # SNS only: the alphanumeric sender id shown where countries allow one (empty: none).
    sms_sender_id: Annotated[str, msgspec.Meta(max_length=11, pattern="^[A-Za-z0-9]*$")] = ""
    # How long one send may take, retries with backoff included, before the shopper is told
    # to ask again (well inside a code's 5-minute lifetime).
    sms_send_budget_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 8.0

    def __post_init__(self) -> None:
        # What production alone refuses (test seams, a missing data key, the simulator...) is
        # listed by shared/production.py, so start-up and check-config name every problem.
        if not self.jwks_max_age_min_seconds <= self.jwks_max_age_max_seconds:
            raise ValueError("HS_JWKS_MAX_AGE_MIN_SECONDS exceeds HS_JWKS_MAX_AGE_MAX_SECONDS")

    @property
    def webhook_private_allowed(self) -> bool:
        """Whether webhook endpoints may be private or loopback addresses, registration and
        delivery alike: the setting when given, else only in development; never in
        production."""
        if self.env == "production":
            return False
        if self.webhook_allow_private is None:
            return self.env == "development"
        return self.webhook_allow_private

    @property
    def data_key_bytes(self) -> bytes:
        """The decoded data key; empty settings fail loudly rather than encrypt with nothing."""
        raw = base64.b64decode(self.data_key) if self.data_key else b""
        if len(raw) != 32:
            raise ValueError("HS_DATA_KEY must be base64 of exactly 32 bytes")
        return raw

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `HS_*` variables (and `REDIS_URL`)."""
        env = os.environ if environ is None else environ
        fields: dict[str, object] = {}
        for name in cls.__struct_fields__:
            var = "REDIS_URL" if name == "redis_url" else f"HS_{name.upper()}"
            if var in env:
                fields[name] = env[var]
        # msgspec converts "8000" -> int and "true" -> bool with strict=False.
        return msgspec.convert(fields, cls, strict=False)

    def to_env(self) -> dict[str, str]:
        """The variables that rebuild these settings in a child process."""
        out: dict[str, str] = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is None:
                continue
            var = "REDIS_URL" if name == "redis_url" else f"HS_{name.upper()}"
            out[var] = str(value).lower() if isinstance(value, bool) else str(value)
        return out
