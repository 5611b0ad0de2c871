"""Idempotency-Key: the first response (status and body) is replayed for 24 h.

Flow: `begin` takes a short lock with a pending record (SET NX); the request runs; its answer
is stored encrypted (it may hold a client secret) under the same key. A request that changes
state stores its answer in the same atomic step as the change (`ReplayWrite`: the change's
Lua step SETs it), so a crash between the two can never make a retry do the work twice. An
answer without a change is stored afterwards, only over our own pending record. A failure
that is not a saved answer (shared.errors `replayed`) releases the key, again only if the
record is still our pending one, so a retry runs at once.

Stored form (msgpack array): state, the request fingerprint (32 raw bytes of its SHA-256),
the lock's token, the status, and the body compressed (preset dictionary: a create's response
repeats its id and URLs) then AES-GCM encrypted. Only we read the stored length, so
compressing before encrypting tells no one anything about the secret inside.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal

import msgspec

from shared.crypto import DataCipher
from shared.errors import IdempotencyInFlight, IdempotencyKeyReused, ValidationFailed
from shared.idempotency.store import IdempotencyStore
from shared.redis.compact import PresetCodec

MAX_KEY_LENGTH = 255


class _Record(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    state: Literal["pending", "done"]
    fingerprint: bytes  # the SHA-256 digest `request_fingerprint` spells in hex
    token: str = ""
    status: int = 0
    body: bytes = b""  # response body, compressed (_BODY_CODEC) then encrypted


class Replay(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    body: bytes


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """The right to run the request for this key; `finish` or `abandon` it."""

    redis_key: str
    fingerprint: str
    pending: bytes


class ReplayWrite:
    """A claimed key's answer, for a change that writes it in its own atomic step.

    The service building the change SETs `record(response)` at `key` (TTL `ttl_seconds`) in
    the change's Lua step, and sets `written` once that step applied; the caller then stores
    nothing more. Only a key of the change's hash tag can be written so (every key of an
    account's partition is)."""

    __slots__ = ("_claim", "_idem", "key", "status", "ttl_seconds", "written")

    def __init__(self, idem: IdempotencyService, claim: Claim, status: int) -> None:
        self._idem = idem
        self._claim = claim
        self.key = claim.redis_key
        self.status = status
        self.ttl_seconds = idem.ttl_seconds
        self.written = False

    @property
    def claim(self) -> Claim:
        return self._claim

    def record(self, response: msgspec.Struct) -> bytes:
        """The stored answer: `response` as the JSON body the route sends, with `status`."""
        return self._idem.done_record(self._claim, self.status, msgspec.json.encode(response))


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Record)
# Frozen (shared/redis/compact.py).
_BODY_CODEC = PresetCodec(
    0x14,
    b'{"session_id":"cs_","client_secret":"cs__secret_","expires_at":"2026-01-01T00:00:00.000Z",'
    b'"hosted_url":"https://checkout.govifi.com/cs_",'
    b'"embed_url":"https://checkout.govifi.com/embed/cs_"}',
    deflate_marker=0x04,
)


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


class IdempotencyService:
    def __init__(
        self, store: IdempotencyStore, cipher: DataCipher, ttl_seconds: int, lock_seconds: int
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._ttl = ttl_seconds
        self._lock = lock_seconds

    @property
    def ttl_seconds(self) -> int:
        return self._ttl

    async def begin(
        self, partition: int, account_uid: str, idem_key: str, fingerprint: str
    ) -> Claim | Replay:
        """Claim the key, or answer with the stored response; refuse reuse and overlap."""
        if not idem_key or len(idem_key) > MAX_KEY_LENGTH or not idem_key.isprintable():
            raise ValidationFailed(
                f"Idempotency-Key: must be 1-{MAX_KEY_LENGTH} printable characters"
            )
        redis_key = self._store.key(partition, account_uid, idem_key)
        pending = _ENCODER.encode(
            _Record(
                state="pending",
                fingerprint=bytes.fromhex(fingerprint),
                token=secrets.token_hex(8),
            )
        )
        current = await self._store.lock_or_get(redis_key, pending, self._lock)
        # Our own pending record: the lock was taken by this very call, whose first try's
        # reply was lost and whose retry (a new connection) found it (random token).
        if current is None or current == pending:
            return Claim(redis_key=redis_key, fingerprint=fingerprint, pending=pending)
        record = _DECODER.decode(current)
        if record.fingerprint.hex() != fingerprint:
            raise IdempotencyKeyReused(
                "Idempotency-Key: this key was already used with a different request"
            )
        if record.state == "pending":
            raise IdempotencyInFlight(
                "Idempotency-Key: the first request with this key is still in progress",
                retry_after=1,
            )
        body = self._cipher.decrypt(record.body, context=redis_key)
        return Replay(status=record.status, body=_BODY_CODEC.unpack(body))

    def replay_write(self, claim: Claim, status: int) -> ReplayWrite:
        """The claim's answer (of success status `status`), for a change to write it."""
        return ReplayWrite(self, claim, status)

    def done_record(self, claim: Claim, status: int, body: bytes) -> bytes:
        """The stored form of a response, for a caller that writes it in its own atomic step."""
        return _ENCODER.encode(
            _Record(
                state="done",
                fingerprint=bytes.fromhex(claim.fingerprint),
                status=status,
                body=self._cipher.encrypt(_BODY_CODEC.pack(body), context=claim.redis_key),
            )
        )

    async def finish(self, claim: Claim, status: int, body: bytes) -> None:
        """Store an answer that no change wrote (nothing if the key is no longer ours)."""
        record = self.done_record(claim, status, body)
        await self._store.put(claim.redis_key, claim.pending, record, self._ttl)

    async def abandon(self, claim: Claim) -> None:
        """Release the key after a failure, so a retry runs again. Compare-and-delete on our
        pending record: an answer a change stored in its own step stays."""
        await self._store.release(claim.redis_key, claim.pending)
