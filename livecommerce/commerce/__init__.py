"""Selling: flash sales, inventory pools in Redis, holds, checkout, payments and orders.

`pools` is the Redis side (one Lua function library, `lua/pools.lua`); `sales` the flash-sale rules in SQL;
`buying` the path from a tap on Buy to a paid hold; `orders` the outbox consumer that makes SQL the record.
"""
