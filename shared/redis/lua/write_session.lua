-- Session changes and their events, each applied atomically (no change without its event,
-- no event without its change). One call may carry several changes of one partition (the
-- expiry loop batches them); each is checked and applied on its own. All keys of a call
-- share the partition's {pNN} hash tag.
--
-- The session is one string: <seq>;<len(sh)>;<len(fs)>;<sh><fs><doc> (shared/sessions/store.py).
--
-- KEYS: every key the call touches, each once; a change names its keys by position.
-- ARGV, per change: 1 meta, 2 record (compressed msgpack; on a create (FLAG_CREATE) the
--   whole stored value, secret hash and signals included), 3 event (stored form of the JSON),
--   4 index member (8-char inverted created time + session id); on a create also 5 its
--   idempotency record ('' = none); on another change with FLAG_MEMO, 5 a record SET at
--   M_MEMO_KEY with TTL M_MEMO_TTL_S (a completed payment's duplicate-payment memo), written
--   only if the change applies.
-- meta = the fields of WriteMeta (shared/sessions/store.py) joined by ';', read by the
--   positions declared below; the M_*_KEY fields are positions in KEYS ('' = none). Flags
--   (WriteFlag): FLAG_CREATE a create; FLAG_RELEASE_HOLD this is the held charge's outcome,
--   which drops the hold, instead of being refused while a charge holds the session;
--   FLAG_MEMO a record to SET follows; FLAG_KEEPS_SCHEDULE the session stays open with the
--   same expires_at, so its expiry schedule entry is left as it is.
-- Returns per change {'ok', new sequence, stream entry id} | {'exists', seq} |
--   {'conflict', seq} | {'held', seq}

-- The meta fields' positions and the flags' letters: shared/sessions/store.py's WriteMeta
-- and WriteFlag (tests/unit/test_lua_contracts.py checks these lines against them).
local M_EXPECTED_SEQUENCE = 1
local M_NEW_SEQUENCE = 2
local M_EXPIRES_AT_MS = 3
local M_EVENT_TYPE_CODE = 4
local M_FLAGS = 5
local M_MEMO_TTL_S = 6
local M_SESSION_KEY = 7
local M_STREAM_KEY = 8
local M_SCHEDULE_KEY = 9
local M_OLD_STATUS_KEY = 10
local M_NEW_STATUS_KEY = 11
local M_CUSTOMER_KEY = 12
local M_MEMO_KEY = 13
local M_ACCOUNT_EVENTS_KEY = 14
local M_HOLD_KEY = 15
local M_EVENT_IDS_KEY = 16
local M_EVENT_ID = 17
local FLAG_CREATE = 'x'
local FLAG_RELEASE_HOLD = 'r'
local FLAG_MEMO = 'm'
local FLAG_KEEPS_SCHEDULE = 'k'

local function split(meta)
  local out = {}
  for part in string.gmatch(meta .. ';', '([^;]*);') do out[#out + 1] = part end
  return out
end

-- Scores, TTLs and lengths stay strings on their way to redis.call: a Lua number is turned
-- back into text with printf's float formatting, which was a visible part of the script.
local function apply(m, record, event, member, idempotency)
  local function key(i) return KEYS[tonumber(m[i])] end
  local expected = tonumber(m[M_EXPECTED_SEQUENCE])
  local session = key(M_SESSION_KEY)
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
    if string.find(m[M_FLAGS], FLAG_RELEASE_HOLD, 1, true) then
      redis.call('DEL', key(M_HOLD_KEY))
    elseif redis.call('EXISTS', key(M_HOLD_KEY)) == 1 then
      return {'held', current}
    end
    -- Only a create sets the secret's hash and the signals: every later change keeps them.
    local kept = string.sub(old, at, at + tonumber(sh_len) + tonumber(fs_len) - 1)
    redis.call('SET', session, m[M_NEW_SEQUENCE] .. ';' .. lengths .. kept .. record)
  end

  if m[M_CUSTOMER_KEY] ~= '' then redis.call('ZADD', key(M_CUSTOMER_KEY), '0', member) end
  -- A change that keeps the status keeps the session's place in its index.
  if create or m[M_OLD_STATUS_KEY] ~= m[M_NEW_STATUS_KEY] then
    if m[M_OLD_STATUS_KEY] ~= m[M_NEW_STATUS_KEY] then
      redis.call('ZREM', key(M_OLD_STATUS_KEY), member)
    end
    redis.call('ZADD', key(M_NEW_STATUS_KEY), '0', member)
  end

  -- FLAG_KEEPS_SCHEDULE: the session stays open with the same expires_at, its schedule entry stands.
  if not string.find(m[M_FLAGS], FLAG_KEEPS_SCHEDULE, 1, true) then
    local session_id = string.sub(member, 9)
    if m[M_EXPIRES_AT_MS] ~= '' then
      redis.call('ZADD', key(M_SCHEDULE_KEY), m[M_EXPIRES_AT_MS], session_id)
    else
      redis.call('ZREM', key(M_SCHEDULE_KEY), session_id)
    end
  end

  local entry = redis.call('XADD', key(M_STREAM_KEY), '*', 'e', event)
  -- The account's index carries the same entry id, so GET /v1/events pages by stream id.
  redis.call('XADD', key(M_ACCOUNT_EVENTS_KEY), entry, 't', m[M_EVENT_TYPE_CODE])
  -- Where the event sits, by its id: a page of GET /v1/events may end at `starting_after=evt_…`.
  redis.call('HSET', key(M_EVENT_IDS_KEY), m[M_EVENT_ID], entry)
  if idempotency and idempotency ~= '' then
    redis.call('SET', key(M_MEMO_KEY), idempotency, 'EX', m[M_MEMO_TTL_S])
  end
  return {'ok', tonumber(m[M_NEW_SEQUENCE]), entry}
end

local results = {}
local i = 1
while i <= #ARGV do
  local m = split(ARGV[i])
  local flags = m[M_FLAGS]
  if string.find(flags, FLAG_CREATE, 1, true) or string.find(flags, FLAG_MEMO, 1, true) then
    results[#results + 1] = apply(m, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
    i = i + 5
  else
    results[#results + 1] = apply(m, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  end
end
return results
