-- The test-mode payment provider's ledger: one hash, shared by every process, like an external provider's.
--
-- KEYS[1] ledger  hash  charge key -> JSON {key, ref, amount_minor, currency, status (charged|declined|refunded),
--                       decline_reason, charged_at_ms, refunded_minor, refunds: {refund key -> amount}}
-- ARGV[1] op      'charge', 'refund' or 'refund_part'
-- ARGV[2] key     the charge's idempotency key (a hold id)
-- ARGV[3] record  ('charge') the JSON outcome of this attempt, as the provider computed it
--         refund_key ('refund_part') the refund's idempotency key
-- ARGV[4] amount  ('refund_part') minor units to give back, >= 1
--
-- charge: a key that is charged or refunded keeps its record (the same key never charges twice: the first
--         charge is returned); an absent or declined key takes the new record (a declined card consumed
--         nothing, so the buyer may try another card). Returns the record that stands.
-- refund: a charged key becomes refunded (whatever part was left). Returns the record that stands, or false
--         when the key is unknown.
-- refund_part: gives `amount` back under `refund_key`, once: a refund key already recorded returns the record
--         unchanged (an error if its amount differs). Refused (an error starting 'REFUSED') when the charge is
--         not charged or `amount` exceeds what is left (amount_minor - refunded_minor). A charge refunded in
--         full this way becomes refunded. Returns the record, or false when the key is unknown.

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
  record.refunded_minor = record.amount_minor
  local raw = cjson.encode(record)
  redis.call('HSET', ledger, key, raw)
  return raw
elseif op == 'refund_part' then
  local refund_key, amount = ARGV[3], tonumber(ARGV[4])
  if #ARGV ~= 4 or type(refund_key) ~= 'string' or refund_key == '' or not amount or amount < 1
      or amount ~= math.floor(amount) then
    return redis.error_reply('ERR testpay_record: refund_part expects op, key, refund key, amount >= 1')
  end
  if not existing then
    return false
  end
  local record = cjson.decode(existing)
  local refunds = type(record.refunds) == 'table' and record.refunds or {}
  local done = refunds[refund_key]
  if done then
    if done ~= amount then
      return redis.error_reply('ERR testpay_record: refund key ' .. refund_key .. ' was used for ' .. done)
    end
    return existing
  end
  local refunded = tonumber(record.refunded_minor) or 0
  if record.status ~= 'charged' then
    return redis.error_reply('REFUSED the charge is ' .. record.status .. ', nothing is left to refund')
  end
  if refunded + amount > record.amount_minor then
    return redis.error_reply('REFUSED only ' .. (record.amount_minor - refunded) .. ' is left to refund')
  end
  refunds[refund_key] = amount
  record.refunds = refunds
  record.refunded_minor = refunded + amount
  if record.refunded_minor == record.amount_minor then
    record.status = 'refunded'
  end
  local raw = cjson.encode(record)
  redis.call('HSET', ledger, key, raw)
  return raw
end
return redis.error_reply('ERR testpay_record: op must be charge, refund or refund_part')
