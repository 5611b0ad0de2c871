-- KEYS: 1 delivery hash, 2 the partition's due schedule, 3 (optional) the request's
--       idempotency record
-- ARGV: 1 expected version, 2 record, 3 due member, 4 next due ms ('' = not pending),
--       5 TTL s ('' = keep), 6 the idempotency record, 7 its TTL s
local v = redis.call('HGET', KEYS[1], 'v')
if v ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'v', tonumber(v) + 1)
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[2], ARGV[3])
else
  redis.call('ZADD', KEYS[2], tonumber(ARGV[4]), ARGV[3])
end
if ARGV[5] ~= '' then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5])) end
if KEYS[3] then redis.call('SET', KEYS[3], ARGV[6], 'EX', ARGV[7]) end
return 1
