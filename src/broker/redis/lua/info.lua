-- A channel's epoch, last seq and retained count.
-- KEYS: 1 meta hash, 2 history list, 3 slot store hash
-- ARGV: 1 history ttl s, 2 idle s
-- Returns {epoch, lastSeq, retained}
local epoch = redis.call('HGET', KEYS[1], 'e')
local last = 0
if epoch then
  last = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
else
  epoch = store_epoch(KEYS[3], tonumber(ARGV[2]))
end
drop_expired(KEYS[2], now_ms() - tonumber(ARGV[1]) * 1000, KEYS[1])
return {epoch, last, redis.call('LLEN', KEYS[2])}
