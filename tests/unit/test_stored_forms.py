"""Stored forms (docs/architecture.md, "Redis key layout"): compressed values read back byte
for byte, frozen dictionaries, index members that sort newest first."""

from __future__ import annotations

import hashlib
import zlib

import msgspec
import pytest

from shared.events.model import EVENT_TYPES
from shared.events.stored import EVENT_CODEC, TYPE_CODES, pack_event, stored_event_json, type_code
from shared.idempotency.service import _BODY_CODEC
from shared.redis.compact import PresetCodec
from shared.sessions.model import FraudSignals, SessionRecord
from shared.sessions.store import (
    _MEMBER_PREFIX,
    _RECORD_CODEC,
    _SIGNALS_CODEC,
    decode_fraud_signals,
    decode_record,
    encode_fraud_signals,
    encode_record,
    index_member,
    session_parts,
)

DICTIONARY = b'{"name":"value","other":'
CODEC = PresetCodec(0x15, DICTIONARY, deflate_marker=0x05)


def record(created_at_ms: int, session_id: str = "cs_0AAAAAAAAAAAAAAA") -> SessionRecord:
    return SessionRecord(
        id=session_id,
        account_uid="acct_1",
        amount=100,
        currency="USD",
        success_url="https://example.com",
        cancel_url="https://example.com",
        created_at_ms=created_at_ms,
        updated_at_ms=created_at_ms,
        expires_at_ms=created_at_ms + 1_800_000,
    )


def test_a_packed_value_reads_back_byte_for_byte() -> None:
    data = b'{"name":"value","other":"value","name":"value","other":"value"}'
    packed = CODEC.pack(data)
    assert packed[0] == 0x15
    assert len(packed) < len(data)
    assert CODEC.unpack(packed) == data


def test_a_value_compression_does_not_shorten_is_stored_as_is() -> None:
    assert CODEC.pack(b"{}") == b"{}"
    assert CODEC.unpack(b"{}") == b"{}"
    # Raw data that happens to start with either marker is always stored compressed.
    for tricky in (b"\x15", b"\x05"):
        assert CODEC.pack(tricky) != tricky
        assert CODEC.unpack(CODEC.pack(tricky)) == tricky


