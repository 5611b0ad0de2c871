"""Webhook signatures follow Standard Webhooks: the published vector, an independent
computation for our own secrets, both signatures during a rotation, the 24 h overlap, and
interop with the standard's own library (`standardwebhooks`) in both directions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from shared.webhooks.model import SECRET_OVERLAP_MS, SecretVersion, live_secrets, rotated
from shared.webhooks.signing import (
    new_secret,
    sign,
    signature_header,
    verify,
    webhook_headers,
)

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


# --- interop with the standard's own Python library, both ways, rotation included ----------

INTEROP_BODIES = [
    b"{}",
    '{"id":"evt_1","type":"hosted_session.created","data":{"name":"Zoë","amount":14650}}'.encode(),
    b'{"a": "x.y.z", "b": "v1,not a signature"}',
]


@pytest.mark.parametrize("body", INTEROP_BODIES)
def test_the_standard_library_verifies_our_deliveries_during_a_rotation(body: bytes) -> None:
    new, old, stranger = new_secret(), new_secret(), new_secret()
    now = int(time.time())
    headers = webhook_headers([new, old], "evt_interop", now, body)
    # A receiver holding either live secret accepts the delivery; the parsed body is ours.
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body + b" ", headers)


@pytest.mark.parametrize("body", INTEROP_BODIES)
def test_we_verify_what_the_standard_library_signs_during_a_rotation(body: bytes) -> None:
    new, old, stranger = new_secret(), new_secret(), new_secret()
    now = int(time.time())
    at = datetime.fromtimestamp(now, tz=UTC)
    # Their signatures, one per secret, in a rotation's header; byte for byte ours too.
    theirs = " ".join(Webhook(s).sign("evt_interop", at, body.decode()) for s in (new, old))
    assert theirs == signature_header([new, old], "evt_interop", now, body)
    headers = {
        "Webhook-Id": "evt_interop",
        "Webhook-Timestamp": str(now),
        "Webhook-Signature": theirs,
    }
    assert verify(new, headers, body, now_s=now)
    assert verify(old, headers, body, now_s=now)
    assert not verify(stranger, headers, body, now_s=now)
    assert not verify(new, headers, body + b" ", now_s=now)
    assert not verify(new, {**headers, "Webhook-Id": "evt_other"}, body, now_s=now)
    # Outside the standard's 5 minutes either way: refused as a possible replay.
    assert verify(new, headers, body, now_s=now + 300)
    assert not verify(new, headers, body, now_s=now + 301)
    assert not verify(new, headers, body, now_s=now - 301)


def test_our_verify_refuses_what_the_standard_library_refuses() -> None:
    secret = new_secret()
    now = int(time.time())
    good = webhook_headers([secret], "evt_1", now, b"{}")
    cases = [
        {k: v for k, v in good.items() if k != "webhook-signature"},
        {k: v for k, v in good.items() if k != "webhook-id"},
        {**good, "webhook-timestamp": "soon"},
        {**good, "webhook-signature": "v2," + good["webhook-signature"].split(",", 1)[1]},
        {**good, "webhook-timestamp": str(now - 3600)},
    ]
    for headers in cases:
        assert not verify(secret, headers, b"{}", now_s=now)
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(b"{}", headers)
    assert verify(secret, good, b"{}", now_s=now)
    Webhook(secret).verify(b"{}", good)
