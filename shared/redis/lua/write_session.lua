-- One state change of one session and its event, atomically (no change without its event,
-- no event without its change). All keys share the session's {pNN} hash tag.
--
-- KEYS: 1 session hash, 2 event stream, 3 expiry schedule, 4 account index,
--       5 old status index, 6 new status index, 7 customer index (or KEYS[1] when none),
--       8 idempotency record (or KEYS[1] when none), 9 the account's event index stream
-- ARGV: 1 expected sequence (0 = create), 2 new sequence, 3 record (msgpack),
--       4 event (JSON), 5 index member, 6 expires_at ms ('' = not open: leave the schedule),
--       7 secret hash ('' = keep), 8 encrypted fraud signals ('' = keep),
--       9 idempotency record ('' = none), 10 its TTL in seconds, 11 '1' when a customer index,
--       12 event type
-- Returns {'ok', new sequence, stream entry id} | {'exists', seq} | {'conflict', seq}
local expected = tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if expected == 0 and current ~= 0 then
  return {'exists', current}
end
if current ~= expected then
  return {'conflict', current}
end

redis.call('HSET', KEYS[1], 'doc', ARGV[3], 'seq', ARGV[2])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'sh', ARGV[7]) end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'fs', ARGV[8]) end

local member = ARGV[5]
if expected == 0 then
  redis.call('ZADD', KEYS[4], 0, member)
  if ARGV[11] == '1' then redis.call('ZADD', KEYS[7], 0, member) end
end
if KEYS[5] ~= KEYS[6] then redis.call('ZREM', KEYS[5], member) end
redis.call('ZADD', KEYS[6], 0, member)

local session_id = string.sub(member, string.find(member, ':', 1, true) + 1)
if ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[3], tonumber(ARGV[6]), session_id)
else
  redis.call('ZREM', KEYS[3], session_id)
end

local entry = redis.call('XADD', KEYS[2], '*', 'e', ARGV[4])
-- The account's index carries the same entry id, so GET /v1/events pages by stream id.
redis.call('XADD', KEYS[9], entry, 't', ARGV[12])
if ARGV[9] ~= '' then
  redis.call('SET', KEYS[8], ARGV[9], 'EX', tonumber(ARGV[10]))
end
return {'ok', tonumber(ARGV[2]), entry}
