-- KEYS: one per limit (all in one slot). ARGV[1] now (µs), ARGV[2] mode, then per key its
-- emission interval and period (µs). Modes:
--   hit    - take one call from every key, or from none when any is spent (all or nothing);
--   peek   - would a hit pass? changes nothing;
--   record - take one from every key regardless (an event that already happened), the TAT
--            capped at one period ahead so a burst of records never blocks for longer.
-- Returns the wait in µs before a hit could pass (0: it passes / passed).
local now = tonumber(ARGV[1])
local mode = ARGV[2]
local wait = 0
local tats = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[1 + 2 * i])
  local period = tonumber(ARGV[2 + 2 * i])
  local tat = math.max(tonumber(redis.call('GET', KEYS[i]) or '0'), now)
  local next_tat = tat + interval
  wait = math.max(wait, next_tat - now - period)
  if mode == 'record' then next_tat = math.min(next_tat, now + period) end
  tats[i] = next_tat
end
if mode == 'peek' or (mode == 'hit' and wait > 0) then return wait end
for i = 1, #KEYS do
  local ttl_ms = math.max(1, math.ceil((tats[i] - now) / 1000))
  redis.call('SET', KEYS[i], string.format('%d', tats[i]), 'PX', string.format('%d', ttl_ms))
end
return 0
