"""Identifiers: alphabet, length, uniformity and the partition a session id carries."""

from __future__ import annotations

from collections import Counter

import pytest

from shared.ids import (
    BASE62,
    PARTITIONS,
    new_client_secret,
    new_session_id,
    partition_of_session,
    random_base62,
)


@pytest.mark.parametrize("n", [0, 1, 15, 20, 32, 300])
def test_random_base62_has_the_length_and_alphabet(n: int) -> None:
    value = random_base62(n)
    assert len(value) == n
    assert set(value) <= set(BASE62)


def test_random_base62_uses_every_character_about_equally() -> None:
    counts = Counter("".join(random_base62(62) for _ in range(5_000)))
    assert set(counts) == set(BASE62)
    # 5,000 draws per character: a character off by 25 % would be a mapping bug, not chance.
    assert min(counts.values()) > 3_750
    assert max(counts.values()) < 6_250


def test_random_base62_values_do_not_repeat() -> None:
    assert len({random_base62(20) for _ in range(10_000)}) == 10_000


@pytest.mark.parametrize("partition", range(PARTITIONS))
def test_session_id_carries_its_partition(partition: int) -> None:
    session_id = new_session_id(partition)
    assert partition_of_session(session_id) == partition
    secret = new_client_secret(session_id)
    assert secret.startswith(session_id + "_secret_")
    assert len(secret) == len(session_id) + len("_secret_") + 32


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "cs_7cojLVqmFPLk0jO",  # one short
        "cs_7cojLVqmFPLk0jOVx",  # one long
        "cs_7cojLVqmFPLk0jOV\n",
        "cs_7cojLVqmFPLk0j-V",
        "xx_7cojLVqmFPLk0jOV",
        "cs_zcojLVqmFPLk0jOV",  # partition char past the 16 partitions
        "cs_7cojLVqmFPLk0jO\u00e9",
    ],
)
def test_malformed_session_ids_name_no_partition(malformed: str) -> None:
    assert partition_of_session(malformed) is None


def test_a_forked_child_never_hands_out_the_parents_random_bytes() -> None:
    """The pool draws ahead: a child that kept the parent's drawn bytes would make the same
    ids and secrets as the parent. Both draw from the same pool state here."""
    import os

    random_base62(5)  # the pool now holds bytes the parent has not handed out yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next values, then leave without cleanup
        os.close(read)
        os.write(write, "".join(random_base62(32) for _ in range(8)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    parent = "".join(random_base62(32) for _ in range(8))
    assert len(child) == len(parent) == 256
    assert child != parent
