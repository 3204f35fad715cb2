-- Appends one event to a room's log and announces it on the room's bus, optionally changing one field of the
-- room's state in the same step, so the log, the state and what other hub processes hear never disagree.
--
-- KEYS[1]  the room's event stream     livecommerce:{room:ID}:events
-- KEYS[2]  the room's state hash       livecommerce:{room:ID}:state
-- KEYS[3]  the room's bus channel      livecommerce:{room:ID}:bus (a channel, not a key: declared so the call
--                                      stays in the room's slot on Redis Cluster and could move to SPUBLISH)
-- ARGV[1]  origin: id of the publishing hub process (non-empty)
-- ARGV[2]  event name: 1-64 characters of [A-Za-z0-9_.-]
-- ARGV[3]  payload: a msgpack map, encoded by the caller
-- ARGV[4]  history: approximate maximum length of the stream (integer >= 1)
-- ARGV[5]  state change: '' (none), 'set' (HSET), 'del' (HDEL) or 'change' (HSET, but only when the field
--          differs from ARGV[7]; when it is equal nothing is written or published)
-- ARGV[6]  state field (non-empty with 'set', 'del', 'change'; else '')
-- ARGV[7]  state value (with 'set', 'change'; else ''), stored as given
-- Returns  the new stream id (the event's seq); false (nil in Python) when 'change' found nothing to change
--
-- Stream entry: event=<name>, payload=<msgpack map>. Bus message: the msgpack array
-- [origin, seq, event, payload], framed here around the caller's payload bytes (0x94, three msgpack strings,
-- then the map as given): the payload is never decoded in Lua, where an empty map and an empty array are the
-- same table. Every key is read before the first write, so a wrong-typed key fails the call unchanged.

if #KEYS ~= 3 or #ARGV ~= 7 then
  return redis.error_reply('ERR room_publish: expected 3 keys (events, state, bus) and 7 arguments')
end
local origin, event, payload = ARGV[1], ARGV[2], ARGV[3]
local history = tonumber(ARGV[4])
local op, field, value = ARGV[5], ARGV[6], ARGV[7]

if origin == '' then
  return redis.error_reply('ERR room_publish: origin must be non-empty')
end
if #event > 64 or not event:match('^[%w_%.%-]+$') then
  return redis.error_reply('ERR room_publish: event must be 1-64 characters of [A-Za-z0-9_.-]')
end
local first = string.byte(payload, 1)
if not first or not ((first >= 0x80 and first <= 0x8f) or first == 0xde or first == 0xdf) then
  return redis.error_reply('ERR room_publish: payload must be a msgpack map')
end
if not ARGV[4]:match('^%d+$') or history < 1 then
  return redis.error_reply('ERR room_publish: history must be an integer >= 1')
end
if op ~= '' and op ~= 'set' and op ~= 'del' and op ~= 'change' then
  return redis.error_reply("ERR room_publish: state change must be '', 'set', 'del' or 'change'")
end
if op ~= '' and field == '' then
  return redis.error_reply('ERR room_publish: a state change needs a field')
end

redis.call('XLEN', KEYS[1]) -- type check
if op ~= '' then
  local current = redis.call('HGET', KEYS[2], field) -- type check, and the current value for 'change'
  if op == 'change' and current == value then
    return false
  end
end

local seq = redis.call('XADD', KEYS[1], 'MAXLEN', '~', history, '*', 'event', event, 'payload', payload)
if op == 'set' or op == 'change' then
  redis.call('HSET', KEYS[2], field, value)
elseif op == 'del' then
  redis.call('HDEL', KEYS[2], field)
end
redis.call('PUBLISH', KEYS[3], '\148' .. cmsgpack.pack(origin, seq, event) .. payload)
return seq
