-- Deletes one chat message from a room's log and tells everyone, in one step: the message leaves the history
-- that snapshots and resumes read, and a chat_deleted event (logged and published) removes it from view.
--
-- KEYS[1]  the room's event stream   livecommerce:{room:ID}:events
-- KEYS[2]  the room's bus channel    livecommerce:{room:ID}:bus
-- ARGV[1]  origin: id of the hub process deleting (non-empty)
-- ARGV[2]  the chat_deleted payload, msgpack (built by live/events.py `chat_deleted`: the one builder)
-- ARGV[3]  the message's id (its stream id, "<ms>-<n>")
-- ARGV[4]  history: approximate maximum length of the stream (integer >= 1)
-- Returns  the chat_deleted event's seq, or false (nil in Python) when no chat message has that id (never
--          posted, already deleted, trimmed away, or the id of an event that is not a chat message)
--
-- Stream entry event=chat_deleted, payload=ARGV[2]; bus message msgpack [origin, seq, 'chat_deleted', payload].

if #KEYS ~= 2 or #ARGV ~= 4 then
  return redis.error_reply('ERR chat_delete: expected 2 keys (events, bus) and 4 arguments')
end
local origin, payload, id = ARGV[1], ARGV[2], ARGV[3]
local history = tonumber(ARGV[4])
if origin == '' then
  return redis.error_reply('ERR chat_delete: origin must be non-empty')
end
local first = string.byte(payload, 1)
if not first or not ((first >= 0x80 and first <= 0x8f) or first == 0xde or first == 0xdf) then
  return redis.error_reply('ERR chat_delete: payload must be a msgpack map')
end
if not id:match('^%d+%-%d+$') or #id > 41 then
  return redis.error_reply('ERR chat_delete: message id must be a stream id "<ms>-<n>"')
end
if not ARGV[4]:match('^%d+$') or history < 1 then
  return redis.error_reply('ERR chat_delete: history must be an integer >= 1')
end

local entries = redis.call('XRANGE', KEYS[1], id, id)
if #entries == 0 then
  return false
end
local fields = entries[1][2]
local event
for i = 1, #fields, 2 do
  if fields[i] == 'event' then
    event = fields[i + 1]
  end
end
if event ~= 'chat' then
  return false
end

redis.call('XDEL', KEYS[1], id)
local seq = redis.call('XADD', KEYS[1], 'MAXLEN', '~', history, '*', 'event', 'chat_deleted', 'payload', payload)
redis.call('PUBLISH', KEYS[2], '\148' .. cmsgpack.pack(origin, seq, 'chat_deleted') .. payload)
return seq
