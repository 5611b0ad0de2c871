"""The invariants checker (tests/invariants.py) on a state the real app built, then corrupted
one way at a time with a raw client under the test's prefix: each corruption is reported, so
the checker cannot pass silently."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from redis import Redis as SyncRedis

from shared.clock import ManualClock
from shared.config import Settings
from shared.crypto import DataCipher
from shared.events.stored import read_stored_event
from shared.ids import partition_of_account, partition_of_session
from shared.payments.processor import ChargeOutcome
from shared.redis.keys import Keys
from shared.sessions.store import decode_record, encode_record, session_parts, session_value
from tests.invariants import check_invariants
from tests.support import ACCOUNT
from tests.support.checkout import card, open_session
from tests.support.sessions import SESSIONS_URL as URL
from tests.support.sessions import Client


@dataclass
class Built:
    complete: str
    expired: str
    open: str
    idempotent: str
    acknowledged: list[str]
    idempotent_map: dict[tuple[str, str], list[str]]


@pytest.fixture
def sync_redis(settings: Settings) -> Iterator[SyncRedis]:
    client = SyncRedis.from_url(settings.redis_url)
    yield client
    client.close()


async def build(client: Client, headers: dict[str, str], clock: ManualClock) -> Built:
    complete, browser = await open_session(client, headers, clock)
    paid = await client.post(f"{URL}/{complete}/confirm", json=card(), headers=browser)
    assert paid.status_code == 200, paid.text
    expired, _ = await open_session(client, headers, clock)
    assert (await client.post(f"{URL}/{expired}/expire", headers=headers)).status_code == 200
    still_open, browser = await open_session(client, headers, clock)
    declined = await client.post(
        f"{URL}/{still_open}/confirm", json=card("4000000000000002"), headers=browser
    )
    assert declined.status_code == 402
    with_key = {**headers, "Idempotency-Key": "inv-1"}
    body: dict[str, Any] = {
        "amount": 500,
        "currency": "USD",
        "success_url": "https://example.com",
        "cancel_url": "https://example.com",
    }
    first = await client.post(URL, json=body, headers=with_key)
    again = await client.post(URL, json=body, headers=with_key)
    assert first.status_code == again.status_code == 201, first.text
    ids = [first.json()["session_id"], again.json()["session_id"]]
    return Built(
        complete=complete,
        expired=expired,
        open=still_open,
        idempotent=ids[0],
        acknowledged=[complete, expired, still_open, ids[0]],
        idempotent_map={(ACCOUNT, "inv-1"): ids},
    )


def _stream(settings: Settings) -> str:
    return Keys(settings.key_prefix).events(partition_of_account(ACCOUNT))


def _entries(redis: SyncRedis, settings: Settings, session_id: str) -> list[tuple[bytes, Any]]:
    rows: list[tuple[bytes, dict[bytes, bytes]]] = redis.xrange(_stream(settings))  # type: ignore[assignment]  # sync client
    return [(i, f) for i, f in rows if read_stored_event(f[b"e"])[0].session_id == session_id]


def _rewrite(redis: SyncRedis, settings: Settings, session_id: str, **changes: Any) -> None:
    partition = partition_of_session(session_id)
    assert partition is not None
    key = Keys(settings.key_prefix).session(partition, session_id)
    raw = redis.get(key)
    assert isinstance(raw, bytes)
    seq, secret_hash, blob, doc = session_parts(raw)
    record = msgspec.structs.replace(decode_record(doc), **changes)
    redis.set(key, session_value(seq, secret_hash, blob, encode_record(record)))


def _add_charge(redis: SyncRedis, settings: Settings, session_id: str) -> None:
    outcome = ChargeOutcome(status="succeeded", charge_id="ch_planted")
    redis.set(f"{settings.key_prefix}:sim:charge:{session_id}:9", msgspec.msgpack.encode(outcome))
    redis.rpush(f"{settings.key_prefix}:sim:charges", "ch_planted")


Corruption = Callable[[SyncRedis, Settings, Built], None]


def delete_middle_event(r: SyncRedis, s: Settings, b: Built) -> None:
    entry_id, _ = _entries(r, s, b.complete)[1]
    r.xdel(_stream(s), entry_id)


def delete_completed_event(r: SyncRedis, s: Settings, b: Built) -> None:
    entry_id, _ = _entries(r, s, b.complete)[-1]
    r.xdel(_stream(s), entry_id)


def repeat_an_event(r: SyncRedis, s: Settings, b: Built) -> None:
    _, fields = _entries(r, s, b.open)[-1]
    r.xadd(_stream(s), fields)


def event_in_another_partition(r: SyncRedis, s: Settings, b: Built) -> None:
    entry_id, fields = _entries(r, s, b.open)[-1]
    r.xdel(_stream(s), entry_id)
    other = (partition_of_account(ACCOUNT) + 1) % 16
    r.xadd(Keys(s.key_prefix).events(other), fields)


def second_charge(r: SyncRedis, s: Settings, b: Built) -> None:
    _add_charge(r, s, b.complete)


def charge_on_open_session(r: SyncRedis, s: Settings, b: Built) -> None:
    _add_charge(r, s, b.open)


def charge_made_twice(r: SyncRedis, s: Settings, b: Built) -> None:
    charges = f"{s.key_prefix}:sim:charges"
    first = r.lindex(charges, 0)
    assert isinstance(first, bytes)
    r.rpush(charges, first)


def status_without_its_event(r: SyncRedis, s: Settings, b: Built) -> None:
    _rewrite(r, s, b.open, status="expired")


def paid_but_open(r: SyncRedis, s: Settings, b: Built) -> None:
    _rewrite(r, s, b.expired, payment_status="paid")


def acknowledged_session_lost(r: SyncRedis, s: Settings, b: Built) -> None:
    partition = partition_of_session(b.idempotent)
    assert partition is not None
    r.delete(Keys(s.key_prefix).session(partition, b.idempotent))


def replay_made_a_second_object(r: SyncRedis, s: Settings, b: Built) -> None:
    b.idempotent_map[(ACCOUNT, "inv-1")].append(b.open)


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (delete_middle_event, "are not 1..2"),
        (delete_completed_event, "status complete/paid but 0 completed"),
        (repeat_an_event, "are not 1.."),
        (event_in_another_partition, "in partition"),
        (second_charge, "complete with 2 successful charges"),
        (charge_on_open_session, "open but has 1 successful charge"),
        (charge_made_twice, "listed 2 times as made"),
        (status_without_its_event, "status expired/unpaid but 0 completed and 0 expired"),
        (paid_but_open, "status expired/paid"),
        (acknowledged_session_lost, "acknowledged to a client but not stored"),
        (replay_made_a_second_object, "Idempotency-Key 'inv-1'"),
    ],
)
async def test_each_corruption_is_reported(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    settings: Settings,
    sync_redis: SyncRedis,
    corrupt: Corruption,
    expected: str,
) -> None:
    built = await build(client, admin_headers, clock)
    cipher = DataCipher(base64.b64decode(settings.data_key))

    def check() -> list[str]:
        return check_invariants(
            sync_redis,
            settings.key_prefix,
            acknowledged=built.acknowledged,
            idempotent=built.idempotent_map,
            cipher=cipher,
        )

    assert check() == []
    corrupt(sync_redis, settings, built)
    found = check()
    assert any(expected in v for v in found), found


async def test_a_lost_session_is_reported_through_its_stored_replay(
    client: Client,
    admin_headers: dict[str, str],
    clock: ManualClock,
    settings: Settings,
    sync_redis: SyncRedis,
) -> None:
    """Without the client's own list: the stored Idempotency-Key replay names the session."""
    built = await build(client, admin_headers, clock)
    cipher = DataCipher(base64.b64decode(settings.data_key))
    acknowledged_session_lost(sync_redis, settings, built)
    found = check_invariants(sync_redis, settings.key_prefix, cipher=cipher)
    assert any("which does not exist" in v for v in found), found
    assert any("but no such session" in v for v in found), found
