-- KEYS: 1 endpoint hash, 2 account's endpoint index, 3 the endpoint's delivery index
-- ARGV: 1 endpoint id
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return existed
