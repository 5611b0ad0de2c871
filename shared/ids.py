"""Identifiers: session ids carry their Redis partition so any caller can find the session."""

from __future__ import annotations

import secrets
import zlib

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Fixed for the life of the data: the partition is part of every id and key.
PARTITIONS = 16
SESSION_PREFIX = "cs_"
SECRET_MARKER = "_secret_"  # noqa: S105  (the seed's separator, not a secret)
_SESSION_ID_LEN = len(SESSION_PREFIX) + 16


def random_base62(n: int) -> str:
    """n uniformly random base62 characters from the OS CSPRNG.

    One big random integer cut into base62 digits (8 spare bytes keep the modulo bias below
    2^-64), much cheaper than a `secrets.choice` per character on the hot paths.
    """
    value = int.from_bytes(secrets.token_bytes((n * 6) // 8 + 9), "big")
    chars = []
    for _ in range(n):
        value, digit = divmod(value, 62)
        chars.append(BASE62[digit])
    return "".join(chars)


def partition_of_account(account_uid: str) -> int:
    """The account's partition: all its sessions, indexes and events share one hash slot."""
    return zlib.crc32(account_uid.encode()) % PARTITIONS


def new_session_id(partition: int) -> str:
    """`cs_` + 16 base62 chars; the first encodes the partition, 15 are random (~89 bits)."""
    return SESSION_PREFIX + BASE62[partition] + random_base62(15)


def partition_of_session(session_id: str) -> int | None:
    """The partition a well-formed session id names, or None for anything malformed."""
    if len(session_id) != _SESSION_ID_LEN or not session_id.startswith(SESSION_PREFIX):
        return None
    body = session_id[len(SESSION_PREFIX) :]
    if any(c not in BASE62 for c in body):
        return None
    part = BASE62.index(body[0])
    return part if part < PARTITIONS else None


def new_client_secret(session_id: str) -> str:
    """`<session_id>_secret_<32 random base62 chars>` (~190 bits)."""
    return session_id + SECRET_MARKER + random_base62(32)


def new_event_id() -> str:
    return "evt_" + random_base62(20)


def new_request_id() -> str:
    return "req_" + random_base62(20)
