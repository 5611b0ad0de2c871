-- KEYS: 1 endpoint hash, 2 (optional) the request's idempotency record
-- ARGV: 1 expected version, 2 record, 3 encrypted secrets ('' = keep), 4 the idempotency
--       record, 5 its TTL s
local v = redis.call('HGET', KEYS[1], 'v')
if v ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'v', tonumber(v) + 1)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'sk', ARGV[3]) end
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[5]) end
return 1
