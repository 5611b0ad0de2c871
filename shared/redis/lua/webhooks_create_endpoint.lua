-- KEYS: 1 endpoint hash, 2 account's endpoint index, 3 the partition's event stream,
--       4 (optional) the request's idempotency record
-- ARGV: 1 record, 2 encrypted secrets, 3 created ms, 4 endpoint id, 5 endpoint limit,
--       6 the idempotency record, 7 its TTL s
-- The stream's last entry id is the endpoint's starting point: events appended after it
-- are delivered to it, none before (an endpoint never receives history).
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 0 end
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local after = '0-0'
if last[1] then after = last[1][1] end
redis.call('HSET', KEYS[1], 'doc', ARGV[1], 'sk', ARGV[2], 'v', 1, 'after', after)
redis.call('ZADD', KEYS[2], tonumber(ARGV[3]), ARGV[4])
if KEYS[4] then redis.call('SET', KEYS[4], ARGV[6], 'EX', ARGV[7]) end
return 1
