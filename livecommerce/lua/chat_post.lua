-- Posts one chat message if the room's moderation allows it, all in one atomic step: every hub process
-- enforces the same bans, mutes, slow mode, block-list and per-user budget, with no window between the check
-- and the write. On success the message is appended to the room's log and published on the room's bus.
--
-- KEYS[1]   state hash      livecommerce:{room:ID}:state     (fields status, slow_mode)
-- KEYS[2]   event stream    livecommerce:{room:ID}:events
-- KEYS[3]   bans set        livecommerce:{room:ID}:bans      (user ids)
-- KEYS[4]   mutes hash      livecommerce:{room:ID}:mutes     (user id -> muted until, ms)
-- KEYS[5]   moderators set  livecommerce:{room:ID}:mods      (exempt from slow mode)
-- KEYS[6]   last post hash  livecommerce:{room:ID}:last_msg  (user id -> ms of the user's last message)
-- KEYS[7]   GCRA bucket     livecommerce:{room:ID}:rl:<user id>
-- KEYS[8]   block-list set  livecommerce:{room:ID}:blocked   (casefolded words and phrases)
-- KEYS[9]   once key        livecommerce:{room:ID}:once:<user id>:<client message id>
-- KEYS[10]  bus channel     livecommerce:{room:ID}:bus
-- ARGV[1]   origin: id of the posting hub process (non-empty)
-- ARGV[2]   user id (decimal, up to 15 digits)
-- ARGV[3]   display name (1-256 bytes)
-- ARGV[4]   text (1-4096 bytes)
-- ARGV[5]   the text casefolded (what block-list phrases are searched in)
-- ARGV[6]   the words of the casefolded text, space-separated (what block-list words are looked up in)
-- ARGV[7]   rate-limit emission interval in microseconds (0 = no per-user limit)
-- ARGV[8]   rate-limit burst (integer >= 1)
-- ARGV[9]   history: approximate maximum length of the stream (integer >= 1)
-- ARGV[10]  how long the once key answers a repeat, ms (integer >= 1)
-- Returns one of
--   {'ok', seq, ts}                       posted (or posted before under the same once key: the same answer)
--   {'banned'}
--   {'muted', ms until the mute ends}
--   {'room_not_live', status ('' when unknown)}
--   {'blocked_word', the word or phrase}
--   {'slow_mode', ms until the next message is allowed, the slow-mode interval in seconds}
--   {'rate_limited', ms until the next message is allowed}
--
-- Stream entry: event=chat, user_id, display_name, text, ts (server ms from TIME). Bus message: msgpack
-- [origin, seq, 'chat', {user_id, display_name, text, ts}]: the entry's fields, shaped for viewers in one place
-- (`livecommerce/live/events.py`, `chat_message`). A blocked entry with a character outside
-- [A-Za-z0-9] and UTF-8 (a space, an apostrophe) is a phrase, searched as a substring; any other is a word,
-- matched against whole words. The per-user budget is the GCRA of gcra.lua (included when loaded, as in
-- rate_limit.lua), counted only for messages that are posted. Every key is read before the first write, so bad arguments or a wrong-typed key fail the call
-- with nothing changed.

if #KEYS ~= 10 or #ARGV ~= 10 then
  return redis.error_reply('ERR chat_post: expected 10 keys and 10 arguments')
end
local origin, user_id, name, text, folded, words = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]

-- #include gcra.lua

local function whole(i, least)
  if not ARGV[i]:match('^%d+$') or #ARGV[i] > 15 then
    return nil
  end
  local n = tonumber(ARGV[i])
  if n < least then
    return nil
  end
  return n
end

local interval, burst, history, once_ttl = whole(7, 0), whole(8, 1), whole(9, 1), whole(10, 1)
if origin == '' then
  return redis.error_reply('ERR chat_post: origin must be non-empty')
end
if not user_id:match('^%d+$') or #user_id > 15 then
  return redis.error_reply('ERR chat_post: user id must be a decimal integer of up to 15 digits')
end
if #name < 1 or #name > 256 then
  return redis.error_reply('ERR chat_post: display name must be 1-256 bytes')
end
if #text < 1 or #text > 4096 then
  return redis.error_reply('ERR chat_post: text must be 1-4096 bytes')
end
if #folded > 4 * 4096 or #words > 4 * 4096 then
  return redis.error_reply('ERR chat_post: casefolded text and words must be at most 16384 bytes')
end
if not interval or not burst or not history or not once_ttl then
  return redis.error_reply('ERR chat_post: interval >= 0, burst >= 1, history >= 1 and once ttl >= 1 must be integers')
end

-- Reads (and type checks) of every key, before anything is written.
local done = redis.call('GET', KEYS[9])
if done then
  local seq, ts = string.match(done, '^(%S+) (%d+)$')
  return {'ok', seq, tonumber(ts)}
end
local clock = redis.call('TIME')
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local now = math.floor(now_us / 1000)
local state = redis.call('HMGET', KEYS[1], 'status', 'slow_mode')
redis.call('XLEN', KEYS[2])
local banned = redis.call('SISMEMBER', KEYS[3], user_id) == 1
local muted_until = tonumber(redis.call('HGET', KEYS[4], user_id) or '')
local moderator = redis.call('SISMEMBER', KEYS[5], user_id) == 1
local last = tonumber(redis.call('HGET', KEYS[6], user_id) or '')
local tat = tonumber(redis.call('GET', KEYS[7]) or '')
local blocked = redis.call('SMEMBERS', KEYS[8])

if banned then
  return {'banned'}
end
if muted_until and muted_until > now then
  return {'muted', muted_until - now}
end
if state[1] ~= 'live' then
  return {'room_not_live', state[1] or ''}
end
if #blocked > 0 then
  local present = {}
  for word in string.gmatch(words, '%S+') do
    present[word] = true
  end
  for _, entry in ipairs(blocked) do
    if present[entry] or (entry:find('[^%w\128-\255]') and folded:find(entry, 1, true)) then
      return {'blocked_word', entry}
    end
  end
end
local slow_ms = (tonumber(state[2] or '') or 0) * 1000
if slow_ms > 0 and not moderator and last and last + slow_ms > now then
  return {'slow_mode', last + slow_ms - now, slow_ms / 1000}
end
local next_tat
if interval > 0 then
  local wait
  wait, next_tat = gcra_step(tat, now_us, interval, burst)
  if wait > 0 then
    return {'rate_limited', wait}
  end
end

-- Writes.
local ts = string.format('%d', now)
local seq = redis.call('XADD', KEYS[2], 'MAXLEN', '~', history, '*',
  'event', 'chat', 'user_id', user_id, 'display_name', name, 'text', text, 'ts', ts)
redis.call('HSET', KEYS[6], user_id, ts)
if next_tat then
  gcra_store(KEYS[7], next_tat, now_us)
end
if muted_until then
  redis.call('HDEL', KEYS[4], user_id) -- an expired mute, cleaned up
end
redis.call('SET', KEYS[9], seq .. ' ' .. ts, 'PX', once_ttl)
local message = cmsgpack.pack({user_id = user_id, display_name = name, text = text, ts = ts})
redis.call('PUBLISH', KEYS[10], '\148' .. cmsgpack.pack(origin, seq, 'chat') .. message)
return {'ok', seq, now}
