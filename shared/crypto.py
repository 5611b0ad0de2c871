"""Secrets at rest: keyed hashes for credentials, AES-256-GCM for PII and replayed responses."""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12


class DataCipher:
    """Authenticated encryption bound to a context (associated data), so a blob moved to
    another session or purpose fails to decrypt instead of leaking."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        # A separate key for hashing, derived so one setting serves both purposes.
        self._mac_key = hmac.new(key, b"hosted-sessions/secret-hash", hashlib.sha256).digest()

    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def decrypt(self, blob: bytes, context: str) -> bytes:
        return self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], context.encode())

    def secret_hash(self, secret: str) -> str:
        """Keyed hash of a credential: what is stored instead of the credential."""
        # hmac.digest: OpenSSL's one-shot HMAC, several times cheaper than an hmac.new object.
        return hmac.digest(self._mac_key, secret.encode(), "sha256").hex()

    def secret_matches(self, secret: str, stored_hash: str) -> bool:
        """Constant-time comparison against a stored hash."""
        return hmac.compare_digest(self.secret_hash(secret), stored_hash)
