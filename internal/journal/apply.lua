-- A generic journaled step: the task's single-key writes, its timers and
-- the journal entry, atomically. KEYS: m, x, w, s, then the written keys.
-- ARGV: the step header (10), then
--   nfired, (kind, key) * nfired,
--   nset, (kind, key, due ms) * nset,
--   ndel, key * ndel,
--   nwrites, per write: nargs, command, key index (into KEYS), args...
local i = J.begin(1, 1)
local A = ARGV
local nf = tonumber(A[i]); i = i + 1
local fired = {}
for k = 1, nf do
  fired[k] = { A[i], A[i + 1] }
  i = i + 2
end
local ns = tonumber(A[i]); i = i + 1
local sets = {}
for k = 1, ns do
  sets[k] = { A[i], A[i + 1], A[i + 2] }
  i = i + 3
end
local nd = tonumber(A[i]); i = i + 1
local dels = {}
for k = 1, nd do
  dels[k] = A[i]
  i = i + 1
end
local nw = tonumber(A[i]); i = i + 1
local writes = {}
for k = 1, nw do
  local n = tonumber(A[i])
  local cmd = { A[i + 1], KEYS[tonumber(A[i + 2])] }
  for x = 1, n do cmd[#cmd + 1] = A[i + 2 + x] end
  writes[k] = cmd
  i = i + 3 + n
end

for _, w in ipairs(writes) do redis.call(unpack(w)) end
local zk = { w = J.w, s = J.s }
for _, f in ipairs(fired) do redis.call('ZREM', zk[f[1]], f[2]) end
for _, d in ipairs(dels) do
  redis.call('ZREM', J.w, d)
  redis.call('ZREM', J.s, d)
end
for _, t in ipairs(sets) do
  -- A key lives in one of the two sets: moving it to the other clock
  -- removes it from the first.
  if t[1] == 'w' then redis.call('ZREM', J.s, t[2]) else redis.call('ZREM', J.w, t[2]) end
  redis.call('ZADD', zk[t[1]], t[3], t[2])
end
J.finish()
return 1
