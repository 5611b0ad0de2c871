-- KEYS: 1 delivery hash, 2 the endpoint's delivery index, 3 the partition's due schedule
-- ARGV: 1 record, 2 body, 3 TTL s, 4 index member, 5 due ms, 6 due member, 7 index cap
-- Returns the existing record when the delivery was made before (a re-read event), else nil.
local existing = redis.call('HGET', KEYS[1], 'doc')
if existing then return existing end
redis.call('HSET', KEYS[1], 'doc', ARGV[1], 'v', 1, 'body', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('ZADD', KEYS[2], 0, ARGV[4])
redis.call('ZREMRANGEBYRANK', KEYS[2], tonumber(ARGV[7]), -1)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
redis.call('ZADD', KEYS[3], tonumber(ARGV[5]), ARGV[6])
return false
