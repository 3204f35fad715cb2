#!lua name=livecommerce_pools
-- Inventory pools: the stock of one flash sale or one product, sold through holds.
--
-- One Redis function library, loaded once per Redis (FUNCTION LOAD REPLACE; the client re-loads it when
-- Redis answers "Function not found", e.g. after a restart without persistence). Every function takes the
-- same nine keys, all under the pool's hash tag ({sale:ID} or {product:ID}), so a pool lives in one Redis
-- Cluster slot (pool_adjust takes a tenth, its once key, under the same tag):
--
-- KEYS[1] cfg      hash   version, pool, product, brand, sale, price, currency, limit, start_ms, end_ms,
--                         hold_ms, audience (open|list|codes), state (open|closed)
-- KEYS[2] stock    hash   total, available, held, paid, seq        (available + held + paid = total, always)
-- KEYS[3] holds    hash   hold id -> JSON record {id, pool, product, brand, sale, buyer, qty, price, currency,
--                         state (held|paying|paid|cancelled|expired), exp, created, room, code, key, ref,
--                         terms (the attribution and fee snapshot token, `commerce/terms.py`; absent = none), ...}
-- KEYS[4] expiry   zset   hold id -> ms when the sweeper may act (a held hold's expiry, a paying one's deadline)
-- KEYS[5] buyers   hash   buyer id -> units held, paying or paid (the per-buyer cap)
-- KEYS[6] idem     hash   "<buyer>:<key>" -> "<hold id>|<qty>:<code>" (a retry returns the same hold)
-- KEYS[7] invites  set    user ids invited (audience list)
-- KEYS[8] codes    hash   code -> "" while unused, or the id of the hold that used it (audience codes)
-- KEYS[9] outbox   stream type (reserved|paid|cancelled|expired), data (the hold's JSON record)
--
-- Rules every function follows: arguments are validated and every key's type is checked (an O(1) read that
-- fails on a wrong type) before the first write, so a bad call changes nothing; time is Redis TIME; every
-- change a hold goes through is appended to the outbox in the same step, so SQL can follow exactly.
-- Results are arrays whose first element is a status word; refusals are results, not errors.

local CFG, STOCK, HOLDS, EXPIRY, BUYERS, IDEM, INVITES, CODES, OUTBOX = 1, 2, 3, 4, 5, 6, 7, 8, 9
local MAX_BATCH = 500
local MAX_QTY = 1000000
local GROUP = 6  -- pool_reserve's arguments per reservation

-- #include args.lua

local function check_keys(fn, keys, extra)
  if #keys ~= 9 + (extra or 0) then
    fail(fn, 'expected ' .. (9 + (extra or 0)) .. ' keys (cfg, stock, holds, expiry, buyers, idem, invites, codes, '
      .. 'outbox' .. ((extra or 0) > 0 and ', once' or '') .. ')')
  end
  -- Each read fails with WRONGTYPE when a key holds another type: checked before any write.
  redis.call('HLEN', keys[CFG])
  redis.call('HLEN', keys[STOCK])
  redis.call('HLEN', keys[HOLDS])
  redis.call('ZCARD', keys[EXPIRY])
  redis.call('HLEN', keys[BUYERS])
  redis.call('HLEN', keys[IDEM])
  redis.call('SCARD', keys[INVITES])
  redis.call('HLEN', keys[CODES])
  redis.call('XLEN', keys[OUTBOX])
end

local function terms_arg(fn, value)
  if type(value) ~= 'string' or #value > 64 or not value:match('^[A-Za-z0-9.]*$') then
    fail(fn, 'terms must be up to 64 characters of A-Z a-z 0-9 .')
  end
  return value
end

local function read_stock(keys)
  local s = redis.call('HMGET', keys[STOCK], 'available', 'held', 'paid', 'total')
  return {
    available = tonumber(s[1]) or 0, held = tonumber(s[2]) or 0,
    paid = tonumber(s[3]) or 0, total = tonumber(s[4]) or 0,
  }
end

local function stock_reply(stock)
  return {'stock', stock.available, stock.held, stock.paid, stock.total}
end

local function read_hold(keys, id)
  local raw = redis.call('HGET', keys[HOLDS], id)
  if not raw then
    return nil, nil
  end
  return cjson.decode(raw), raw
end

local function save_hold(keys, hold)
  local raw = cjson.encode(hold)
  redis.call('HSET', keys[HOLDS], hold.id, raw)
  return raw
