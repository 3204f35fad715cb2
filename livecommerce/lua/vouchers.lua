#!lua name=livecommerce_vouchers
-- Vouchers: the claims of one voucher and the campaign budget allotted to it, taken in bursts in a LIVE.
--
-- One Redis function library, loaded once per Redis (FUNCTION LOAD REPLACE; the client re-loads it when Redis
-- answers "Function not found"). Every function takes the same seven keys, all under the voucher's hash tag
-- {voucher:V} (checked: the names must be livecommerce:{voucher:V}:<part> in this order), so a voucher lives
-- in one Redis Cluster slot:
--
-- KEYS[1] cfg      hash   version, voucher, quota, limit, start_ms, end_ms, worst (the budget one claim
--                         reserves), state (open|closed), claimed (claims ever made: also the claim sequence),
--                         top (the most claims one buyer has: a reload may not set limit below it)
-- KEYS[2] claims   hash   claim id ("v<V>.<n>") -> JSON {id, voucher, buyer, key, state (claimed|applied|used|
--                         expired), reserved, hold ('' unless applied or used), discount, cost, created, until
--                         (0 unless applied or used), used (ms, once used)}
-- KEYS[3] idem     hash   "<buyer>:<key>" -> claim id (a retry returns the same claim)
-- KEYS[4] budget   hash   funded, reserved, spent, free   (reserved + spent + free = funded, all >= 0, always)
-- KEYS[5] expiry   zset   claim id -> 0 for a claimed claim (due when the voucher ends or closes), the hold's
--                         `until` for an applied one (then the sweeper reports it to the worker)
-- KEYS[6] buyers   hash   buyer id -> claims made (never decreases: the per-buyer limit)
-- KEYS[7] outbox   stream type (loaded|claimed|applied|released|used|expired|closed), data (JSON: the claim, or
--                         the configuration and budget), capped at about 10000 entries
--
-- Rules every function follows: arguments are validated and every key's type is checked (an O(1) read that
-- fails on a wrong type) before the first write, so a bad call changes nothing; time is Redis TIME; every
-- change is appended to the outbox in the same step. Results are arrays whose first element is a status word;
-- refusals are results, not errors. Money is integer minor units, at most 1e13 (exact in the claims' JSON).

local CFG, CLAIMS, IDEM, BUDGET, EXPIRY, BUYERS, OUTBOX = 1, 2, 3, 4, 5, 6, 7
local PARTS = {'cfg', 'claims', 'idem', 'budget', 'expiry', 'buyers', 'outbox'}
local MAX_BATCH = 500
local MAX_MONEY = 1e13
local GROUP = 2  -- voucher_claim's arguments per claim
local OUTBOX_LEN = '10000'

-- #include args.lua

-- Checks the keys' names and types; returns the voucher id their hash tag names.
local function check_keys(fn, keys)
  if #keys ~= #PARTS then
    fail(fn, 'expected 7 keys (cfg, claims, idem, budget, expiry, buyers, outbox)')
  end
  local prefix, voucher = keys[CFG]:match('^(livecommerce:{voucher:([1-9]%d*)}:)cfg$')
  if not prefix or #voucher > 15 then
    fail(fn, 'the cfg key must be livecommerce:{voucher:<id>}:cfg')
  end
  for i, part in ipairs(PARTS) do
    if keys[i] ~= prefix .. part then
      fail(fn, 'key ' .. i .. ' must be ' .. prefix .. part .. ' (one hash tag per voucher)')
    end
  end
  -- Each read fails with WRONGTYPE when a key holds another type: checked before any write.
  redis.call('HLEN', keys[CFG])
  redis.call('HLEN', keys[CLAIMS])
  redis.call('HLEN', keys[IDEM])
  redis.call('HLEN', keys[BUDGET])
  redis.call('ZCARD', keys[EXPIRY])
  redis.call('HLEN', keys[BUYERS])
  redis.call('XLEN', keys[OUTBOX])
  return tonumber(voucher)
end

local function nargs(fn, args, n)
  if #args ~= n then
    fail(fn, 'expected ' .. n .. ' argument' .. (n == 1 and '' or 's'))
  end
end

local function read_budget(keys)
  local b = redis.call('HMGET', keys[BUDGET], 'funded', 'reserved', 'spent', 'free')
  return {
    funded = tonumber(b[1]) or 0, reserved = tonumber(b[2]) or 0, spent = tonumber(b[3]) or 0,
    free = tonumber(b[4]) or 0,
  }
end

local function budget_reply(keys, budget)
  budget = budget or read_budget(keys)
  local claimed = tonumber(redis.call('HGET', keys[CFG], 'claimed')) or 0
  return {'budget', budget.funded, budget.reserved, budget.spent, budget.free, claimed}
end

local function emit(keys, kind, raw)
  redis.call('XADD', keys[OUTBOX], 'MAXLEN', '~', OUTBOX_LEN, '*', 'type', kind, 'data', raw)
end

local function read_claim(keys, id)
  local raw = redis.call('HGET', keys[CLAIMS], id)
  if not raw then
    return nil, nil
  end
  return cjson.decode(raw), raw
end

local function save_claim(keys, claim, kind)
  local raw = cjson.encode(claim)
  redis.call('HSET', keys[CLAIMS], claim.id, raw)
  emit(keys, kind, raw)
  return raw
end

-- Ends a claimed claim unused: its reservation goes back to the free budget.
local function expire(keys, claim)
  redis.call('HINCRBY', keys[BUDGET], 'reserved', 0 - claim.reserved)  -- not -x: Lua's -0 is "-0", not an integer
  redis.call('HINCRBY', keys[BUDGET], 'free', claim.reserved)
  redis.call('ZREM', keys[EXPIRY], claim.id)
  claim.state = 'expired'
  return save_claim(keys, claim, 'expired')
end

-- Whether the voucher takes no more claims and its claimed claims may expire: closed, or its window is over.
local function over(keys, now)
  local c = redis.call('HMGET', keys[CFG], 'state', 'end_ms')
  return c[1] == 'closed' or (c[2] ~= false and now >= tonumber(c[2]))
end

-- voucher_load: creates or updates a voucher's configuration and its budget.
-- ARGV: version, voucher (the id in the keys' hash tag), quota, limit (claims per buyer), start_ms, end_ms,
--       worst (what each new claim reserves), funded (the budget allotted).
-- The budget is created with `funded` when absent; a later load with a larger funded adds the difference to
-- free, a smaller one takes it from free only.
-- Optional ARGV 9..: the history SQL holds — spent (the platform discounts of the orders that used it), then
-- pairs of buyer id and claims used — applied only when the budget is created now: a Redis that lost its data
-- starts from what was already spent and who already used it, never from zero.
-- Returns {'loaded', version, created (1 when the budget was created now), budget reply}
--   | {'stale', stored version} | {'closed'} | {'short', budget reply} (less is free than funded would drop)
--   | {'quota_short', claimed} (more claims exist than quota) | {'limit_short', top} (a buyer has more claims)
local function voucher_load(keys, args)
  local fn = 'voucher_load'
  local id = check_keys(fn, keys)
  if #args ~= 8 and (#args < 9 or (#args - 9) % 2 ~= 0) then
    fail(fn, 'expected 8 arguments, or 9 and then pairs of buyer id and claims used')
  end
  local version = int_arg(fn, 'version', args[1], 1, 1e15)
  local voucher = int_arg(fn, 'voucher', args[2], 1, 1e15)
  if voucher ~= id then
    fail(fn, 'voucher ' .. voucher .. ' is not the voucher of the keys (' .. id .. ')')
  end
  local quota = int_arg(fn, 'quota', args[3], 1, 1e12)
  local limit = int_arg(fn, 'limit', args[4], 1, 1e12)
  local start_ms = int_arg(fn, 'start_ms', args[5], 0, 1e15)
  local end_ms = int_arg(fn, 'end_ms', args[6], 0, 1e15)
  if end_ms < start_ms then
    fail(fn, 'end_ms must not be before start_ms')
  end
  local worst = int_arg(fn, 'worst', args[7], 0, MAX_MONEY)
  local funded = int_arg(fn, 'funded', args[8], 0, MAX_MONEY)
  local spent_before, used_before, used_by = 0, 0, {}
  if #args >= 9 then
    spent_before = int_arg(fn, 'spent', args[9], 0, MAX_MONEY)
    for i = 10, #args, 2 do
      int_arg(fn, 'buyer', args[i], 1, 1e15)
      local n = int_arg(fn, 'claims used', args[i + 1], 1, 1e12)
      used_by[#used_by + 1] = {args[i], n}
      used_before = used_before + n
    end
  end

  local stored = redis.call('HMGET', keys[CFG], 'version', 'state', 'claimed', 'top')
  if stored[2] == 'closed' then
    return {'closed'}
  end
  if stored[1] and tonumber(stored[1]) > version then
    return {'stale', tonumber(stored[1])}
  end
  local claimed, top = tonumber(stored[3]) or 0, tonumber(stored[4]) or 0
  if quota < claimed then
    return {'quota_short', claimed}
  end
  if limit < top then
    return {'limit_short', top}
  end
  local created = redis.call('EXISTS', keys[BUDGET]) == 0
  local budget = read_budget(keys)
  if not created and budget.free + funded - budget.funded < 0 then
    return {'short', budget_reply(keys, budget)}
  end
  if created and used_before > 0 then  -- a Redis that lost its data: the claims SQL knows were used
    claimed = math.max(claimed, used_before)
    for _, pair in ipairs(used_by) do
      local have = tonumber(redis.call('HGET', keys[BUYERS], pair[1])) or 0
      if pair[2] > have then
        redis.call('HSET', keys[BUYERS], pair[1], pair[2])
        have = pair[2]
      end
      top = math.max(top, have)
    end
  end
  for _, key in ipairs(keys) do
    redis.call('PERSIST', key)  -- a retired voucher (its keys set to expire) that is loaded again stays
  end
  redis.call('HSET', keys[CFG], 'version', version, 'voucher', voucher, 'quota', quota, 'limit', limit,
    'start_ms', start_ms, 'end_ms', end_ms, 'worst', worst, 'state', 'open', 'claimed', claimed, 'top', top)
  if created then
    local spent = math.min(spent_before, funded)
    budget = {funded = funded, reserved = 0, spent = spent, free = funded - spent}
  else
    budget.free = budget.free + funded - budget.funded
    budget.funded = funded
  end
  redis.call('HSET', keys[BUDGET], 'funded', budget.funded, 'reserved', budget.reserved, 'spent', budget.spent,
    'free', budget.free)
  emit(keys, 'loaded', cjson.encode({
    voucher = voucher, version = version, quota = quota, limit = limit, start_ms = start_ms, end_ms = end_ms,
    worst = worst, funded = budget.funded, free = budget.free,
  }))
  return {'loaded', version, created and 1 or 0, budget_reply(keys, budget)}
end

-- voucher_claim: up to 500 claims in one call, checked and applied in order.
-- ARGV: n, then n pairs: buyer id, idempotency key. The same buyer and key always mean the same claim.
-- Returns n results and then the budget reply. A result is
--   {'ok', claim JSON, replayed (0|1)}      a claim (replayed: this buyer used the key before: the same claim,
--                                           in its current state)
--   {'not_loaded'} {'closed'} {'not_started', start_ms} {'ended'}
--   {'claimed_out', quota}                  every claim the voucher offers is taken
--   {'limit', limit, claims the buyer has}  the per-buyer limit is reached
--   {'budget_out'}                          the free budget cannot cover another claim's worst cost
local function voucher_claim(keys, args)
  local fn = 'voucher_claim'
  local id = check_keys(fn, keys)
  local n = int_arg(fn, 'n', args[1], 1, MAX_BATCH)
  if #args ~= 1 + GROUP * n then
    fail(fn, 'expected 1 + ' .. GROUP .. ' * n arguments')
  end
  for i = 0, n - 1 do
    int_arg(fn, 'buyer', args[2 + GROUP * i], 1, 1e15)
    token_arg(fn, 'key', args[3 + GROUP * i], 64)
  end

  local c = redis.call('HMGET', keys[CFG], 'state', 'start_ms', 'end_ms', 'quota', 'limit', 'worst', 'claimed',
    'top')
  local state, start_ms, end_ms = c[1], tonumber(c[2]), tonumber(c[3])
  local quota, limit, worst = tonumber(c[4]), tonumber(c[5]), tonumber(c[6])
  local claimed, top = tonumber(c[7]) or 0, tonumber(c[8]) or 0
  local budget = read_budget(keys)
  local now = now_ms()
  local changed = false
  local results = {}
  for i = 0, n - 1 do
    local buyer, key = args[2 + GROUP * i], args[3 + GROUP * i]
    local ikey = buyer .. ':' .. key
    local seen = redis.call('HGET', keys[IDEM], ikey)
    local result
    if seen then
      result = {'ok', redis.call('HGET', keys[CLAIMS], seen), 1}
    elseif not state then
      result = {'not_loaded'}
    elseif state == 'closed' then
      result = {'closed'}
    elseif now < start_ms then
      result = {'not_started', start_ms}
    elseif now >= end_ms then
      result = {'ended'}
    elseif claimed >= quota then
      result = {'claimed_out', quota}
    else
      local have = tonumber(redis.call('HGET', keys[BUYERS], buyer)) or 0
      if have >= limit then
        result = {'limit', limit, have}
      elseif budget.free < worst then
        result = {'budget_out'}
      else
        claimed = claimed + 1
        top = math.max(top, have + 1)
        budget.free = budget.free - worst
        budget.reserved = budget.reserved + worst
        changed = true
        local claim = {
          id = 'v' .. id .. '.' .. claimed, voucher = id, buyer = tonumber(buyer), key = key, state = 'claimed',
          reserved = worst, hold = '', discount = 0, cost = 0, created = now, ['until'] = 0,
        }
        local raw = save_claim(keys, claim, 'claimed')
        redis.call('ZADD', keys[EXPIRY], 0, claim.id)
        redis.call('HINCRBY', keys[BUYERS], buyer, 1)
        redis.call('HSET', keys[IDEM], ikey, claim.id)
        result = {'ok', raw, 0}
      end
    end
    results[i + 1] = result
  end
  if changed then
    redis.call('HSET', keys[CFG], 'claimed', claimed, 'top', top)
    redis.call('HSET', keys[BUDGET], 'reserved', budget.reserved, 'free', budget.free)
  end
  results[n + 1] = budget_reply(keys, budget)
  return results
end

-- voucher_apply: a claimed claim is applied to a hold (the buyer's checkout) at a discount whose cost to the
-- budget is `cost` (the platform part); until the hold's `until_ms` the sweeper leaves it alone.
-- ARGV: claim id, buyer id (0 = any: the system), hold id, discount, cost (<= discount), until_ms.
-- Returns {'ok', claim} (applied now, or already to this hold: then as first applied) | {'not_found'}
--   | {'too_much', claim} (cost exceeds what the claim reserved) | {'in_use', claim} (applied to another hold:
--   claim.hold) | {'used', claim} | {'expired', claim} (also when the voucher ended or closed: expired now)
local function voucher_apply(keys, args)
  local fn = 'voucher_apply'
  check_keys(fn, keys)
  nargs(fn, args, 6)
  token_arg(fn, 'claim id', args[1], 40)
  local buyer = int_arg(fn, 'buyer', args[2], 0, 1e15)
  local hold_id = token_arg(fn, 'hold id', args[3], 40)
  local discount = int_arg(fn, 'discount', args[4], 0, MAX_MONEY)
  local cost = int_arg(fn, 'cost', args[5], 0, MAX_MONEY)
  if cost > discount then
    fail(fn, 'cost must not exceed discount (it is the budget\'s part of it)')
  end
  local until_ms = int_arg(fn, 'until_ms', args[6], 1, 1e15)
  local claim, raw = read_claim(keys, args[1])
  if claim == nil or (buyer ~= 0 and claim.buyer ~= buyer) then
    return {'not_found'}
  end
  if claim.state == 'applied' then
    return {claim.hold == hold_id and 'ok' or 'in_use', raw}
  end
  if claim.state ~= 'claimed' then
    return {claim.state, raw}
  end
  if over(keys, now_ms()) then
    return {'expired', expire(keys, claim)}
  end
  if cost > claim.reserved then
    return {'too_much', raw}
  end
  claim.state = 'applied'
  claim.hold = hold_id
  claim.discount = discount
  claim.cost = cost
  claim['until'] = until_ms
  redis.call('ZADD', keys[EXPIRY], until_ms, claim.id)
  return {'ok', save_claim(keys, claim, 'applied')}
end

local function claim_and_hold(fn, keys, args)
  check_keys(fn, keys)
  nargs(fn, args, 2)
  token_arg(fn, 'claim id', args[1], 40)
  token_arg(fn, 'hold id', args[2], 40)
  return read_claim(keys, args[1])
end

-- voucher_release: an applied claim goes back to claimed (the hold was cancelled or expired unpaid), if it is
-- applied to this hold. ARGV: claim id, hold id.
-- Returns {'ok', claim} | {'not_found'} | {'in_use', claim} (applied or used by another hold)
--   | {state, claim} otherwise (claimed, used, expired: nothing changed)
local function voucher_release(keys, args)
  local claim, raw = claim_and_hold('voucher_release', keys, args)
  if claim == nil then
    return {'not_found'}
  end
  if (claim.state == 'applied' or claim.state == 'used') and claim.hold ~= args[2] then
    return {'in_use', raw}
  end
  if claim.state ~= 'applied' then
    return {claim.state, raw}
  end
  claim.state = 'claimed'
  claim.hold = ''
  claim.discount = 0
  claim.cost = 0
  claim['until'] = 0
  redis.call('ZADD', keys[EXPIRY], 0, claim.id)
  return {'ok', save_claim(keys, claim, 'released')}
end

-- voucher_redeem: the hold an applied claim is applied to was paid: the claim is used and the budget settles,
-- reserved -= claim.reserved, spent += cost, free += reserved - cost. ARGV: claim id, hold id, and optionally the
-- cost as the paid hold recorded it (0..claim.reserved; else {'too_much', claim}): the budget then spends exactly
-- what the order's platform discount says, whichever checkout's quote the hold recorded.
-- Returns {'ok', claim} | {'used', claim} (already redeemed for this hold: a retry) | {'not_found'}
--   | {'in_use', claim} (applied or used by another hold) | {state, claim} (claimed, expired: nothing changed)
local function voucher_redeem(keys, args)
  local fn = 'voucher_redeem'
  local cost = nil
  if #args == 3 then
    cost = int_arg(fn, 'cost', args[3], 0, 1e15)
    args = {args[1], args[2]}
  end
  local claim, raw = claim_and_hold(fn, keys, args)
  if claim == nil then
    return {'not_found'}
  end
  if (claim.state == 'applied' or claim.state == 'used') and claim.hold ~= args[2] then
    return {'in_use', raw}
  end
  if claim.state ~= 'applied' then
    return {claim.state, raw}
  end
  if cost ~= nil then
    if cost > claim.reserved then
      return {'too_much', raw}
    end
    claim.cost = cost
  end
  redis.call('HINCRBY', keys[BUDGET], 'reserved', 0 - claim.reserved)  -- not -x: Lua's -0 is "-0", not an integer
  redis.call('HINCRBY', keys[BUDGET], 'spent', claim.cost)
  redis.call('HINCRBY', keys[BUDGET], 'free', claim.reserved - claim.cost)
  redis.call('ZREM', keys[EXPIRY], claim.id)
  claim.state = 'used'
  claim.used = now_ms()
  return {'ok', save_claim(keys, claim, 'used')}
end

-- voucher_sweep: once the voucher ended (Redis TIME >= end_ms) or closed, claimed claims expire (their
-- reservation back to free); applied claims whose `until` passed are reported, for the worker to ask the hold's
-- pool and redeem or release them. ARGV: max claims to look at.
-- Returns {expired claim ids, applied claims (JSON) past their until, budget reply}.
local function voucher_sweep(keys, args)
  local fn = 'voucher_sweep'
  check_keys(fn, keys)
  nargs(fn, args, 1)
  local max = int_arg(fn, 'max', args[1], 1, 10000)
  local now = now_ms()
  local low = over(keys, now) and '-inf' or '(0'
  local due = redis.call('ZRANGEBYSCORE', keys[EXPIRY], low, tostring(now), 'LIMIT', 0, max)
  local expired, stale = {}, {}
  for _, id in ipairs(due) do
    local claim, raw = read_claim(keys, id)
    if claim == nil then
      redis.call('ZREM', keys[EXPIRY], id)
    elseif claim.state == 'claimed' then
      expire(keys, claim)
      expired[#expired + 1] = id
    elseif claim.state == 'applied' then
      stale[#stale + 1] = raw
    else
      redis.call('ZREM', keys[EXPIRY], id)
    end
  end
  return {expired, stale, budget_reply(keys)}
end

-- voucher_close: no further claims; claimed claims expire at the next sweep, applied ones may still be redeemed
-- or released. ARGV: none. Returns {budget reply, claims still claimed or applied}.
local function voucher_close(keys, args)
  local fn = 'voucher_close'
  local id = check_keys(fn, keys)
  nargs(fn, args, 0)
  if redis.call('EXISTS', keys[CFG]) == 1 and redis.call('HGET', keys[CFG], 'state') ~= 'closed' then
    redis.call('HSET', keys[CFG], 'state', 'closed')
    emit(keys, 'closed', cjson.encode({voucher = id}))
  end
  return {budget_reply(keys), redis.call('ZCARD', keys[EXPIRY])}
end

-- voucher_budget: ARGV: none. Returns the budget reply {'budget', funded, reserved, spent, free, claimed}
-- (all 0 when the voucher is not loaded).
local function voucher_budget(keys, args)
  local fn = 'voucher_budget'
  check_keys(fn, keys)
  nargs(fn, args, 0)
  return budget_reply(keys)
end

redis.register_function('voucher_load', voucher_load)
redis.register_function('voucher_claim', voucher_claim)
redis.register_function('voucher_apply', voucher_apply)
redis.register_function('voucher_release', voucher_release)
redis.register_function('voucher_redeem', voucher_redeem)
redis.register_function('voucher_sweep', voucher_sweep)
redis.register_function('voucher_close', voucher_close)
redis.register_function{function_name = 'voucher_budget', callback = voucher_budget, flags = {'no-writes'}}
