"""Standard Webhooks signing (https://www.standardwebhooks.com): pure, no I/O.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, the key is the base64 part of
the `whsec_…` secret, and the signature is `v1,<base64 HMAC-SHA256>`. During a secret rotation
one signature per live secret is sent, space-separated; a receiver accepts any that matches.

Ours rather than the `standardwebhooks` package's `Webhook.sign`: it signs bytes as sent (the
package decodes the body to `str` and encodes it again), takes the attempt's integer
timestamp (the package wants a `datetime`) and needs no object per secret. Both produce the
same signatures, checked both ways in tests/unit/test_webhook_signing.py; the per-signature
cost of each is in docs/performance.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105  (the standard's prefix, not a secret)
SECRET_BYTES = 32
SIGNATURE_VERSION = "v1"
# How far a receiver lets `webhook-timestamp` stray from its clock (the standard's 5 minutes).
TOLERANCE_SECONDS = 300


def new_secret() -> str:
    """`whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret: its base64-decoded part."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">`."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_header(secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one signature per live secret, space-separated."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets_)


def webhook_headers(
    secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (plus the body's content type)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets_, msg_id, timestamp, body),
        "content-type": "application/json",
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now_s: float,
    tolerance_s: int = TOLERANCE_SECONDS,
) -> bool:
    """A receiver's check (what `standardwebhooks.Webhook.verify` does): the headers are
    present, the timestamp within `tolerance_s` of `now_s`, and one `v1` signature of the
    space-separated list matches `secret`. Header names in any case."""
    lower = {name.lower(): value for name, value in headers.items()}
    msg_id = lower.get("webhook-id", "")
    stamp = lower.get("webhook-timestamp", "")
    if not msg_id or not stamp.isascii() or not stamp.isdigit():
        return False
    timestamp = int(stamp)
    if abs(now_s - timestamp) > tolerance_s:
        return False  # too old or from the future: possibly a replay
    expected = sign(secret, msg_id, timestamp, body).encode()
    return any(
        candidate.startswith(f"{SIGNATURE_VERSION},")
        and hmac.compare_digest(candidate.encode(), expected)
        for candidate in lower.get("webhook-signature", "").split(" ")
    )
