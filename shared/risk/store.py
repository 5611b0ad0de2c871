"""Every Redis command of fraud scoring: the velocity windows (and the thresholds beside them)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from redis.asyncio import Redis

from shared.redis.keys import Keys
from shared.redis.scripts import load_script

# Members older than this many windows are trimmed. One spare window keeps what a session
# scored a little out of order (scored late) still needs to count.
_KEEP_WINDOWS = 2


class VelocitySubject(msgspec.Struct, frozen=True, kw_only=True):
    """One velocity counter to update: a dimension, the keyed hash of its value, its window."""

    dimension: str
    digest: str
    window_ms: int


class VelocityCall(msgspec.Struct, frozen=True, kw_only=True):
    """One session to count into its velocity windows."""

    account_uid: str
    session_id: str
    created_at_ms: int
    subjects: Sequence[VelocitySubject]


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    # dimension -> sessions in the window, this one included
    counts: dict[str, int]
    # the account's stored settings document (None: all defaults)
    settings: bytes | None


class RiskStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._observe = load_script(redis, "risk_observe")

    async def observe(
        self,
        account_uid: str,
        session_id: str,
        created_at_ms: int,
        subjects: Sequence[VelocitySubject],
    ) -> Observation:
        """Count this session into each subject's window and read the account's settings, in
        one atomic script (one round trip, one slot: every key carries the account's tag).

        Idempotent: the member is the session id and its score the session's creation time, so
        a re-run adds nothing and counts the same window (sessions created in
        (created - window, created])."""
        call = VelocityCall(
            account_uid=account_uid,
            session_id=session_id,
            created_at_ms=created_at_ms,
            subjects=subjects,
        )
        return (await self.observe_many([call]))[0]

    async def observe_many(self, calls: Sequence[VelocityCall]) -> list[Observation]:
        """`observe` for sessions of ONE partition (their accounts share its tag, so one slot),
        in the order given, in one script call: each session counts the ones before it, as if
        observed one by one."""
        if not calls:
            return []
        accounts = list(dict.fromkeys(call.account_uid for call in calls))
        keys = [self._keys.account_settings(account) for account in accounts]
        # Per velocity set: its position (1-based), lowest trim bound, longest TTL.
        sets: dict[str, list[int]] = {}
        per_session: list[str | int] = []
        for call in calls:
            created = call.created_at_ms
            per_session += [call.session_id, created, len(call.subjects)]
            for subject in call.subjects:
                keep_ms = _KEEP_WINDOWS * subject.window_ms
                key = self._keys.risk_velocity(call.account_uid, subject.dimension, subject.digest)
                entry = sets.get(key)
                if entry is None:
                    entry = sets[key] = [len(sets) + 1, created - keep_ms, keep_ms]
                else:
                    entry[1] = min(entry[1], created - keep_ms)
                    entry[2] = max(entry[2], keep_ms)
                per_session += [entry[0], f"({created - subject.window_ms}"]
        keys += sets
        args: list[str | int] = [len(accounts), len(sets)]
        for _, trim_below, keep_ms in sets.values():
            args += [f"({trim_below}", keep_ms]
        args += per_session
        result = await self._observe(keys=keys, args=args)
        found = zip(accounts, result[: len(accounts)], strict=True)
        settings = {account: raw or None for account, raw in found}
        return [
            Observation(
                counts={
                    subject.dimension: int(n)
                    for subject, n in zip(call.subjects, counts, strict=True)
                },
                settings=settings[call.account_uid],
            )
            for call, counts in zip(calls, result[len(accounts) :], strict=True)
        ]
