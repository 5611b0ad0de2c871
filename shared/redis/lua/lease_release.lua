-- KEYS[1] lease; ARGV[1] member: delete only our own.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0
