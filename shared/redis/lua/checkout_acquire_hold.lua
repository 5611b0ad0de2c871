-- KEYS: session, hold, duplicate guard. ARGV: expected sequence, hold, session id, now ms,
-- duplicate window ms. Holds only the version we read (the session string starts with
-- `<seq>;`, shared/sessions/store.py), and only if no other session paid the same (customer,
-- method, amount) within the window (the guard's value is `<session id>@<paid at ms>`; the
-- service's clock decides, the key's TTL only cleans up).
local head = redis.call('GETRANGE', KEYS[1], 0, 19)
if tonumber(string.match(head, '^(%d+);') or '0') ~= tonumber(ARGV[1]) then
  return 'conflict'
end
local memo = redis.call('GET', KEYS[3])
if memo then
  local payer, paid_at = string.match(memo, '^(.*)@(%d*)$')
  if payer and payer ~= ARGV[3]
     and tonumber(ARGV[4]) - (tonumber(paid_at) or 0) < tonumber(ARGV[5]) then
    return 'duplicate'
  end
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX') then return 'ok' end
return 'held'
