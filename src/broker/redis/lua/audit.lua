-- The lost-writes audit of one channel (see src/broker/redis/ack-log.ts): is the message this
-- process acknowledged still the one stored under its seq? If Redis lost it (an AOF that
-- missed its last second, a replica promoted before it caught up), the channel moves to a new
-- epoch without renumbering: meta pe keeps the old epoch, whose cursors then keep their place
-- and get a gap (read.lua), and parked polls everywhere are told to re-read.
-- KEYS: 1 meta hash, 2 history list, 3 slot store hash
-- ARGV: 1 acknowledged epoch, 2 acknowledged seq, 3 acknowledged time text, 4 conflated (0|1),
--       5 channel, 6 notify channel, 7 publish command, 8 idle s
-- Returns 0 (intact, or already renumbered) or 1 (lost: moved to a new epoch)
local meta, hist, store = KEYS[1], KEYS[2], KEYS[3]
local epoch = redis.call('HGET', meta, 'e')
-- The whole channel lost: it reads its slot's store epoch again (if that survived).
if not epoch then epoch = redis.call('HGET', store, 'e') end
if epoch ~= ARGV[1] then return 0 end
local last = tonumber(redis.call('HGET', meta, 's') or '0')
local seq = tonumber(ARGV[2])

local stored = false
local known = true
if seq > last then
  stored = false
elseif seq == last then
  stored = redis.call('HGET', meta, 't')
else
  local first = last - redis.call('LLEN', hist) + 1
  if seq >= first then
    stored = entry_time(redis.call('LINDEX', hist, seq - first))
  elseif seq == first - 1 then
    stored = redis.call('HGET', meta, 'b')
  else
    known = false -- trimmed since: cannot tell
  end
end
if stored == ARGV[3] then return 0 end
-- A conflated channel promises only its latest value: an unknown past is no loss.
if not known and ARGV[4] == '1' then return 0 end

local moved = new_epoch(meta, 'g')
redis.call('HSET', meta, 'e', moved, 'pe', epoch, 's', last)
redis.call('EXPIRE', meta, tonumber(ARGV[8]))
redis.call(ARGV[7], ARGV[6], cmsgpack.pack({ch = ARGV[5], reset = true, epoch = moved}))
return 1
