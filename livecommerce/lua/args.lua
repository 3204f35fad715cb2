-- Arguments and time for our function libraries (included by pools.lua, vouchers.lua and rankings.lua): each
-- function checks every argument with these before its first write, so a bad call is an error that changed
-- nothing. `fn` names the function in the error.

local function fail(fn, message)
  return error({err = 'ERR ' .. fn .. ': ' .. message})
end

-- An integer in [low, high] (negative only if low is).
local function int_arg(fn, name, value, low, high)
  if type(value) ~= 'string' or not value:match('^%-?%d+$') or #value > 16 then
    fail(fn, name .. ' must be an integer')
  end
  local n = tonumber(value)
  if n < low or n > high then
    fail(fn, name .. ' must be between ' .. low .. ' and ' .. high)
  end
  return n
end

-- Up to max_len characters of A-Z a-z 0-9 _ . : - ('' only when allow_empty).
local function token_arg(fn, name, value, max_len, allow_empty)
  if type(value) ~= 'string' or #value > max_len or (value == '' and not allow_empty)
      or not value:match('^[A-Za-z0-9_.:-]*$') then
    fail(fn, name .. ' must be up to ' .. max_len .. ' characters of A-Z a-z 0-9 _ . : -')
  end
  return value
end

-- Redis TIME in milliseconds (never the caller's clock).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
