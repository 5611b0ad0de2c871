-- The simulator's charge, one step as a processor's API call is one request: the ledger's
-- first outcome for the key if there is one, else this one recorded (and, for a charge made,
-- its id appended to the list tests count double charges with).
-- The simulator's keys carry no partition tag: a dev/test seam on the one server.
-- KEYS: 1 ledger entry, 2 charges list. ARGV: 1 outcome (msgpack), 2 charge id ('' = none),
-- 3 ledger TTL s. Returns {1, this outcome} when recorded, {0, the first} when the key had one.
local first = redis.call('GET', KEYS[1])
if first then return {0, first} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[3]))
if ARGV[2] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[2]) end
return {1, ARGV[1]}
