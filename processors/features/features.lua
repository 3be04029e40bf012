-- One journaled step of a features task (see processor.go): the changed
-- profiles' states, their window-expiry timers, and one receipt (the
-- outputs) per input offset that had any, atomically with the journal
-- entry. The journal library is prepended.
--
-- KEYS: the journal's m, x, w, s; the partition's state hash.
-- ARGV: the step header (10), then
--   nfired, key * nfired                 timers that fired (a timer step)
--   nset, (profile, state) * nset
--   ntimers, (profile, due ms) * ntimers  due 0 removes the profile's timer
--   nreceipts, (offset, outputs) * nreceipts
local i = J.begin(1, 1)
local key = KEYS[5]
local A = ARGV
local nf = tonumber(A[i]); i = i + 1
for _ = 1, nf do
  J.deltimer(A[i])
  i = i + 1
end
local ns = tonumber(A[i]); i = i + 1
-- HSET many fields per call, in slices that stay well inside Lua's stack.
local k = 0
while k < ns do
  local n = math.min(ns - k, 200)
  local args = {}
  for x = 1, n do
    args[2 * x - 1] = A[i]
    args[2 * x] = A[i + 1]
    i = i + 2
  end
  redis.call('HSET', key, unpack(args))
  k = k + n
end
local nt = tonumber(A[i]); i = i + 1
for _ = 1, nt do
  if A[i + 1] == '0' then
    J.deltimer(A[i])
  else
    J.settimer('w', A[i], A[i + 1])
  end
  i = i + 2
end
local nr = tonumber(A[i]); i = i + 1
for _ = 1, nr do
  J.receipt(A[i], A[i + 1])
  i = i + 2
end
J.finish()
return 1
