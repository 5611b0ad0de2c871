-- Session changes and their events, each applied atomically (no change without its event,
-- no event without its change). One call may carry several changes of one partition (the
-- expiry loop batches them); each is checked and applied on its own. All keys of a call
-- share the partition's {pNN} hash tag.
--
-- Per change i, 10 KEYS from (i-1)*10: 1 session hash, 2 event stream, 3 expiry schedule,
--   4 account index, 5 old status index, 6 new status index, 7 customer index (or the
--   session key when none), 8 idempotency record (or the session key when none),
--   9 the account's event index stream, 10 the session's charge hold
-- and 13 ARGV from (i-1)*13: 1 expected sequence (0 = create), 2 new sequence,
--   3 record (msgpack), 4 event (JSON), 5 index member, 6 expires_at ms ('' = not open),
--   7 secret hash ('' = keep), 8 encrypted fraud signals ('' = keep),
--   9 idempotency record ('' = none), 10 its TTL in seconds, 11 '1' when a customer index,
--   12 event type, 13 hold mode: '' = refuse while a charge holds the session,
--   'release' = this is the held charge's outcome (drops the hold)
-- Returns per change {'ok', new sequence, stream entry id} | {'exists', seq} |
--   {'conflict', seq} | {'held', seq}

local function apply(K, A)
  local expected = tonumber(A[1])
  local current = tonumber(redis.call('HGET', K[1], 'seq') or '0')
  if expected == 0 and current ~= 0 then
    return {'exists', current}
  end
  if current ~= expected then
    return {'conflict', current}
  end
  -- A confirm whose charge is in flight holds the session: only its outcome may change it.
  if A[13] == 'release' then
    redis.call('DEL', K[10])
  elseif redis.call('EXISTS', K[10]) == 1 then
    return {'held', current}
  end

  redis.call('HSET', K[1], 'doc', A[3], 'seq', A[2])
  if A[7] ~= '' then redis.call('HSET', K[1], 'sh', A[7]) end
  if A[8] ~= '' then redis.call('HSET', K[1], 'fs', A[8]) end

  local member = A[5]
  if expected == 0 then
    redis.call('ZADD', K[4], 0, member)
    if A[11] == '1' then redis.call('ZADD', K[7], 0, member) end
  end
  if K[5] ~= K[6] then redis.call('ZREM', K[5], member) end
  redis.call('ZADD', K[6], 0, member)

  local session_id = string.sub(member, string.find(member, ':', 1, true) + 1)
  if A[6] ~= '' then
    redis.call('ZADD', K[3], tonumber(A[6]), session_id)
  else
    redis.call('ZREM', K[3], session_id)
  end

  local entry = redis.call('XADD', K[2], '*', 'e', A[4])
  -- The account's index carries the same entry id, so GET /v1/events pages by stream id.
  redis.call('XADD', K[9], entry, 't', A[12])
  if A[9] ~= '' then
    redis.call('SET', K[8], A[9], 'EX', tonumber(A[10]))
  end
  return {'ok', tonumber(A[2]), entry}
end

local results = {}
for i = 0, #KEYS / 10 - 1 do
  results[i + 1] = apply(
    {unpack(KEYS, i * 10 + 1, i * 10 + 10)},
    {unpack(ARGV, i * 13 + 1, i * 13 + 13)}
  )
end
return results
