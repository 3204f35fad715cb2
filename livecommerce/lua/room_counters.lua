-- Folds one hub process's likes and viewer count into a room's totals and returns the totals, in one step.
-- Each process calls it a few times a second per room it serves.
--
-- Viewers: each process owns one field of the viewers hash, "<count>:<expires at, ms>", refreshed by every
-- call. Readers count only unexpired fields (by Redis TIME, one clock for all) and delete expired ones, so
-- the viewers of a process that died without cleaning up leave the total within one ttl: no ghost viewers.
-- Likes: one counter, INCRBY. A once key (optional) makes a repeated call (redis-py retrying after a lost
-- reply) add its likes only once.
--
-- KEYS[1]  likes counter   livecommerce:{room:ID}:likes
-- KEYS[2]  viewers hash    livecommerce:{room:ID}:viewers   (process id -> "<count>:<expires_at_ms>")
-- KEYS[3]  once key (optional; consulted only when ARGV[2] > 0)   livecommerce:{room:ID}:once:<token>
-- ARGV[1]  process id (non-empty)
-- ARGV[2]  likes to add (integer >= 0)
-- ARGV[3]  this process's viewers in the room (integer >= 0; 0 removes the process's field)
-- ARGV[4]  viewer ttl, ms (integer >= 1): how long this count stands without a refresh
-- ARGV[5]  how long the once key remembers the call, ms (integer >= 1)
-- Returns  {likes, viewers}
--
-- The viewers hash expires one ttl after its last refresh, so a room every process left disappears by itself.
-- Every key is read before the first write, so bad arguments or a wrong-typed key fail the call unchanged.

if (#KEYS ~= 2 and #KEYS ~= 3) or #ARGV ~= 5 then
  return redis.error_reply('ERR room_counters: expected 2 or 3 keys and 5 arguments')
end

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

local process = ARGV[1]
local delta, viewers, ttl, once_ttl = whole(2, 0), whole(3, 0), whole(4, 1), whole(5, 1)
if process == '' then
  return redis.error_reply('ERR room_counters: process id must be non-empty')
end
if not delta or not viewers or not ttl or not once_ttl then
  return redis.error_reply('ERR room_counters: likes >= 0, viewers >= 0, ttl >= 1 and once ttl >= 1 must be integers')
end

-- Reads (and type checks) of every key, before anything is written.
local stored = redis.call('GET', KEYS[1]) or '0'
if not stored:match('^%-?%d+$') then
  return redis.error_reply('ERR room_counters: the likes counter does not hold an integer')
end
local likes = tonumber(stored)
local fields = redis.call('HGETALL', KEYS[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- Writes.
if delta > 0 and (#KEYS == 2 or redis.call('SET', KEYS[3], '1', 'NX', 'PX', once_ttl)) then
  likes = redis.call('INCRBY', KEYS[1], delta)
end

local total, expired = 0, {}
for i = 1, #fields, 2 do
  local field = fields[i]
  if field ~= process then
    local count, expires = string.match(fields[i + 1], '^(%d+):(%d+)$')
    if count and tonumber(expires) > now then
      total = total + tonumber(count)
    else
      expired[#expired + 1] = field
    end
  end
end
for i = 1, #expired, 1000 do
  redis.call('HDEL', KEYS[2], unpack(expired, i, math.min(i + 999, #expired)))
end
if viewers > 0 then
  redis.call('HSET', KEYS[2], process, string.format('%d:%d', viewers, now + ttl))
  if redis.call('PTTL', KEYS[2]) < ttl then
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
  total = total + viewers
else
  redis.call('HDEL', KEYS[2], process)
end
return {likes, total}
