-- Session changes and their events, each applied atomically (no change without its event,
-- no event without its change). One call may carry several changes of one partition (the
-- expiry loop batches them); each is checked and applied on its own. All keys of a call
-- share the partition's {pNN} hash tag.
--
-- The session is one string: <seq>;<len(sh)>;<len(fs)>;<sh><fs><doc> (shared/sessions/store.py).
--
-- KEYS: every key the call touches, each once; a change names its keys by position.
-- ARGV, per change: 1 meta, 2 record (compressed msgpack; on a create (flag x) the whole
--   stored value, secret hash and signals included), 3 event (stored form of the JSON),
--   4 index member (8-char inverted created time + session id); on a create also 5 its
--   idempotency record ('' = none); on another change with flag m, 5 a record SET at key
--   position 13 with TTL 6 (a completed payment's duplicate-payment memo), written only if
--   the change applies.
-- meta = ';'-separated: 1 expected sequence (0 = create), 2 new sequence, 3 expires_at ms
--   ('' = not open), 4 event type code, 5 flags (x: a create, see ARGV 2 and 5; r: this is the
--   held charge's outcome, which drops the hold, instead of being refused while a charge
--   holds the session; m: a record to SET follows; k: the session stays open with the same
--   expires_at, so its expiry schedule entry is left as it is), 6 that record's TTL s, then key
--   positions: 7 session, 8 event stream, 9 expiry schedule, 10 old status index, 11 new
--   status index, 12 customer index ('' = none), 13 the record to SET ('' = none), 14 the
--   account's event index stream, 15 the session's charge hold, 16 the account's event id
--   hash; then 17 the event's id without its `evt_` prefix.
-- Returns per change {'ok', new sequence, stream entry id} | {'exists', seq} |
--   {'conflict', seq} | {'held', seq}

local function split(meta)
  local out = {}
  for part in string.gmatch(meta .. ';', '([^;]*);') do out[#out + 1] = part end
  return out
end

-- Scores, TTLs and lengths stay strings on their way to redis.call: a Lua number is turned
-- back into text with printf's float formatting, which was a visible part of the script.
local function apply(m, record, event, member, idempotency)
  local function key(i) return KEYS[tonumber(m[i])] end
  local expected = tonumber(m[1])
  local session = key(7)
  local create = expected == 0
  if create then
    -- `record` is the whole stored value, built by the caller. One SET NX both writes and
    -- checks the id is new (a create retried after a lost reply finds its own session). A
    -- new id has no charge hold to respect.
    if not redis.call('SET', session, record, 'NX') then
      local seq = string.match(redis.call('GET', session) or '', '^(%d+);')
      return {'exists', tonumber(seq) or 0}
    end
  else
    local old = redis.call('GET', session)
    if not old then
      return {'conflict', 0}
    end
    local seq, lengths, sh_len, fs_len, at = string.match(old, '^(%d+);((%d+);(%d+);)()')
    if not seq then error('session ' .. session .. ' is not in the string layout') end
    local current = tonumber(seq)
    if current ~= expected then
      return {'conflict', current}
    end
    -- A confirm whose charge is in flight holds the session: only its outcome may change it.
    if string.find(m[5], 'r', 1, true) then
      redis.call('DEL', key(15))
    elseif redis.call('EXISTS', key(15)) == 1 then
      return {'held', current}
    end
    -- Only a create sets the secret's hash and the signals: every later change keeps them.
    local kept = string.sub(old, at, at + tonumber(sh_len) + tonumber(fs_len) - 1)
    redis.call('SET', session, m[2] .. ';' .. lengths .. kept .. record)
  end

  if m[12] ~= '' then redis.call('ZADD', key(12), '0', member) end
  -- A change that keeps the status keeps the session's place in its index.
  if create or m[10] ~= m[11] then
    if m[10] ~= m[11] then redis.call('ZREM', key(10), member) end
    redis.call('ZADD', key(11), '0', member)
  end

  -- Flag k: the session stays open with the same expires_at, its schedule entry stands.
  if not string.find(m[5], 'k', 1, true) then
    local session_id = string.sub(member, 9)
    if m[3] ~= '' then
      redis.call('ZADD', key(9), m[3], session_id)
    else
      redis.call('ZREM', key(9), session_id)
    end
  end

  local entry = redis.call('XADD', key(8), '*', 'e', event)
  -- The account's index carries the same entry id, so GET /v1/events pages by stream id.
  redis.call('XADD', key(14), entry, 't', m[4])
  -- Where the event sits, by its id: a page of GET /v1/events may end at `starting_after=evt_…`.
  redis.call('HSET', key(16), m[17], entry)
  if idempotency and idempotency ~= '' then
    redis.call('SET', key(13), idempotency, 'EX', m[6])
  end
  return {'ok', tonumber(m[2]), entry}
end

local results = {}
local i = 1
while i <= #ARGV do
  local m = split(ARGV[i])
  if string.find(m[5], 'x', 1, true) or string.find(m[5], 'm', 1, true) then
    results[#results + 1] = apply(m, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
    i = i + 5
  else
    results[#results + 1] = apply(m, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  end
end
return results
