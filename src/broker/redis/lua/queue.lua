-- Seed-compatible client queues. One script, three operations, so each is atomic.
-- KEYS: 1 queue list
-- ARGV: 1 op (push | pop | return | clear), 2 json (push/return), 3 size, 4 ttl s,
--       5 notify channel, 6 publish command
-- push/return: notify "r" (ready); clear: notify "d" (disconnected); pop: the oldest live json or false.
local q, op = KEYS[1], ARGV[1]
if op == 'clear' then
  redis.call('DEL', q)
  redis.call(ARGV[6], ARGV[5], 'd')
  return 1
end
local size, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
if op == 'pop' then
  local cutoff = now - ttl * 1000
  while true do
    local item = redis.call('LPOP', q)
    if not item then return false end
    local sep = string.find(item, '|', 1, true)
    if tonumber(string.sub(item, 1, sep - 1)) > cutoff then return string.sub(item, sep + 1) end
  end
end
if op == 'push' then
  redis.call('RPUSH', q, ms_text(now) .. '|' .. ARGV[2])
  redis.call('LTRIM', q, -size, -1)
else
  redis.call('LPUSH', q, ms_text(now) .. '|' .. ARGV[2])
  redis.call('LTRIM', q, 0, size - 1)
end
redis.call('EXPIRE', q, ttl)
redis.call(ARGV[6], ARGV[5], 'r')
return 1
