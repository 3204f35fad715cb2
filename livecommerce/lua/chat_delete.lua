-- Deletes one chat message from a room's log and tells everyone, in one step: the message leaves the history
-- that snapshots and resumes read, and a chat_deleted event (logged and published) removes it from view.
--
-- KEYS[1]  the room's event stream   livecommerce:{room:ID}:events
-- KEYS[2]  the room's bus channel    livecommerce:{room:ID}:bus
-- ARGV[1]  origin: id of the hub process deleting (non-empty)
-- ARGV[2]  room id (decimal), for the event's payload
-- ARGV[3]  the message's id (its stream id, "<ms>-<n>")
-- ARGV[4]  history: approximate maximum length of the stream (integer >= 1)
-- Returns  the chat_deleted event's seq, or false (nil in Python) when no chat message has that id (never
--          posted, already deleted, trimmed away, or the id of an event that is not a chat message)
--
-- Event payload, as a msgpack map: {room_id, ids = {message id}}; stream entry event=chat_deleted,
-- payload=<that map>; bus message msgpack [origin, seq, 'chat_deleted', payload].

if #KEYS ~= 2 or #ARGV ~= 4 then
  return redis.error_reply('ERR chat_delete: expected 2 keys (events, bus) and 4 arguments')
end
local origin, room, id = ARGV[1], ARGV[2], ARGV[3]
local history = tonumber(ARGV[4])
if origin == '' then
  return redis.error_reply('ERR chat_delete: origin must be non-empty')
end
if not room:match('^%d+$') or #room > 15 then
  return redis.error_reply('ERR chat_delete: room id must be a decimal integer of up to 15 digits')
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
local payload = cmsgpack.pack({room_id = tonumber(room), ids = {id}})
local seq = redis.call('XADD', KEYS[1], 'MAXLEN', '~', history, '*', 'event', 'chat_deleted', 'payload', payload)
redis.call('PUBLISH', KEYS[2], '\148' .. cmsgpack.pack(origin, seq, 'chat_deleted') .. payload)
return seq
