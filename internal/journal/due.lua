#!lua flags=no-writes
-- Due timers of a partition. KEYS: w, s. ARGV: now ms, stream time ms,
-- limit. Reply: wall members+scores due, stream members+scores due, next
-- wall score, next stream score (the first not returned; '0' for none).
local lim = tonumber(ARGV[3])
local function due(k, t)
  local r = redis.call('ZRANGE', k, 0, lim, 'WITHSCORES')
  local out, nxt = {}, '0'
  for i = 1, #r, 2 do
    if tonumber(r[i + 1]) <= t and #out < 2 * lim then
      out[#out + 1] = r[i]; out[#out + 1] = r[i + 1]
    else
      nxt = r[i + 1]
      break
    end
  end
  return out, nxt
end
local wd, wn = due(KEYS[1], tonumber(ARGV[1]))
local sd, sn = due(KEYS[2], tonumber(ARGV[2]))
return { wd, sd, wn, sn }