def _deflated(data: bytes) -> bytes:
    """`data` in the form the deflate codec wrote until 2026-12-04 (shared/redis/compact.py)."""
    deflate = zlib.compressobj(3, zlib.DEFLATED, -12, 4, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
    return b"\x05" + deflate.compress(data) + deflate.flush()


def test_a_value_stored_by_the_deflate_codec_still_reads() -> None:
    data = b'{"name":"value","other":"value","name":"old"}'
    assert CODEC.unpack(_deflated(data)) == data


@pytest.mark.parametrize(
    "corrupt",
    [
        b"\x15\xff\xff\xff",
        b"\x15",
        # A frame cut short, and one whose header claims ~4 GB.
        CODEC.pack(b'{"name":"value","other":"value","name":"value"}')[:8],
        b"\x15\xa0" + (0xFFFF_FFF0).to_bytes(4, "little") + b"\x00" * 8,
        b"\x05\xff\xff\xff",
        b"\x05",
    ],
)
def test_a_corrupt_compressed_value_is_a_decode_error(corrupt: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        CODEC.unpack(corrupt)


def test_markers_are_control_bytes_of_their_own() -> None:
    with pytest.raises(ValueError, match="control bytes"):
        PresetCodec(0x7B, DICTIONARY, deflate_marker=0x05)
    with pytest.raises(ValueError, match="own markers"):
        PresetCodec(0x05, DICTIONARY, deflate_marker=0x05)


@pytest.mark.parametrize(
    ("codec", "digest"),
    [
        (EVENT_CODEC, "52e525f2d823d0e35df87aad635493dcf7bf168f981ed7a7b743ed29967400a6"),
        (_RECORD_CODEC, "ed1ded84327bf3b619e63f7f732eb3c59d2a1fd6a7411b6075cf119539741a8c"),
        (_SIGNALS_CODEC, "d18b9227f621a7d9b514174597ba1fe55621fa1dfd595f9579b5e38222ea71f0"),
        (_BODY_CODEC, "953f50f4a6819311c23ecd32bb9f312ca55a9347df6bb41a1280219b30ede07d"),
    ],
)
def test_the_dictionaries_are_frozen(codec: PresetCodec, digest: str) -> None:
    # Stored values are read with them for as long as they are kept: a new dictionary needs
    # a new marker (shared/redis/compact.py), never an edit of an old one.
    assert hashlib.sha256(codec.dictionary).hexdigest() == digest


def test_events_round_trip_and_shrink() -> None:
    envelope = (
        b'{"type":"hosted_session.created","id":"evt_x","created_at":"2026-01-01T00:00:00.000Z",'
        b'"account_uid":"acct_1","session_id":"cs_0AAAAAAAAAAAAAAA","sequence":1,"data":{}}'
    )
    stored = pack_event(envelope)
    assert len(stored) < len(envelope) // 2
    assert stored_event_json(stored) == envelope
    assert stored_event_json(envelope) == envelope  # an uncompressed entry reads as is


def test_every_event_type_has_its_own_short_code() -> None:
    assert set(TYPE_CODES) == set(EVENT_TYPES)
    assert len(set(TYPE_CODES.values())) == len(TYPE_CODES)
    assert all(len(code) == 1 for code in TYPE_CODES.values())
    assert type_code("hosted_session.future_type") == "hosted_session.future_type"


def test_the_record_doc_round_trips() -> None:
    original = record(1_795_621_659_347)
    doc = encode_record(original)
    assert len(doc) < len(msgspec.msgpack.encode(original))
    assert decode_record(doc) == original
    value = b"7;3;2;" + b"abc" + b"fs" + doc
    assert session_parts(value) == (7, b"abc", b"fs", doc)


def test_index_members_sort_newest_first_and_carry_the_id() -> None:
    older = index_member(record(1_700_000_000_000, "cs_0BBBBBBBBBBBBBBB"))
    newer = index_member(record(1_700_000_000_001, "cs_0AAAAAAAAAAAAAAA"))
    much_newer = index_member(record(4_000_000_000_000, "cs_0CCCCCCCCCCCCCCC"))
    assert much_newer < newer < older
    assert len(older) == 27
    assert older[_MEMBER_PREFIX:] == "cs_0BBBBBBBBBBBBBBB"
    # Same millisecond: the id decides, so the order is total and stable.
    twin = index_member(record(1_700_000_000_001, "cs_0ZZZZZZZZZZZZZZZ"))
    assert newer < twin < older


def test_fraud_signals_round_trip_by_position() -> None:
    signals = FraudSignals(
        ip_address="203.0.113.7",
        user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/126.0.0.0 Safari/537.36",
        email="shopper@example.com",
        is_admin=False,
    )
    plain = encode_fraud_signals(signals)
    assert len(plain) < len(msgspec.msgpack.encode(signals)) // 2
    assert decode_fraud_signals(plain) == signals
    # Written before a field was added: the newer fields keep their defaults.
    assert decode_fraud_signals(msgspec.msgpack.encode(["10.0.0.1"])) == FraudSignals(
        ip_address="10.0.0.1"
    )


def test_an_events_id_is_read_from_its_head() -> None:
    from shared.events.stored import event_id_of

    fast = b'{"type":"hosted_session.challenge_succeeded","id":"evt_0123456789abcdefghij",'
    assert event_id_of(fast + b'"sequence":1,"data":{"id":"evt_other"}}') == (
        "evt_0123456789abcdefghij"
    )
    # Any other shape is decoded, not guessed at.
    reordered = (
        b'{"data":{"id":"evt_wrong"},"type":"x","id":"evt_right","account_uid":"a",'
        b'"session_id":"cs_1","sequence":1}'
    )
    assert event_id_of(reordered) == "evt_right"
    with pytest.raises(msgspec.ValidationError):
        event_id_of(b'{"type":"hosted_session.created"}')
