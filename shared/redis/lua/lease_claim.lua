-- KEYS[1] lease; ARGV: member, ttl ms, want (1 keep/take, 0 give back).
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  if ARGV[3] == '1' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
  redis.call('DEL', KEYS[1]) return 0
end
if not holder and ARGV[3] == '1' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1
end
return 0
