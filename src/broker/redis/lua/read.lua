-- Reads a channel from a cursor position: its head, whether the cursor fell into a gap, and
-- up to max retained messages after the start. Mirrors planRead() in src/broker/broker.ts
-- (meta field pe: the epoch before an audit moved the channel, see audit.lua);
-- the fingerprint comparison of the lost-writes rule is done by the caller, from the times
-- returned here.
-- KEYS: 1 meta hash, 2 history list, 3 slot store hash
-- ARGV: 1 mode (now | earliest | pos), 2 cursor epoch, 3 cursor seq, 4 max,
--       5 history ttl s, 6 idle s, 7 conflated (0|1), 8 want the cursor message's time (0|1)
-- Returns {epoch, lastSeq, gap (0|1), afterSeq, headTime, cursorTime, entry...} with entries
-- "<ms>|<json>"; a time is '' when the store does not know it.
local meta, hist, store = KEYS[1], KEYS[2], KEYS[3]
local mode, max = ARGV[1], tonumber(ARGV[4])

local epoch = redis.call('HGET', meta, 'e')
local last = 0
if epoch then
  last = tonumber(redis.call('HGET', meta, 's') or '0')
else
  epoch = store_epoch(store, tonumber(ARGV[6]))
end

drop_expired(hist, now_ms() - tonumber(ARGV[5]) * 1000, meta)
local first = last - redis.call('LLEN', hist) + 1

local after, gap
local cursor_time = ''
if mode == 'now' then
  after, gap = last, 0
elseif mode == 'earliest' then
  after, gap = first - 1, 0
else
  local cseq = tonumber(ARGV[3])
  -- A cursor of the epoch an audit moved the channel away from keeps its place, with a gap.
  local renumbered = ARGV[2] ~= epoch
  if renumbered and ARGV[2] ~= redis.call('HGET', meta, 'pe') then
    after, gap = first - 1, 1
  elseif cseq > last then
    -- The store holds fewer messages than the cursor saw: acknowledged writes were lost.
    after, gap = last, 1
  elseif cseq >= first - 1 then
    after, gap = cseq, renumbered and 1 or 0
    if ARGV[8] == '1' and cseq > 0 then
      if cseq == last then
        cursor_time = redis.call('HGET', meta, 't') or ''
      elseif cseq == first - 1 then
        cursor_time = redis.call('HGET', meta, 'b') or ''
      else
        cursor_time = entry_time(redis.call('LINDEX', hist, cseq - first)) or ''
      end
    end
  else
    after = first - 1
    gap = (ARGV[7] == '1' and not renumbered) and 0 or 1
  end
end

local head_time = ''
if last > 0 then head_time = redis.call('HGET', meta, 't') or '' end
local out = {epoch, last, gap, after, head_time, cursor_time}
if max > 0 and after < last then
  local start = after + 1 - first
  local items = redis.call('LRANGE', hist, start, start + max - 1)
  for i = 1, #items do out[#out + 1] = items[i] end
end
return out
