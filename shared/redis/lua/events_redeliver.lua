-- Redelivery of one partition's pending entries, atomically with dead-lettering (all keys
-- share the partition's {pNN} tag).
-- KEYS: 1 partition stream, 2 the group's dead-letter stream of that partition
-- ARGV: 1 group, 2 consumer, 3 min idle ms, 4 count, 5 max deliveries
-- Returns {entries still pending in the group on this stream, {{id, fields, deliveries}...}}
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0',
                           'COUNT', ARGV[4])
local max = tonumber(ARGV[5])
local out = {}
for _, entry in ipairs(claimed[2]) do
  local id, fields = entry[1], entry[2]
  -- Redis 6.2 answers a trimmed-away entry with nil fields (7.x drops it from the PEL).
  if fields then
    local info = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    local deliveries = info[1] and info[1][4] or 1
    if deliveries > max then
      local dead = {'id', id, 'deliveries', tostring(deliveries), 'reason', 'max_deliveries'}
      for i = 1, #fields do dead[#dead + 1] = fields[i] end
      redis.call('XADD', KEYS[2], '*', unpack(dead))
      redis.call('XACK', KEYS[1], ARGV[1], id)
    else
      out[#out + 1] = {id, fields, deliveries}
    end
  else
    redis.call('XACK', KEYS[1], ARGV[1], id)
  end
end
return {redis.call('XPENDING', KEYS[1], ARGV[1])[1], out}
