-- Deletes a channel's history and starts a new epoch (seq restarts at 1); notifies pollers.
-- KEYS: 1 meta hash, 2 history list
-- ARGV: 1 channel, 2 idle s, 3 notify channel, 4 publish command
-- Returns the new epoch
local meta, hist = KEYS[1], KEYS[2]
local epoch = new_epoch(meta, 'g')
redis.call('HSET', meta, 'e', epoch, 's', 0)
redis.call('HDEL', meta, 't', 'b', 'pe')
redis.call('EXPIRE', meta, tonumber(ARGV[2]))
redis.call('DEL', hist)
redis.call(ARGV[4], ARGV[3], cmsgpack.pack({ch = ARGV[1], reset = true, epoch = epoch}))
return epoch
