"""Settings, read once from the environment and passed in (never read at import time)."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Literal

import msgspec

Environment = Literal["development", "test", "production"]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every setting of the service; `from_env` documents the variable of each (README table)."""

    env: Environment = "development"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = 64
    key_prefix: str = "hs"
    # base64 of 32 bytes: AES-256-GCM key for fraud signals and replayed responses at rest.
    data_key: str = ""
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_base_url: str = "https://checkout.govifi.com"
    max_body_bytes: int = 65_536
    # Admin JWT verification (Cognito in production; a local key pair in dev and tests).
    jwks_url: str = ""
    jwks_file: str = ""
    jwt_issuer: str = "hosted-sessions-dev"
    jwt_token_use: str = "access"  # noqa: S105  (a Cognito claim value, not a secret)
    jwt_admin_group: str = "hosted-sessions-admin"
    jwt_platform_admin_group: str = "platform-admin"
    jwt_accounts_claim: str = "custom:payment_account_uids"
    jwt_leeway_seconds: int = 30
    jwks_refresh_min_seconds: int = 60
    idempotency_ttl_seconds: int = 86_400
    idempotency_lock_seconds: int = 60
    # Test seam: the API's clock runs this many ms off the real one (refused in production).
    clock_offset_ms: int = 0
    log_level: str = "info"
    log_json: bool | None = None  # None: JSON when stdout is not a TTY
    worker_poll_delay_seconds: float = 0.25
    worker_max_jobs: int = 200
    # Prometheus endpoint of a worker process (0 = off; one port per process on a host).
    worker_metrics_port: int = 0
    worker_metrics_host: str = "127.0.0.1"
    # Where `dev` keeps its local key pair, JWKS and data key between runs.
    dev_dir: str = ".dev"

    def __post_init__(self) -> None:
        if self.env == "production" and self.clock_offset_ms:
            raise ValueError("HS_CLOCK_OFFSET_MS is a test seam and is refused in production")
        if self.env == "production" and not self.data_key:
            raise ValueError("HS_DATA_KEY is required in production")

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