end

local function emit(keys, kind, raw)
  redis.call('XADD', keys[OUTBOX], '*', 'type', kind, 'data', raw)
end

-- Ends a held or paying hold without payment: its units go back to the pool, its buyer's cap and its code
-- are freed. `state` is cancelled or expired.
local function release(keys, hold, state, now)
  hold.state = state
  hold.ended = now
  hold.deadline = nil
  redis.call('HINCRBY', keys[STOCK], 'available', hold.qty)
  redis.call('HINCRBY', keys[STOCK], 'held', -hold.qty)
  redis.call('ZREM', keys[EXPIRY], hold.id)
  if redis.call('HINCRBY', keys[BUYERS], tostring(hold.buyer), -hold.qty) <= 0 then
    redis.call('HDEL', keys[BUYERS], tostring(hold.buyer))
  end
  if hold.code ~= '' then
    redis.call('HSET', keys[CODES], hold.code, '')
  end
  emit(keys, state, save_hold(keys, hold))
end

local function hold_reply(status, raw)
  return {status, raw}
end

-- pool_load: creates or updates a pool's configuration; never overwrites its stock once created.
-- ARGV: version, pool, product, brand, sale (0 = none), price, currency, quantity, limit, start_ms, end_ms,
--       hold_ms, audience, then invitee user ids (audience list) or codes (audience codes) to add.
-- Returns {'loaded', version, created (1 when the stock was created now)} | {'stale', stored version}
--         | {'closed'}
local function pool_load(keys, args)
  local fn = 'pool_load'
  check_keys(fn, keys)
  if #args < 13 then
    fail(fn, 'expected 13 arguments and then invitees or codes')
  end
  local version = int_arg(fn, 'version', args[1], 1, 1e15)
  local pool = token_arg(fn, 'pool', args[2], 24, false)
  local product = int_arg(fn, 'product', args[3], 1, 1e15)
  local brand = int_arg(fn, 'brand', args[4], 1, 1e15)
  local sale = int_arg(fn, 'sale', args[5], 0, 1e15)
  local price = int_arg(fn, 'price', args[6], 0, 1e15)
  local currency = args[7]
  if type(currency) ~= 'string' or not currency:match('^%u%u%u$') then
    fail(fn, 'currency must be three capital letters')
  end
  local quantity = int_arg(fn, 'quantity', args[8], 0, 1e12)
  local limit = int_arg(fn, 'limit', args[9], 1, MAX_QTY)
  local start_ms = int_arg(fn, 'start_ms', args[10], 0, 1e15)
  local end_ms = int_arg(fn, 'end_ms', args[11], 0, 1e15)
  local hold_ms = int_arg(fn, 'hold_ms', args[12], 1, 864e5)
  local audience = args[13]
  if audience ~= 'open' and audience ~= 'list' and audience ~= 'codes' then
    fail(fn, 'audience must be open, list or codes')
  end
  for i = 14, #args do
    if audience == 'list' then
      int_arg(fn, 'invitee', args[i], 1, 1e15)
    elseif audience == 'codes' then
      token_arg(fn, 'code', args[i], 32, false)
    else
      fail(fn, 'an open pool takes no invitees or codes')
    end
  end

  local stored = redis.call('HMGET', keys[CFG], 'version', 'state')
  if stored[2] == 'closed' then
    return {'closed'}
  end
  if stored[1] and tonumber(stored[1]) > version then
    return {'stale', tonumber(stored[1])}
  end
  redis.call('HSET', keys[CFG], 'version', version, 'pool', pool, 'product', product, 'brand', brand,
    'sale', sale, 'price', price, 'currency', currency, 'limit', limit, 'start_ms', start_ms,
    'end_ms', end_ms, 'hold_ms', hold_ms, 'audience', audience, 'state', 'open')
  local created = 0
  if redis.call('EXISTS', keys[STOCK]) == 0 then
    redis.call('HSET', keys[STOCK], 'total', quantity, 'available', quantity, 'held', 0, 'paid', 0, 'seq', 0)
    created = 1
  end
  for i = 14, #args do
    if audience == 'list' then
      redis.call('SADD', keys[INVITES], args[i])
    else
      redis.call('HSETNX', keys[CODES], args[i], '')
    end
  end
  return {'loaded', version, created}
end

