-- One saved method per fingerprint: saving the same card again keeps the first id.
-- KEYS[1] the customer's wallet hash. ARGV: 1 method id, 2 method (msgpack), 3 fingerprint,
-- 4 most methods a wallet keeps. Returns 1 saved, 0 this fingerprint is saved already,
-- -1 the wallet is full.
for _, raw in ipairs(redis.call('HVALS', KEYS[1])) do
  if string.find(raw, ARGV[3], 1, true) then return 0 end
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
