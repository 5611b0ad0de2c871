-- Compare-and-set against our own pending record: a request whose lock lapsed must not
-- overwrite the record of the request that took the key after it, nor an answer stored.
-- KEYS[1] the idempotency record. ARGV: 1 our pending record, 2 the answer, 3 its TTL s.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return 0
