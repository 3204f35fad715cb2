-- The generic cell rate algorithm (GCRA), written once and included by the scripts that limit a rate
-- (`-- #include gcra.lua`, composed by livecommerce/scripts.py): rate_limit.lua and chat_post.lua.
-- A bucket key holds the theoretical arrival time (TAT) of the next request, in microseconds of Redis TIME,
-- so every process shares one clock and one budget. Reading and writing the key stay with the caller, so a
-- script can read every key before its first write.
--
-- gcra_step(tat, now_us, interval, burst)
--   tat       the bucket's value (a number, or nil when the key is missing)
--   now_us    Redis TIME in microseconds
--   interval  emission interval in microseconds (> 0): the window divided by the allowed requests
--   burst     how many requests may arrive at once (>= 1)
--   returns   ms to wait (> 0, refused; nothing to write) or 0 and the new TAT to store with gcra_store
-- gcra_store(key, next_tat, now_us): SET the bucket, expiring (PX) once it no longer limits anything.

local function gcra_step(tat, now_us, interval, burst)
  tat = math.max(tat or 0, now_us)
  local wait = tat - now_us - (burst - 1) * interval
  if wait > 0 then
    return math.ceil(wait / 1000)
  end
  return 0, tat + interval
end

local function gcra_store(key, next_tat, now_us)
  redis.call('SET', key, string.format('%d', next_tat), 'PX', math.ceil((next_tat - now_us) / 1000) + 1)
end
