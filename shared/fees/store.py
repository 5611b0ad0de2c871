"""Every Redis command that touches fee quotes. Rules live in model.py and service.py."""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from shared.fees.model import FeeQuote
from shared.ids import partition_of_session
from shared.redis.keys import Keys

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(FeeQuote)

# The key outlives the quote by this much: the service's clock (which tests move, and which
# may run slightly apart between replicas) decides expiry, and answers "expired" rather than
# "no such quote" for a quote that just lapsed. The TTL only cleans up.
_CLEANUP_GRACE_SECONDS = 60


class FeeQuoteStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    def _key(self, session_id: str, quote_id: str) -> str:
        # Under the session's own tag and id: a quote id of another session finds nothing.
        partition = partition_of_session(session_id)
        assert partition is not None  # callers hold an authenticated session
        return self._keys.fee_quote(partition, session_id, quote_id)

    async def put(self, quote: FeeQuote, valid_seconds: int) -> None:
        """Store a new quote for as long as it is valid (plus the clean-up grace)."""
        await self._redis.set(
            self._key(quote.session_id, quote.id),
            _ENCODER.encode(quote),
            ex=max(valid_seconds, 1) + _CLEANUP_GRACE_SECONDS,
        )

    async def get(self, session_id: str, quote_id: str) -> FeeQuote | None:
        """The session's quote of that id, or None (never made, another session's, cleaned)."""
        raw = await self._redis.get(self._key(session_id, quote_id))
        return None if raw is None else _DECODER.decode(raw)