-- pool_reserve: up to 500 reservations in one call, checked and applied in order.
-- ARGV: n, then n groups of 6: buyer id, idempotency key, quantity, code ('' for none), room id ('' for none),
--       terms (up to 64 characters of A-Z a-z 0-9 ., '' for none: stored verbatim as the hold's `terms`; not part
--       of the request's identity, so a retry returns the hold with the terms it was made with)
-- Returns n results and then the pool's stock {'stock', available, held, paid, total}. A result is
--   {'ok', hold JSON, replayed (0|1)}                 a hold (replayed: the key was used before, same request)
--   {'key_reused', hold id}                           the key was used for a different request
--   {'not_loaded'} {'closed'} {'not_started', start_ms} {'ended'}
--   {'over_limit', limit}                             asked for more than one buyer may have
--   {'not_invited'} {'code_required'} {'code_invalid'} {'code_used'}
--   {'limit', limit, units the buyer already has}     the per-buyer cap is reached
--   {'sold_out'} {'not_enough', available}
local function pool_reserve(keys, args)
  local fn = 'pool_reserve'
  check_keys(fn, keys)
  local n = int_arg(fn, 'n', args[1], 1, MAX_BATCH)
  if #args ~= 1 + GROUP * n then
    fail(fn, 'expected 1 + ' .. GROUP .. ' * n arguments')
  end
  for i = 0, n - 1 do
    local b = 1 + GROUP * i
    int_arg(fn, 'buyer', args[b + 1], 1, 1e15)
    token_arg(fn, 'key', args[b + 2], 64, false)
    int_arg(fn, 'quantity', args[b + 3], 1, MAX_QTY)
    token_arg(fn, 'code', args[b + 4], 32, true)
    if args[b + 5] ~= '' then
      int_arg(fn, 'room', args[b + 5], 1, 1e15)
    end
    terms_arg(fn, args[b + 6])
  end

  local results = {}
  local c = redis.call('HMGET', keys[CFG], 'state', 'start_ms', 'end_ms', 'limit', 'hold_ms', 'audience',
    'price', 'currency', 'pool', 'product', 'brand', 'sale')
  local stock = read_stock(keys)
  local state, start_ms, end_ms, limit, hold_ms = c[1], tonumber(c[2]), tonumber(c[3]), tonumber(c[4]),
    tonumber(c[5])
  local audience = c[6]
  local now = now_ms()
  local seq = nil
  for i = 0, n - 1 do
    local b = 1 + GROUP * i
    local buyer, key, qty, code, room = args[b + 1], args[b + 2], tonumber(args[b + 3]), args[b + 4], args[b + 5]
    local terms = args[b + 6]
    local ikey = buyer .. ':' .. key
    local fingerprint = qty .. ':' .. code
    local seen = redis.call('HGET', keys[IDEM], ikey)
    local result
    if seen then
      local id, print_ = seen:match('^([^|]*)|(.*)$')
      if print_ ~= fingerprint then
        result = {'key_reused', id}
      else
        result = {'ok', redis.call('HGET', keys[HOLDS], id), 1}
      end
    elseif not state then
      result = {'not_loaded'}
    elseif state == 'closed' then
      result = {'closed'}
    elseif now < start_ms then
      result = {'not_started', start_ms}
    elseif now >= end_ms then
      result = {'ended'}
    elseif qty > limit then
      result = {'over_limit', limit}
    elseif audience == 'list' and redis.call('SISMEMBER', keys[INVITES], buyer) == 0 then
      result = {'not_invited'}
    elseif audience == 'codes' and code == '' then
      result = {'code_required'}
    else
      local used = ''
      if audience == 'codes' then
        used = redis.call('HGET', keys[CODES], code)
      else
        code = ''  -- a code sent to a pool that takes none is ignored, never recorded
      end
      local have = tonumber(redis.call('HGET', keys[BUYERS], buyer)) or 0
      if not used then
        result = {'code_invalid'}
      elseif used ~= '' then
        result = {'code_used'}
      elseif have + qty > limit then
        result = {'limit', limit, have}
      elseif stock.available == 0 then
        result = {'sold_out'}
      elseif stock.available < qty then
        result = {'not_enough', stock.available}
      else
        if seq == nil then
          seq = tonumber(redis.call('HGET', keys[STOCK], 'seq')) or 0
        end
        seq = seq + 1
        stock.available = stock.available - qty
        stock.held = stock.held + qty
        local hold = {
          id = c[9] .. '.' .. seq, pool = c[9], product = tonumber(c[10]), brand = tonumber(c[11]),
          sale = tonumber(c[12]), buyer = tonumber(buyer), qty = qty, price = tonumber(c[7]), currency = c[8],
          state = 'held', exp = now + hold_ms, created = now, room = tonumber(room) or 0, code = code, key = key,
        }
        if terms ~= '' then
          hold.terms = terms
        end
        local raw = save_hold(keys, hold)
        redis.call('ZADD', keys[EXPIRY], hold.exp, hold.id)
        redis.call('HINCRBY', keys[BUYERS], buyer, qty)
        redis.call('HSET', keys[IDEM], ikey, hold.id .. '|' .. fingerprint)
        if code ~= '' then
          redis.call('HSET', keys[CODES], code, hold.id)
        end
        emit(keys, 'reserved', raw)
        result = {'ok', raw, 0}
      end
    end
    results[i + 1] = result
  end
  if seq ~= nil then
    redis.call('HSET', keys[STOCK], 'available', stock.available, 'held', stock.held, 'seq', seq)
  end
  results[n + 1] = stock_reply(stock)
  return results
end

local function hold_and_buyer(fn, keys, args, nargs)
  check_keys(fn, keys)
  if #args ~= nargs then
    fail(fn, 'expected ' .. nargs .. ' arguments')
  end
  token_arg(fn, 'hold id', args[1], 40, false)
  local buyer = int_arg(fn, 'buyer', args[2], 0, 1e15)  -- 0: any buyer (the system acting)
  local hold, raw = read_hold(keys, args[1])
  if hold == nil or (buyer ~= 0 and hold.buyer ~= buyer) then
    return nil, nil
  end
  return hold, raw
end

-- The six optional arguments of pool_begin_payment: the vouchers applied (seller voucher id, claim id,
-- platform voucher id, claim id: 0 and '' for an empty slot) and the parts of the discount each side funds.
-- Checked against the hold: at least one voucher, the buyer still pays at least 1 minor unit.
local function disc_args(fn, args, hold)
  local sv = int_arg(fn, 'seller voucher', args[4], 0, 1e15)
  local sc = args[5] == '' and '' or token_arg(fn, 'seller claim', args[5], 40, false)
  local pv = int_arg(fn, 'platform voucher', args[6], 0, 1e15)
  local pc = args[7] == '' and '' or token_arg(fn, 'platform claim', args[7], 40, false)
  local sf = int_arg(fn, 'seller_funded', args[8], 0, 1e13)
  local pf = int_arg(fn, 'platform_funded', args[9], 0, 1e13)
  if (sv == 0) ~= (sc == '') or (pv == 0) ~= (pc == '') or (sv == 0 and pv == 0) then
    fail(fn, 'each voucher needs its claim, and at least one voucher')
  end
  if hold ~= nil and sf + pf >= hold.qty * hold.price then
    fail(fn, 'the discounts must leave the buyer at least 1 to pay')
  end
  return {sv = sv, sc = sc, pv = pv, pc = pc, sf = sf, pf = pf}
end

-- pool_begin_payment: a held hold becomes paying until a deadline, so the sweeper leaves it alone while the
-- payment provider answers. ARGV: hold id, buyer id (0 = any), grace_ms [, the six discount arguments of
-- `disc_args`: recorded as the hold's `disc`, unless it has one already (a retry keeps the first)].
-- Returns {'ok', hold} | {'not_found'} | {'expired', hold} (it was past its expiry: released now)
--         | {state, hold} for a hold already paying, paid, cancelled or expired.
local function pool_begin_payment(keys, args)
  local fn = 'pool_begin_payment'
  check_keys(fn, keys)
  if #args ~= 3 and #args ~= 9 then
    fail(fn, 'expected 3 arguments, or 9 with a discount')
  end
  local hold, raw = hold_and_buyer(fn, keys, {args[1], args[2], args[3]}, 3)
  local grace = int_arg(fn, 'grace_ms', args[3], 1, 36e5)
  local disc = nil
  if #args == 9 then
    disc = disc_args(fn, args, hold)
  end
  if hold == nil then
    return {'not_found'}
  end
  if hold.state ~= 'held' then
    return hold_reply(hold.state, raw)
  end
  local now = now_ms()
  if now >= hold.exp then
    release(keys, hold, 'expired', now)
    return hold_reply('expired', redis.call('HGET', keys[HOLDS], hold.id))
  end
  hold.state = 'paying'
  hold.deadline = now + grace
  if disc ~= nil and hold.disc == nil then
    hold.disc = disc
  end
  redis.call('ZADD', keys[EXPIRY], hold.deadline, hold.id)
  return hold_reply('ok', save_hold(keys, hold))
end

-- pool_complete_payment: a paying hold is paid (the provider charged it). ARGV: hold id, payment reference.
-- Returns {'ok', hold} | {'paid', hold} (already paid with this reference: a retry) | {'not_found'}
--         | {state, hold} otherwise (the caller must refund: the hold was released before the charge landed).
local function pool_complete_payment(keys, args)
  local fn = 'pool_complete_payment'
  check_keys(fn, keys)
  if #args ~= 2 then
    fail(fn, 'expected 2 arguments')
  end
  token_arg(fn, 'hold id', args[1], 40, false)
  local ref = token_arg(fn, 'payment reference', args[2], 64, false)
  local hold, raw = read_hold(keys, args[1])
  if hold == nil then
    return {'not_found'}
  end
  if hold.state == 'paid' and hold.ref == ref then
    return hold_reply('paid', raw)
  end
  if hold.state ~= 'paying' then
    return hold_reply(hold.state, raw)
  end
  local now = now_ms()
  hold.state = 'paid'
  hold.ref = ref
  hold.paid = now
  hold.deadline = nil
  redis.call('HINCRBY', keys[STOCK], 'held', -hold.qty)
  redis.call('HINCRBY', keys[STOCK], 'paid', hold.qty)
  redis.call('ZREM', keys[EXPIRY], hold.id)
  raw = save_hold(keys, hold)
  emit(keys, 'paid', raw)
  return hold_reply('ok', raw)
end

-- pool_abort_payment: the provider declined; the hold is held again until its own expiry (or expires now if
-- that has passed). ARGV: hold id. Returns {'held' | 'expired', hold} | {'not_found'} | {state, hold}.
local function pool_abort_payment(keys, args)
  local fn = 'pool_abort_payment'
  check_keys(fn, keys)
  if #args ~= 1 then
    fail(fn, 'expected 1 argument')
  end
  token_arg(fn, 'hold id', args[1], 40, false)
  local hold, raw = read_hold(keys, args[1])
  if hold == nil then
    return {'not_found'}
  end
  if hold.state ~= 'paying' then
    return hold_reply(hold.state, raw)
  end
  local now = now_ms()
  if now >= hold.exp then
    release(keys, hold, 'expired', now)
    return hold_reply('expired', redis.call('HGET', keys[HOLDS], hold.id))
  end
  hold.state = 'held'
  hold.deadline = nil
  hold.disc = nil  -- declined: the vouchers go back to the buyer (the caller releases the claims)
  redis.call('ZADD', keys[EXPIRY], hold.exp, hold.id)
  return hold_reply('held', save_hold(keys, hold))
end

-- pool_cancel: the buyer (or the system, buyer 0) gives a held hold back. ARGV: hold id, buyer id (0 = any).
-- Returns {'ok', hold} | {'not_found'} | {state, hold} for a hold that is not held (paying: wait for it).
local function pool_cancel(keys, args)
  local hold, raw = hold_and_buyer('pool_cancel', keys, args, 2)
  if hold == nil then
    return {'not_found'}
  end
  if hold.state ~= 'held' then
    return hold_reply(hold.state, raw)
  end
  release(keys, hold, 'cancelled', now_ms())
  return hold_reply('ok', redis.call('HGET', keys[HOLDS], hold.id))
end

-- pool_expire: the worker ends a paying hold whose deadline passed after the payment provider said it never
-- charged it. ARGV: hold id. Returns {'ok', hold} | {'not_due'} | {'not_found'} | {state, hold}.
local function pool_expire(keys, args)
  local fn = 'pool_expire'
  if #args ~= 1 then
    fail(fn, 'expected 1 argument')
  end
  local hold, raw = hold_and_buyer(fn, keys, {args[1], '0'}, 2)
  if hold == nil then
    return {'not_found'}
  end
  if hold.state ~= 'paying' and hold.state ~= 'held' then
    return hold_reply(hold.state, raw)
  end
  local now = now_ms()
  local due = hold.state == 'paying' and hold.deadline or hold.exp
  if now < due then
    return {'not_due'}
  end
  release(keys, hold, 'expired', now)
  return hold_reply('ok', redis.call('HGET', keys[HOLDS], hold.id))
end

-- pool_sweep: returns expired held holds to stock (all when the pool is closed). ARGV: max holds to look at.
-- Returns {expired hold ids, paying hold ids past their deadline (for the worker to reconcile), stock reply}.
local function pool_sweep(keys, args)
  local fn = 'pool_sweep'
  check_keys(fn, keys)
  if #args ~= 1 then
    fail(fn, 'expected 1 argument')
  end
  local max = int_arg(fn, 'max', args[1], 1, 10000)
  local now = now_ms()
  local closed = redis.call('HGET', keys[CFG], 'state') == 'closed'
  local upto = closed and '+inf' or tostring(now)
  local due = redis.call('ZRANGEBYSCORE', keys[EXPIRY], '-inf', upto, 'LIMIT', 0, max)
  local expired, stale = {}, {}
  for _, id in ipairs(due) do
    local hold = read_hold(keys, id)
    if hold == nil then
      redis.call('ZREM', keys[EXPIRY], id)
    elseif hold.state == 'held' then
      release(keys, hold, 'expired', now)
      expired[#expired + 1] = id
    elseif hold.state == 'paying' then
      if now >= hold.deadline then
        stale[#stale + 1] = id
      end
    else
      redis.call('ZREM', keys[EXPIRY], id)
    end
  end
  return {expired, stale, stock_reply(read_stock(keys))}
end

-- pool_close: no further reservations; every held hold is released at the next sweep. ARGV: none.
-- Returns the stock reply and the number of holds still held or paying.
local function pool_close(keys, args)
  local fn = 'pool_close'
  check_keys(fn, keys)
  if #args ~= 0 then
    fail(fn, 'expected no arguments')
  end
  if redis.call('EXISTS', keys[CFG]) == 1 then
    redis.call('HSET', keys[CFG], 'state', 'closed')
  end
  return {stock_reply(read_stock(keys)), redis.call('ZCARD', keys[EXPIRY])}
end

-- pool_adjust: adds delta units to a pool (negative: removes unreserved ones), once per once key.
-- KEYS[10] once key: "<the pool's prefix>:adjust:<operation id>", remembered for ttl ms after it applied, so a
-- client that retries the call (its answer lost) applies the delta once. ARGV: delta, ttl ms.
-- Returns {'ok', stock reply} | {'replayed', stock reply} (this once key applied already: nothing changed) |
-- {'short', stock reply} (fewer than -delta units are available) | {'not_loaded'}
local function pool_adjust(keys, args)
  local fn = 'pool_adjust'
  check_keys(fn, keys, 1)
  if #args ~= 2 then
    fail(fn, 'expected 2 arguments (delta, once ttl ms)')
  end
  local delta = int_arg(fn, 'delta', args[1], -1e12, 1e12)
  local ttl = int_arg(fn, 'once ttl ms', args[2], 1, 1e12)
  local prefix = keys[CFG]:match('^(.*}:)cfg$')
  if not prefix or keys[10]:sub(1, #prefix + 7) ~= prefix .. 'adjust:' or #keys[10] == #prefix + 7 then
    fail(fn, 'the once key must be the pool\'s prefix followed by adjust:<operation id>')
  end
  redis.call('EXISTS', keys[10])  -- a read of every key before any write
  if redis.call('EXISTS', keys[STOCK]) == 0 then
    return {'not_loaded'}
  end
  local stock = read_stock(keys)
  if redis.call('EXISTS', keys[10]) == 1 then
    return {'replayed', stock_reply(stock)}
  end
  if stock.available + delta < 0 then
    return {'short', stock_reply(stock)}
  end
  redis.call('HINCRBY', keys[STOCK], 'available', delta)
  redis.call('HINCRBY', keys[STOCK], 'total', delta)
  redis.call('SET', keys[10], delta, 'PX', ttl)
  return {'ok', stock_reply(read_stock(keys))}
end

redis.register_function('pool_load', pool_load)
redis.register_function('pool_reserve', pool_reserve)
redis.register_function('pool_begin_payment', pool_begin_payment)
redis.register_function('pool_complete_payment', pool_complete_payment)
redis.register_function('pool_abort_payment', pool_abort_payment)
redis.register_function('pool_cancel', pool_cancel)
redis.register_function('pool_expire', pool_expire)
redis.register_function('pool_sweep', pool_sweep)
redis.register_function('pool_close', pool_close)
redis.register_function('pool_adjust', pool_adjust)
