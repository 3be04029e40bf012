-- One journaled step of a features task (see processor.go): the changed
-- profiles' states and one receipt (the outputs) per input offset that had
-- any, atomically with the journal entry. The journal library is prepended.
--
-- KEYS: the journal's m, x, w, s; the partition's state hash.
-- ARGV: the step header (10), then
--   nset, (profile, state) * nset,
--   nreceipts, (offset, outputs) * nreceipts
local i = J.begin(1, 1)
local key = KEYS[5]
local A = ARGV
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
local nr = tonumber(A[i]); i = i + 1
for _ = 1, nr do
  J.receipt(A[i], A[i + 1])
  i = i + 2
end
J.finish()
return 1
