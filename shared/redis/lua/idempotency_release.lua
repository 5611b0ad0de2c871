-- Compare-and-delete against our own pending record: a request whose lock lapsed (slower
-- than the lock) must not drop the record of the request that took the key after it.
-- KEYS[1] the idempotency record. ARGV[1] our pending record.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
