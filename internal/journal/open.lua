-- Opens a partition's journal: takes the next fencing epoch, drops entries
-- committed in Kafka (seq <= ARGV[1]), and returns the state with the
-- entries still pending. KEYS: m, x, w, s.
-- Reply: epoch, seq, applied, trimmed, stream time, exists (0/1),
--        next wall timer, next stream timer, then the pending entries as
--        XRANGE returns them.
local m, x = KEYS[1], KEYS[2]
local S = tonumber(ARGV[1])
local exists = redis.call('EXISTS', m)
local e = redis.call('HINCRBY', m, 'e', 1)
local cur = redis.call('HMGET', m, 's', 'a', 'c', 'st')
local c = tonumber(cur[3] or '0')
if S > c then
  redis.call('XTRIM', x, 'MINID', (S + 1) .. '-0')
  redis.call('HSET', m, 'c', S)
end
local function first(k)
  local r = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
  if #r == 0 then return '0' end
  return r[2]
end
local pend = redis.call('XRANGE', x, (S + 1) .. '-0', '+')
return { e, cur[1] or '0', cur[2] or '-1', c, cur[4] or '0', exists, first(KEYS[3]), first(KEYS[4]), pend }
