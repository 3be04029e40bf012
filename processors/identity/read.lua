#!lua flags=no-writes
-- Reads the profile of one digest (an identifier's, or a profile id's) in
-- one atomic step, so a bucket split or a merge running at the same time
-- cannot make the read miss. ARGV: mode ('l': the profile id only, 'p':
-- the profile id and its "code:value" identifiers), digest.

local meta = KEYS[1]
local pre = string.sub(meta, 1, -2)
local m = redis.call('HMGET', meta, 'n0', 'l', 's')
if not m[1] then return false end
local n0, lvl, sp = tonumber(m[1]), tonumber(m[2]) or 0, tonumber(m[3]) or 0
local d = ARGV[2]
local b1, b2, b3, b4 = string.byte(d, 1, 4)
local h = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
local mm = n0 * 2 ^ lvl
local b = h % mm
if b < sp then b = h % (2 * mm) end
local x = redis.call('HGET', pre .. 'b' .. b, d)
if not x or ARGV[1] == 'l' then return x end
local all = redis.call('HGETALL', pre .. 'p' .. x)
local out = { x }
for k = 1, #all, 2 do
  local v = all[k + 1]
  if string.find(v, ':', 1, true) and string.sub(v, 1, 2) ~= '@:' then
    out[#out + 1] = v
  end
end
return out
