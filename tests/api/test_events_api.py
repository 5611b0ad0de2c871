"""GET /v1/events through the real app: the account's events newest first, exactly as stored,
with cursor pagination, type and session filters, and never another account's."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from shared.config import Settings
from shared.events.stored import stored_event_json
from shared.events.trim import EventTrimmer
from shared.ids import partition_of_account
from shared.redis.keys import Keys
from tests.api.conftest import ACCOUNT, OTHER_ACCOUNT, seed_body

Client = AsyncTestClient[Any]
URL = "/v1/events"
SESSIONS = "/v1/hosted-sessions"


def headers_of(token_for: Callable[..., str], account: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(account)}", "X-Payment-Account-Uid": account}


def neighbour_of(account: str) -> str:
    """Another account in the same partition: same streams, different index."""
    for i in itertools.count():
        candidate = f"acct_neighbour_{i}"
        if partition_of_account(candidate) == partition_of_account(account):
            return candidate
    raise AssertionError("unreachable")


async def history(client: Client, headers: dict[str, str]) -> list[str]:
    """Three sessions: the first updated twice, the second expired (6 events)."""
    ids = []
    for _ in range(3):
        r = await client.post(SESSIONS, json=seed_body(), headers=headers)
        assert r.status_code == 201, r.text
        ids.append(r.json()["session_id"])
    for n in (2, 3):
        r = await client.patch(
            f"{SESSIONS}/{ids[0]}", json={"description": f"v{n}"}, headers=headers
        )
        assert r.status_code == 200, r.text
    r = await client.post(f"{SESSIONS}/{ids[1]}/expire", headers=headers)
    assert r.status_code == 200, r.text
    return ids


async def stored(redis: Redis, settings: Settings, account: str) -> list[tuple[str, bytes]]:
    """(entry id, JSON envelope) of the account's events, newest first."""
    stream = Keys(settings.key_prefix).events(partition_of_account(account))
    rows = [(i.decode(), stored_event_json(f[b"e"])) for i, f in await redis.xrevrange(stream)]
    return [(i, raw) for i, raw in rows if msgspec.json.decode(raw)["account_uid"] == account]


