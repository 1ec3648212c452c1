-- Shared helpers, prepended to each script when it is loaded (see scripts.ts).

-- Milliseconds since the epoch with microsecond fraction, from the server's clock (scripts
-- are effect-replicated). The fraction orders messages published within one millisecond.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

-- A time as history entries store it ("%.3f": tostring would round to 14 digits).
local function ms_text(ms)
  return string.format('%.3f', ms)
end

-- A new epoch token: the server time in microseconds plus a per-key counter.
local function new_epoch(counter_key, counter_field)
  local t = redis.call('TIME')
  local n = redis.call('HINCRBY', counter_key, counter_field, 1)
  return string.format('%x%05x%x', tonumber(t[1]), tonumber(t[2]), n)
end

-- The store epoch of this slot: what a never-published channel reads. It lives for idle_s
-- and is never refreshed, so a channel reclaimed after idle_s comes back in a newer epoch.
local function store_epoch(store_key, idle_s)
  local e = redis.call('HGET', store_key, 'e')
  if not e then
    e = new_epoch(store_key, 'n')
    redis.call('HSET', store_key, 'e', e)
    redis.call('EXPIRE', store_key, idle_s)
  end
  return e
end

-- The time text of a history entry "<ms>|<json>".
local function entry_time(entry)
  return string.match(entry, '^([%d.]+)|')
end

-- Drops history entries older than cutoff_ms from the head, remembering the time of the
-- newest one dropped in the meta hash (field b): it fingerprints seq firstSeq - 1.
local function drop_expired(hist_key, cutoff_ms, meta_key)
  local dropped
  while true do
    local head = redis.call('LINDEX', hist_key, 0)
    if not head then break end
    local t = entry_time(head)
    if tonumber(t) > cutoff_ms then break end
    redis.call('LPOP', hist_key)
    dropped = t
  end
  if dropped then redis.call('HSET', meta_key, 'b', dropped) end
end
