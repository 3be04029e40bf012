-- The journal library (internal/journal). Any script that writes a task's
-- effects includes it (journal.go prepends it) and calls, in this order:
--
--   local a = J.begin(ki, ai)   -- before any write: fence and chain checks
--   ...the script's own writes...
--   J.receipt(offset, blob)      -- Replayer scripts: one per input offset
--   J.finish()                   -- the journal entry, atomically with the writes
--
-- KEYS[ki..ki+3] are the partition's journal keys (m, x, w, s) and
-- ARGV[ai..ai+9] the step header (see journal.go, stepHeader). J.begin
-- returns the index of the script's first own argument. Errors raised by
-- J.begin leave the store untouched: Redis does not roll a script back, so
-- a script must do every check before its first write.
local J = {}

function J.begin(ki, ai)
  J.m, J.x, J.w, J.s = KEYS[ki], KEYS[ki + 1], KEYS[ki + 2], KEYS[ki + 3]
  local epoch, prev, seq = ARGV[ai], ARGV[ai + 1], ARGV[ai + 2]
  J.seq, J.kind, J.first, J.last = seq, ARGV[ai + 3], ARGV[ai + 4], ARGV[ai + 5]
  J.cseq, J.st = tonumber(ARGV[ai + 7]), ARGV[ai + 8]
  local cur = redis.call('HMGET', J.m, 'e', 's', 'a', 'c')
  if cur[1] ~= epoch then
    error('FENCED: partition epoch is ' .. tostring(cur[1]) .. ', this writer has ' .. epoch)
  end
  if (cur[2] or '0') ~= prev then
    error('DIVERGED: the journal is at step ' .. tostring(cur[2] or '0') .. ', this writer expected ' .. prev)
  end
  if tonumber(seq) <= tonumber(prev) then
    error('DIVERGED: step ' .. seq .. ' does not follow ' .. prev)
  end
  J.applied = tonumber(cur[3] or '-1')
  if J.kind ~= 't' and tonumber(J.first) <= J.applied then
    error('DIVERGED: offset ' .. J.first .. ' is at or below the applied offset ' .. J.applied)
  end
  J.c = tonumber(cur[4] or '0')
  J.fields = { 'k', J.kind, 'f', J.first, 'l', J.last, 'p', ARGV[ai + 6] }
  if ARGV[ai + 9] ~= '' then
    J.fields[#J.fields + 1] = 'o'
    J.fields[#J.fields + 1] = ARGV[ai + 9]
  end
  return ai + 10
end

-- Timers of a script that journals its own step: kind 'w' (wall clock) or
-- 's' (stream time); a key lives in one of the two sets.
function J.settimer(kind, key, due)
  if kind == 'w' then
    redis.call('ZREM', J.s, key)
    redis.call('ZADD', J.w, due, key)
  else
    redis.call('ZREM', J.w, key)
    redis.call('ZADD', J.s, due, key)
  end
end

function J.deltimer(key)
  redis.call('ZREM', J.w, key)
  redis.call('ZREM', J.s, key)
end

function J.receipt(offset, blob)
  J.fields[#J.fields + 1] = offset
  J.fields[#J.fields + 1] = blob
end

function J.finish()
  if J.cseq > J.c then
    redis.call('XTRIM', J.x, 'MINID', (J.cseq + 1) .. '-0')
    J.c = J.cseq
  end
  redis.call('XADD', J.x, J.seq .. '-0', unpack(J.fields))
  if J.kind == 't' then
    redis.call('HSET', J.m, 's', J.seq, 'c', J.c, 'st', J.st)
  else
    redis.call('HSET', J.m, 's', J.seq, 'a', J.last, 'c', J.c, 'st', J.st)
  end
end