async def pages(client: Client, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """Every page of a listing, following next_cursor."""
    out = []
    query = dict(params)
    while True:
        r = await client.get(URL, params=query, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        out.append(body)
        if not body["has_more"]:
            assert body["next_cursor"] is None
            return out
        query["starting_after"] = body["next_cursor"]


async def test_lists_the_accounts_events_newest_first_exactly_as_stored(
    client: Client, admin_headers: dict[str, str], redis: Redis, settings: Settings
) -> None:
    await history(client, admin_headers)
    expected = await stored(redis, settings, ACCOUNT)
    assert len(expected) == 6

    first = await client.get(URL, params={"limit": 4}, headers=admin_headers)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["object"] == "list"
    assert body["has_more"] is True
    assert body["next_cursor"] == expected[3][0]
    # The stored JSON itself, byte for byte, newest first.
    for _, raw in expected[:4]:
        assert raw.decode() in first.text
    assert body["data"] == [msgspec.json.decode(raw) for _, raw in expected[:4]]

    second = await client.get(
        URL, params={"limit": 4, "starting_after": body["next_cursor"]}, headers=admin_headers
    )
    rest = second.json()
    assert rest["data"] == [msgspec.json.decode(raw) for _, raw in expected[4:]]
    assert rest["has_more"] is False
    assert rest["next_cursor"] is None

    default = (await client.get(URL, headers=admin_headers)).json()
    assert len(default["data"]) == 6
    assert default["has_more"] is False


async def test_filters_by_type_and_session_and_pages_through_them(
    client: Client, admin_headers: dict[str, str]
) -> None:
    ids = await history(client, admin_headers)

    updated = await pages(client, admin_headers, type="hosted_session.updated")
    events = [e for page in updated for e in page["data"]]
    assert [(e["type"], e["session_id"], e["sequence"]) for e in events] == [
        ("hosted_session.updated", ids[0], 3),
        ("hosted_session.updated", ids[0], 2),
    ]

    one_by_one = await pages(client, admin_headers, session_id=ids[0], limit=1)
    assert [[e["sequence"] for e in p["data"]] for p in one_by_one] == [[3], [2], [1]]

    created = await pages(client, admin_headers, session_id=ids[1], type="hosted_session.created")
    assert [e["session_id"] for p in created for e in p["data"]] == [ids[1]]
    expired = await pages(client, admin_headers, type="hosted_session.expired")
    assert [e["data"]["reason"] for p in expired for e in p["data"]] == ["merchant"]


async def test_bad_parameters_answer_400(client: Client, admin_headers: dict[str, str]) -> None:
    for params in (
        {"type": "hosted_session.bogus"},
        {"starting_after": "not-a-cursor"},
        {"limit": 101},
        {"limit": 0},
    ):
        r = await client.get(URL, params=params, headers=admin_headers)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["code"] == "validation_error"
    r = await client.get(URL, params={"type": "nope"}, headers=admin_headers)
    assert "hosted_session.created" in r.json()["message"]


async def test_never_lists_another_accounts_events(
    client: Client, admin_headers: dict[str, str], token_for: Callable[..., str]
) -> None:
    mine = await history(client, admin_headers)
    neighbour = neighbour_of(ACCOUNT)
    theirs = []
    for account in (OTHER_ACCOUNT, neighbour):
        r = await client.post(SESSIONS, json=seed_body(), headers=headers_of(token_for, account))
        theirs.append(r.json()["session_id"])

    listed = (await client.get(URL, params={"limit": 100}, headers=admin_headers)).json()
    assert {e["session_id"] for e in listed["data"]} == set(mine)
    assert {e["account_uid"] for e in listed["data"]} == {ACCOUNT}
    for session_id in theirs:
        r = await client.get(URL, params={"session_id": session_id}, headers=admin_headers)
        assert r.json() == {"object": "list", "data": [], "has_more": False, "next_cursor": None}

    neighbours = (await client.get(URL, headers=headers_of(token_for, neighbour))).json()
    assert [e["session_id"] for e in neighbours["data"]] == [theirs[1]]

    # A token for one account cannot read another's events.
    foreign = {**admin_headers, "X-Payment-Account-Uid": OTHER_ACCOUNT}
    assert (await client.get(URL, headers=foreign)).status_code == 403
    assert (await client.get(URL)).status_code == 401


async def test_events_trimmed_from_the_stream_are_skipped(
    client: Client, admin_headers: dict[str, str], redis: Redis, settings: Settings
) -> None:
    await history(client, admin_headers)
    expected = await stored(redis, settings, ACCOUNT)
    stream = Keys(settings.key_prefix).events(partition_of_account(ACCOUNT))
    # Trim the two oldest from the partition stream only (the index still names them).
    await redis.xtrim(stream, minid=expected[-3][0], approximate=False)

    listed = await pages(client, admin_headers, limit=2)
    events = [e for page in listed for e in page["data"]]
    assert events == [msgspec.json.decode(raw) for _, raw in expected[:4]]


async def by_last_id(
    client: Client, headers: dict[str, str], **params: Any
) -> list[list[dict[str, Any]]]:
    """Every page of a listing, each asked for with the last event's id (as on every list)."""
    out = []
    query = dict(params)
    while True:
        r = await client.get(URL, params=query, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        out.append(body["data"])
        if not body["has_more"]:
            return out
        query["starting_after"] = body["data"][-1]["id"]


async def test_pages_by_the_last_events_id_like_every_other_list(
    client: Client, admin_headers: dict[str, str], redis: Redis, settings: Settings
) -> None:
    ids = await history(client, admin_headers)
    expected = [msgspec.json.decode(raw) for _, raw in await stored(redis, settings, ACCOUNT)]

    listed = await by_last_id(client, admin_headers, limit=4)
    assert listed == [expected[:4], expected[4:]]
    one_by_one = await by_last_id(client, admin_headers, limit=1)
    assert [page for page in one_by_one if page] == [[e] for e in expected]
    # With filters, from an event id too.
    first_session = await by_last_id(client, admin_headers, session_id=ids[0], limit=1)
    assert [e["sequence"] for page in first_session for e in page] == [3, 2, 1]
    # The stream cursor (next_cursor) still works, and lands on the same page.
    r = await client.get(URL, params={"limit": 4}, headers=admin_headers)
    cursor, last_id = r.json()["next_cursor"], r.json()["data"][-1]["id"]
    by_cursor = await client.get(
        URL, params={"limit": 4, "starting_after": cursor}, headers=admin_headers
    )
    by_id = await client.get(
        URL, params={"limit": 4, "starting_after": last_id}, headers=admin_headers
    )
    assert by_cursor.json() == by_id.json()
    assert by_id.json()["data"] == expected[4:]


async def test_an_event_id_of_another_account_is_no_position(
    client: Client, admin_headers: dict[str, str], token_for: Callable[..., str]
) -> None:
    await history(client, admin_headers)
    for account in (OTHER_ACCOUNT, neighbour_of(ACCOUNT)):
        theirs = headers_of(token_for, account)
        r = await client.post(SESSIONS, json=seed_body(), headers=theirs)
        assert r.status_code == 201, r.text
        [their_event] = (await client.get(URL, headers=theirs)).json()["data"]
        # Answered as an unknown event is: nothing of theirs (or ours) in the answer.
        r = await client.get(
            URL, params={"starting_after": their_event["id"]}, headers=admin_headers
        )
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "validation_error"
        assert r.json()["message"].startswith("starting_after: no such event")
        assert their_event["session_id"] not in r.text
    unknown = "evt_" + "A" * 20
    r = await client.get(URL, params={"starting_after": unknown}, headers=admin_headers)
    assert r.status_code == 400
    assert r.json()["message"].startswith("starting_after: no such event")
    for malformed in ("evt_short", "evt_" + "A" * 21, "evt_" + "-" * 20):
        r = await client.get(URL, params={"starting_after": malformed}, headers=admin_headers)
        assert r.status_code == 400, (malformed, r.text)


async def test_trimming_drops_the_event_ids_with_their_events(
    client: Client, admin_headers: dict[str, str], redis: Redis, settings: Settings
) -> None:
    await history(client, admin_headers)
    await asyncio.sleep(0.01)  # the last event in a later millisecond than the others
    r = await client.post(SESSIONS, json=seed_body(), headers=admin_headers)
    assert r.status_code == 201, r.text
    keys = Keys(settings.key_prefix)
    partition = partition_of_account(ACCOUNT)
    ids_key = keys.account_event_ids(partition, ACCOUNT)
    expected = [
        (entry, msgspec.json.decode(raw)["id"])
        for entry, raw in await stored(redis, settings, ACCOUNT)
    ]
    positions = {k.decode(): v.decode() for k, v in (await redis.hgetall(ids_key)).items()}  # type: ignore[misc]
    # Every event written is findable by its id (stored without `evt_`), at its own entry.
    assert positions == {event_id.removeprefix("evt_"): entry for entry, event_id in expected}

    # Trimmed up to the newest event's millisecond (retention 0): its ids go with the events.
    newest_ms = int(expected[0][0].split("-")[0])
    trimmer = EventTrimmer(redis, keys, min_retention_ms=0, max_retention_ms=0)
    assert await trimmer.trim_partition(partition, newest_ms) == len(expected) - 1
    left = {k.decode() for k in await redis.hkeys(ids_key)}  # type: ignore[misc]
    assert left == {expected[0][1].removeprefix("evt_")}
    r = await client.get(URL, params={"starting_after": expected[1][1]}, headers=admin_headers)
    assert r.status_code == 400
    assert r.json()["message"].startswith("starting_after: no such event")
