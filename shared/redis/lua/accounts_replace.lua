-- Compare-and-set: write only if the stored document is still the one the caller read ("" for
-- none), so two concurrent PATCHes of different fields cannot undo each other.
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
