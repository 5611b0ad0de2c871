"""Every Redis command of fraud scoring: the velocity windows (and the thresholds beside them)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from redis.asyncio import Redis

from shared.redis.keys import Keys

# Members older than this many windows are trimmed. One spare window keeps what a session
# scored a little out of order (its job ran late) still needs to count.
_KEEP_WINDOWS = 2

# One script rather than a MULTI: the same atomic step on one slot, but one reply to parse
# instead of one per queued command (measured here: twice the throughput of the MULTI).
# KEYS[1] = the account's settings; KEYS[2..] = velocity sets.
# ARGV[1] = session id, ARGV[2] = its creation ms; then per set: count-from (exclusive),
# trim-below (exclusive), TTL ms. Bounds come from Python: Lua numbers are doubles.
_OBSERVE = """
local out = {redis.call('GET', KEYS[1]) or ''}
for i = 2, #KEYS do
  local arg = 3 * (i - 2) + 3
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[arg + 1])
  out[i] = redis.call('ZCOUNT', KEYS[i], ARGV[arg], ARGV[2])
  redis.call('PEXPIRE', KEYS[i], ARGV[arg + 2])
end
return out
"""


class VelocitySubject(msgspec.Struct, frozen=True, kw_only=True):
    """One velocity counter to update: a dimension, the keyed hash of its value, its window."""

    dimension: str
    digest: str
    window_ms: int


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    # dimension -> sessions in the window, this one included
    counts: dict[str, int]
    # the account's stored settings document (None: all defaults)
    settings: bytes | None


class RiskStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._observe = redis.register_script(_OBSERVE)

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
        keys = [self._keys.account_settings(account_uid)]
        args: list[str | int] = [session_id, created_at_ms]
        for subject in subjects:
            keep_ms = _KEEP_WINDOWS * subject.window_ms
            keys.append(self._keys.risk_velocity(account_uid, subject.dimension, subject.digest))
            args += [
                f"({created_at_ms - subject.window_ms}",
                f"({created_at_ms - keep_ms}",
                keep_ms,
            ]
        result = await self._observe(keys=keys, args=args)
        found = zip(subjects, result[1:], strict=True)
        counts = {subject.dimension: int(n) for subject, n in found}
        return Observation(counts=counts, settings=result[0] or None)
