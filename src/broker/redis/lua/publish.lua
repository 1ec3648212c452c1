-- Publishes one message, atomically: idempotency check, seq = seq + 1, append to the bounded
-- history, refresh TTLs, record the idempotency key, notify subscribers.
-- meta also keeps t (time of the newest message) and b (time of the newest trimmed one).
-- KEYS: 1 meta hash {e, s}, 2 history list, 3 slot store hash, 4 idempotency key (always in
--       the channel's slot; only used when ARGV[9] is 1)
-- ARGV: 1 channel, 2 json, 3 history size, 4 history ttl s, 5 idle s, 6 idempotency ttl s,
--       7 notify channel, 8 publish command (PUBLISH | SPUBLISH), 9 has idempotency key (0|1)
-- Returns {seq, epoch, duplicate (0|1), time text ('' for a duplicate)}
local meta, hist, store, idem = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local has_idem = ARGV[9] == '1'
local ch, json = ARGV[1], ARGV[2]
local size, ttl, idle, idem_ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])

if has_idem then
  local seen = redis.call('GET', idem)
  if seen then
    -- Rewritten, not just read: a WAIT after this covers the first publish's write too.
    redis.call('SET', idem, seen, 'KEEPTTL')
    local sep = string.find(seen, '|', 1, true)
    return {tonumber(string.sub(seen, 1, sep - 1)), string.sub(seen, sep + 1), 1, ''}
  end
end

-- Monotonic per channel: Redis's TIME is the wall clock, which can step back (NTP, a failover to
-- a host whose clock is behind). Messages of one channel must keep their seq order in time, as
-- multi-channel answers merge channels by time, and distinct times keep fingerprints distinct.
local now = now_ms()
local last = tonumber(redis.call('HGET', meta, 't'))
if last and now <= last then now = last + 0.001 end
local epoch = redis.call('HGET', meta, 'e')
if not epoch then
  epoch = store_epoch(store, idle)
  redis.call('HSET', meta, 'e', epoch)
end
local seq = redis.call('HINCRBY', meta, 's', 1)
local now_text = ms_text(now)
-- t: the time of the message at s, its fingerprint (the lost-writes rule: see cursor.ts).
redis.call('HSET', meta, 't', now_text)
redis.call('EXPIRE', meta, idle)

drop_expired(hist, now - ttl * 1000, meta)
local len = redis.call('RPUSH', hist, now_text .. '|' .. json)
if len > size then
  -- b: the time of the newest message trimmed away (seq firstSeq - 1).
  redis.call('HSET', meta, 'b', entry_time(redis.call('LINDEX', hist, len - size - 1)))
  redis.call('LTRIM', hist, -size, -1)
end
redis.call('EXPIRE', hist, ttl)

if has_idem then
  redis.call('SET', idem, seq .. '|' .. epoch, 'EX', idem_ttl)
end
redis.call(ARGV[8], ARGV[7], cmsgpack.pack({ch = ch, seq = seq, epoch = epoch, t = now, data = json}))
return {seq, epoch, 0, now_text}
