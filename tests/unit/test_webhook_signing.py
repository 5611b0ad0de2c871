"""Webhook signatures follow Standard Webhooks: the published vector, an independent
computation for our own secrets, both signatures during a rotation, and the 24 h overlap."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from shared.webhooks.model import SECRET_OVERLAP_MS, SecretVersion, live_secrets, rotated
from shared.webhooks.signing import new_secret, sign, signature_header, webhook_headers

# The test vector published with the Standard Webhooks specification (and Svix's docs).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def reference_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The specification's algorithm, written out here rather than taken from our module."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    mac = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def test_published_vector() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    assert (
        reference_signature(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY)
        == VECTOR_SIGNATURE
    )


def test_new_secrets_are_whsec_base64_of_enough_random_bytes() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    for secret in (first, second):
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 24


@pytest.mark.parametrize(
    "body",
    [b"{}", '{"id":"evt_1","amount":14650,"name":"Zoë"}'.encode(), b'{"a": "x.y.z"}'],
)
def test_our_secrets_sign_like_the_reference(body: bytes) -> None:
    secret = new_secret()
    assert sign(secret, "evt_abc", 1_700_000_000, body) == reference_signature(
        secret, "evt_abc", 1_700_000_000, body
    )


def test_each_part_of_the_signed_content_matters() -> None:
    base = sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY)
    assert sign(VECTOR_SECRET, VECTOR_ID + "x", VECTOR_TIMESTAMP, VECTOR_BODY) != base
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP + 1, VECTOR_BODY) != base
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY + b" ") != base
    assert sign(new_secret(), VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) != base


def test_rotation_sends_one_signature_per_secret_space_separated() -> None:
    new, old = new_secret(), new_secret()
    header = signature_header([new, old], "evt_1", 1_700_000_000, b"{}")
    assert header.split(" ") == [
        reference_signature(new, "evt_1", 1_700_000_000, b"{}"),
        reference_signature(old, "evt_1", 1_700_000_000, b"{}"),
    ]


def test_headers_of_an_attempt() -> None:
    headers = webhook_headers([VECTOR_SECRET], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY)
    assert headers == {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
        "content-type": "application/json",
    }


def test_a_rotated_out_secret_signs_for_24_hours_then_stops() -> None:
    now = 1_700_000_000_000
    first = [SecretVersion(secret="whsec_old", created_at_ms=now - 1000)]
    versions, until = rotated(first, "whsec_new", now)
    assert until == now + SECRET_OVERLAP_MS == now + 24 * 3600 * 1000
    assert [v.secret for v in live_secrets(versions, now)] == ["whsec_new", "whsec_old"]
    assert [v.secret for v in live_secrets(versions, until - 1)] == ["whsec_new", "whsec_old"]
    assert [v.secret for v in live_secrets(versions, until)] == ["whsec_new"]
    # A second rotation inside the overlap keeps every secret still live, each with its own
    # end; the one rotated out last gets the full 24 h.
    again, until2 = rotated(versions, "whsec_newer", now + 1000)
    assert [v.secret for v in live_secrets(again, now + 1000)] == [
        "whsec_newer",
        "whsec_new",
        "whsec_old",
    ]
    assert [v.secret for v in live_secrets(again, until)] == ["whsec_newer", "whsec_new"]
    assert [v.secret for v in live_secrets(again, until2)] == ["whsec_newer"]
    # Rotating over and over keeps the current secret and the three newest replaced ones.
    many = versions
    for n in range(10):
        many, _ = rotated(many, f"whsec_{n}", now + 2000 + n)
    assert [v.secret for v in live_secrets(many, now + 3000)] == [
        "whsec_9",
        "whsec_8",
        "whsec_7",
        "whsec_6",
    ]
