-- The test-mode payment provider's ledger: one hash, shared by every process, like an external provider's.
--
-- KEYS[1] ledger  hash  charge key -> JSON {key, ref, amount, currency, status (charged|declined|refunded),
--                       reason}
-- ARGV[1] op      'charge' or 'refund'
-- ARGV[2] key     the charge's idempotency key (a hold id)
-- ARGV[3] record  ('charge' only) the JSON outcome of this attempt, as the provider computed it
--
-- charge: a key that is charged or refunded keeps its record (the same key never charges twice: the first
--         charge is returned); an absent or declined key takes the new record (a declined card consumed
--         nothing, so the buyer may try another card). Returns the record that stands.
-- refund: a charged key becomes refunded. Returns the record that stands, or false when the key is unknown.

local ledger, op, key = KEYS[1], ARGV[1], ARGV[2]
if type(key) ~= 'string' or key == '' then
  return redis.error_reply('ERR testpay_record: key must not be empty')
end
local existing = redis.call('HGET', ledger, key)

if op == 'charge' then
  if #ARGV ~= 3 then
    return redis.error_reply('ERR testpay_record: charge expects op, key, record')
  end
  local ok, record = pcall(cjson.decode, ARGV[3])
  if not ok or type(record) ~= 'table' or record.key ~= key then
    return redis.error_reply('ERR testpay_record: record must be a JSON object for this key')
  end
  if existing and cjson.decode(existing).status ~= 'declined' then
    return existing
  end
  redis.call('HSET', ledger, key, ARGV[3])
  return ARGV[3]
elseif op == 'refund' then
  if #ARGV ~= 2 then
    return redis.error_reply('ERR testpay_record: refund expects op, key')
  end
  if not existing then
    return false
  end
  local record = cjson.decode(existing)
  if record.status ~= 'charged' then
    return existing
  end
  record.status = 'refunded'
  local raw = cjson.encode(record)
  redis.call('HSET', ledger, key, raw)
  return raw
end
return redis.error_reply('ERR testpay_record: op must be charge or refund')
