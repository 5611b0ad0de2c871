"""Identifiers: session ids carry their Redis partition so any caller can find the session."""

from __future__ import annotations

import os
import re
import secrets
import threading
import zlib

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Fixed for the life of the data: the partition is part of every id and key.
PARTITIONS = 16
SESSION_PREFIX = "cs_"
SECRET_MARKER = "_secret_"  # noqa: S105  (the seed's separator, not a secret)
_SESSION_ID = re.compile(re.escape(SESSION_PREFIX) + "[0-9A-Za-z]{16}")
# The other ids a path names: prefix + a fixed number of base62 characters.
ENDPOINT_PREFIX = "we_"
DELIVERY_PREFIX = "whd_"
WEBHOOK_ID_CHARS = 24
PAYMENT_METHOD_PREFIX = "pm_"
PAYMENT_METHOD_ID_CHARS = 20


def _id_pattern(prefix: str, chars: int) -> re.Pattern[str]:
    # An explicit ASCII class: `\w` or str.isalnum() would also take non-ASCII digits.
    return re.compile(re.escape(prefix) + f"[0-9A-Za-z]{{{chars}}}")


# Path parameter name -> the exact shape of the id it carries. Every id in a path is checked
# against its pattern before it is used (services/api/path_ids.py), so no id that reaches a
# key can hold the key separator, a hash-tag brace or a non-ASCII character.
PATH_ID_PATTERNS: dict[str, re.Pattern[str]] = {
    "session_id": _SESSION_ID,
    "endpoint_id": _id_pattern(ENDPOINT_PREFIX, WEBHOOK_ID_CHARS),
    "delivery_id": _id_pattern(DELIVERY_PREFIX, WEBHOOK_ID_CHARS),
    "method_id": _id_pattern(PAYMENT_METHOD_PREFIX, PAYMENT_METHOD_ID_CHARS),
}


# Byte b -> BASE62[b % 62] for the 248 (= 4 * 62) values that map uniformly; the 8 above
# are deleted (rejection sampling), so every character is exactly uniform.
_TO_BASE62 = bytes(ord(BASE62[b % 62]) for b in range(256))
_UNEVEN = bytes(range(4 * 62, 256))


class _RandomPool:
    """Bytes from the OS CSPRNG, drawn 4 KB at a time and each handed out once.

    A create makes three ids and a request id: a getrandom() syscall for each would be four
    syscalls a request (docs/performance.md). The bytes are the kernel's own, only fetched
    ahead; none is ever handed out twice (a lock for threads, and a forked child drops what
    its parent drew)."""

    _SIZE = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        if n > self._SIZE:
            return secrets.token_bytes(n)
        with self._lock:
            if self._at + n > len(self._buffer):
                self._buffer = secrets.token_bytes(self._SIZE)
                self._at = 0
            out = self._buffer[self._at : self._at + n]
            self._at += n
            return out

    def forget(self) -> None:
        """Drop what was drawn (in a forked child: the parent hands out the same bytes)."""
        self._lock = threading.Lock()
        self._buffer = b""
        self._at = 0


_POOL = _RandomPool()
os.register_at_fork(after_in_child=_POOL.forget)


def random_base62(n: int) -> str:
    """n uniformly random base62 characters from the OS CSPRNG.

    One `translate` in C over random bytes: ~10x cheaper than a divmod per character, and
    these ids are made several times per request."""
    out = b""
    while len(out) < n:
        # n + 8 bytes leave n after the ~3 % rejected ones all but always: one round.
        out += _POOL.take(n + 8).translate(_TO_BASE62, _UNEVEN)
    return out[:n].decode("ascii")


def partition_of_account(account_uid: str) -> int:
    """The account's partition: all its sessions, indexes and events share one hash slot."""
    return zlib.crc32(account_uid.encode()) % PARTITIONS


def new_session_id(partition: int) -> str:
    """`cs_` + 16 base62 chars; the first encodes the partition, 15 are random (~89 bits)."""
    return SESSION_PREFIX + BASE62[partition] + random_base62(15)


def partition_of_session(session_id: str) -> int | None:
    """The partition a well-formed session id names, or None for anything malformed."""
    # One regex in C: a per-character Python loop is slow on every read (docs/performance.md).
    if not _SESSION_ID.fullmatch(session_id):
        return None
    part = BASE62.index(session_id[len(SESSION_PREFIX)])
    return part if part < PARTITIONS else None


def new_client_secret(session_id: str) -> str:
    """`<session_id>_secret_<32 random base62 chars>` (~190 bits)."""
    return session_id + SECRET_MARKER + random_base62(32)


def new_payment_method_id() -> str:
    """`pm_` + 20 random base62 chars (~119 bits): a saved payment method."""
    return PAYMENT_METHOD_PREFIX + random_base62(PAYMENT_METHOD_ID_CHARS)


def new_event_id() -> str:
    return "evt_" + random_base62(20)


def new_request_id() -> str:
    return "req_" + random_base62(20)
