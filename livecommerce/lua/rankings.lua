#!lua name=livecommerce_rankings
-- GMV rankings and live room dashboards, kept in step with paid orders by the order writer.
--
-- One Redis function library, loaded once per Redis (FUNCTION LOAD REPLACE; the client re-loads it when Redis
-- answers "Function not found"). Every key is passed through KEYS and shares the hash tag {rank}, so the whole
-- ranking lives in one Redis Cluster slot (one ZUNIONSTORE can add up a period's days):
--
-- livecommerce:{rank}:day:YYYYMMDD:creators   zset   creator user id -> GMV (minor units) of orders paid that day
-- livecommerce:{rank}:day:YYYYMMDD:brands     zset   brand id -> GMV of orders paid that day
-- livecommerce:{rank}:day:YYYYMMDD:seen       set    hold ids already counted in that day's sorted sets
-- livecommerce:{rank}:room:ID                 hash   gmv, orders, units, voucher_orders, viewers_peak
-- livecommerce:{rank}:room:ID:buyers          HLL    buyer ids (distinct buyers)
-- livecommerce:{rank}:room:ID:seen            set    hold ids already counted in the room's figures
--
-- Rules: arguments are validated and every key's type is checked (an O(1) read that fails on a wrong type)
-- before the first write, so a bad call changes nothing. Day and room keys expire KEEP_S after their last
-- write. Results are arrays whose first element is a status word.

local KEEP_S = 120 * 24 * 3600  -- long enough for a month and the month before it, with margin
local GROUP = 8  -- rank_add's arguments per order
local MAX_BATCH = 1000
local MAX_AMOUNT = 1000000000000000  -- 10^15 minor units: exact in a double, far above any order

-- #include args.lua

-- rank_add: counts paid orders, each once per hold id, in the day's leaderboards and its room's dashboard.
-- KEYS: day creators, day brands, day seen, then for each room the orders name: room hash, room buyers, room seen
-- ARGV: day (YYYYMMDD, the UTC day the orders were paid), n, then n x (hold id, creator id or 0, brand id,
--       room id or 0, amount (goods value, minor units), quantity, used a voucher 0|1, buyer id)
-- Returns {'added', orders new to the day, orders new to their room}
local function rank_add(keys, args)
  local fn = 'rank_add'
  local day = args[1]
  if type(day) ~= 'string' or not day:match('^%d%d%d%d%d%d%d%d$') then
    fail(fn, 'day must be YYYYMMDD')
  end
  local prefix = 'livecommerce:{rank}:day:' .. day .. ':'
  if keys[1] ~= prefix .. 'creators' or keys[2] ~= prefix .. 'brands' or keys[3] ~= prefix .. 'seen' then
    fail(fn, 'the first three keys must be the day\'s creators, brands and seen keys')
  end
  if (#keys - 3) % 3 ~= 0 then
    fail(fn, 'after the day\'s keys, each room takes three keys (hash, buyers, seen)')
  end
  local rooms = {}
  for i = 4, #keys, 3 do
    local id = keys[i]:match('^livecommerce:{rank}:room:(%d+)$')
    if not id or keys[i + 1] ~= keys[i] .. ':buyers' or keys[i + 2] ~= keys[i] .. ':seen' then
      fail(fn, 'room keys must be livecommerce:{rank}:room:ID, then :buyers and :seen of it')
    end
    rooms[id] = i
  end
  local n = int_arg(fn, 'n', args[2], 0, MAX_BATCH)
  if #args ~= 2 + n * GROUP then
    fail(fn, 'expected ' .. GROUP .. ' arguments per order')
  end
  local orders = {}
  for j = 0, n - 1 do
    local b = 3 + j * GROUP
    local hold = args[b]
    if type(hold) ~= 'string' or hold == '' or #hold > 64 or not hold:match('^[A-Za-z0-9_.:-]+$') then
      fail(fn, 'hold id must be 1 to 64 characters of A-Z a-z 0-9 _ . : -')
    end
    local o = {
      hold = hold,
      creator = int_arg(fn, 'creator id', args[b + 1], 0, MAX_AMOUNT),
      brand = int_arg(fn, 'brand id', args[b + 2], 1, MAX_AMOUNT),
      room = int_arg(fn, 'room id', args[b + 3], 0, MAX_AMOUNT),
      amount = int_arg(fn, 'amount', args[b + 4], 0, MAX_AMOUNT),
      qty = int_arg(fn, 'quantity', args[b + 5], 1, 1000000),
      voucher = int_arg(fn, 'used voucher', args[b + 6], 0, 1),
      buyer = int_arg(fn, 'buyer id', args[b + 7], 1, MAX_AMOUNT),
    }
    if o.room > 0 and not rooms[tostring(o.room)] then
      fail(fn, 'room ' .. o.room .. ' has no keys')
    end
    orders[#orders + 1] = o
  end
  -- Type checks of every key, before anything is written.
  redis.call('ZCARD', keys[1])
  redis.call('ZCARD', keys[2])
  redis.call('SCARD', keys[3])
  for i = 4, #keys, 3 do
    redis.call('HLEN', keys[i])
    redis.call('PFCOUNT', keys[i + 1])
    redis.call('SCARD', keys[i + 2])
  end
  -- Writes.
  local to_day, to_rooms = 0, 0
  for _, o in ipairs(orders) do
    if redis.call('SADD', keys[3], o.hold) == 1 then
      to_day = to_day + 1
      if o.creator > 0 then
        redis.call('ZINCRBY', keys[1], o.amount, tostring(o.creator))
      end
      redis.call('ZINCRBY', keys[2], o.amount, tostring(o.brand))
    end
    if o.room > 0 then
      local i = rooms[tostring(o.room)]
      if redis.call('SADD', keys[i + 2], o.hold) == 1 then
        to_rooms = to_rooms + 1
        redis.call('HINCRBY', keys[i], 'gmv', o.amount)
        redis.call('HINCRBY', keys[i], 'orders', 1)
        redis.call('HINCRBY', keys[i], 'units', o.qty)
        redis.call('HINCRBY', keys[i], 'voucher_orders', o.voucher)
        redis.call('PFADD', keys[i + 1], tostring(o.buyer))
      end
    end
  end
  for i = 1, #keys do
    if redis.call('EXISTS', keys[i]) == 1 then
      redis.call('EXPIRE', keys[i], KEEP_S)
    end
  end
  return {'added', to_day, to_rooms}
end

-- rank_viewers: remembers the most viewers a room's dashboard has seen at once.
-- KEYS: room hash. ARGV: viewers now (>= 0). Returns {'peak', the highest count seen so far}
local function rank_viewers(keys, args)
  local fn = 'rank_viewers'
  if #keys ~= 1 or not keys[1]:match('^livecommerce:{rank}:room:%d+$') then
    fail(fn, 'expected one key, livecommerce:{rank}:room:ID')
  end
  local viewers = int_arg(fn, 'viewers', args[1], 0, MAX_AMOUNT)
  local peak = tonumber(redis.call('HGET', keys[1], 'viewers_peak') or '0') or 0
  if viewers > peak then
    redis.call('HSET', keys[1], 'viewers_peak', viewers)
    redis.call('EXPIRE', keys[1], KEEP_S)
    peak = viewers
  end
  return {'peak', peak}
end

redis.register_function('rank_add', rank_add)
redis.register_function('rank_viewers', rank_viewers)
