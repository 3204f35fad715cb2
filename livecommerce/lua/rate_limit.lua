-- A per-caller request budget: the GCRA of gcra.lua (included when loaded, see livecommerce/scripts.py) over
-- one key per caller, which holds the theoretical arrival time (TAT) of the next request, in microseconds of
-- Redis TIME, so every web process shares one clock and one budget.
--
-- KEYS[1]  the caller's bucket, e.g. livecommerce:rl:{w:user:42}
-- ARGV[1]  emission interval in microseconds (the window divided by the allowed requests)
-- ARGV[2]  burst: how many requests may arrive at once (>= 1)
-- Returns  {allowed (1 or 0), milliseconds until a request would be allowed (0 when allowed)}

local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
if not interval or interval <= 0 or not burst or burst < 1 then
  return redis.error_reply('ERR rate_limit: interval must be > 0 and burst >= 1')
end

-- #include gcra.lua

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait, next_tat = gcra_step(tonumber(redis.call('GET', KEYS[1]) or ''), now, interval, burst)
if wait > 0 then
  return {0, wait}
end
gcra_store(KEYS[1], next_tat, now)
return {1, 0}
