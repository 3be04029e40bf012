#!lua
-- Resolves a chunk of events against the identity graph of one space,
-- atomically, and journals it (internal/journal: the library is prepended
-- to this script). graph.go builds ARGV and decodes the reply; doc.go
-- describes the keys. KEYS: the partition's four journal keys, then the
-- space's counter key; every graph key is KEYS[5]'s prefix plus a suffix,
-- so all of them, and the journal's (same hash tag), hash to one slot.
--
-- ARGV: the journal step header (or '-' and 9 blanks: not journaled), then
--       window, dedup ttl, initial buckets, load factor, space, dedup shards,
--       nlim, (code, limit) * nlim,
--       nev, per event: offset, kind;
--         kind 'Q' (decided before: a dead letter): receipt;
--         kind 'R': msg digest, dedup bucket, seconds into the bucket,
--         new profile id, extra (appended to the receipt), nids,
--         per identifier (priority order): digest, code, "code:value".
-- Reply: one receipt per event (see decode in graph.go).

local journaled = ARGV[1] ~= '-'
local i = 11
if journaled then i = J.begin(1, 1) end
local meta = KEYS[5]
local pre = string.sub(meta, 1, -2)
local A = ARGV
local W = tonumber(A[i])
local ttl = tonumber(A[i + 1])
local ib, il = A[i + 2], A[i + 3]
local space = A[i + 4]
local dshards = tonumber(A[i + 5])
i = i + 6
local nlim = tonumber(A[i]); i = i + 1
local limit, lcodes, lfields = {}, {}, {}
for k = 1, nlim do
  limit[A[i]] = tonumber(A[i + 1]); lcodes[k] = A[i]; lfields[k] = '.c' .. A[i]
  i = i + 2
end
local nev = tonumber(A[i]); i = i + 1
local evs = {}
for e = 1, nev do
  if A[i + 1] == 'Q' then
    evs[e] = { off = A[i], decided = A[i + 2] }
    i = i + 3
  else
    local n = tonumber(A[i + 7])
    evs[e] = { off = A[i], md = A[i + 2], didx = tonumber(A[i + 3]), drel = tonumber(A[i + 4]),
               ext = A[i + 5], extra = A[i + 6], n = n, i0 = i + 8 }
    i = i + 8 + 3 * n
  end
end

local m = redis.call('HMGET', meta, 'n0', 'f', 'l', 's', 'n', 'c', 'np', 'ni')
local n0 = tonumber(m[1]) or tonumber(ib)
local load = tonumber(m[2]) or tonumber(il)
local lvl, sp = tonumber(m[3]) or 0, tonumber(m[4]) or 0
local cnt, ctr = tonumber(m[5]) or 0, tonumber(m[6]) or 0
local np, ni = tonumber(m[7]) or 0, tonumber(m[8]) or 0

-- Redis' Lua cannot unpack more than about 8000 values at once.
local function callMany(cmd, key, list)
  local step = 2000
  for k = 1, #list, step do
    redis.call(cmd, key, unpack(list, k, math.min(k + step - 1, #list)))
  end
end

-- The identifier table: digest -> profile id, spread over buckets by
-- linear hashing so that each bucket stays a small listpack however large
-- the graph grows.
local function hv(d)
  local b1, b2, b3, b4 = string.byte(d, 1, 4)
  return ((b1 * 256 + b2) * 256 + b3) * 256 + b4
end
local function bkey(d)
  local h = hv(d)
  local mm = n0 * 2 ^ lvl
  local b = h % mm
  if b < sp then b = h % (2 * mm) end
  return pre .. 'b' .. string.format('%d', b)
end
local function split()
  local mm = n0 * 2 ^ lvl
  local oldk = pre .. 'b' .. sp
  local all = redis.call('HGETALL', oldk)
  local mv, del = {}, {}
  for k = 1, #all, 2 do
    if hv(all[k]) % (2 * mm) ~= sp then
      mv[#mv + 1] = all[k]; mv[#mv + 1] = all[k + 1]; del[#del + 1] = all[k]
    end
  end
  if #mv > 0 then
    callMany('HSET', pre .. 'b' .. (sp + mm), mv)
    callMany('HDEL', oldk, del)
  end
  sp = sp + 1
  if sp >= mm then lvl = lvl + 1; sp = 0 end
end
-- idc caches, for the duration of this call, the table entries read or
-- written (false for a digest without one). The script is atomic and every
-- change of an entry goes through put or absorb, which update idc (split
-- moves entries between buckets but keeps their values), so a cached entry
-- is the stored one. Events of one session mostly fall into one chunk and
-- look up the same identifiers again.
local idc = {}
local function get(d)
  local x = idc[d]
  if x == nil then
    x = redis.call('HGET', bkey(d), d)
    idc[d] = x
  end
  return x or nil
end
local function put(d, x)
  idc[d] = x
  if redis.call('HSET', bkey(d), d, x) == 1 then
    cnt = cnt + 1
    while cnt > load * (n0 * 2 ^ lvl + sp) do split() end
  end
end

local function pk(x) return pre .. 'p' .. x end
local function counts(x)
  local t = {}
  if nlim == 0 then return t end
  local v = redis.call('HMGET', pk(x), unpack(lfields))
  for k = 1, nlim do t[lcodes[k]] = tonumber(v[k]) or 0 end
  return t
end
-- The digest under which a profile id is kept in the identifier table, so
-- that ids of merged-away profiles still resolve. graph.go computes the same.
local function extDigest(x)
  local hex = string.sub(redis.sha1hex(space .. '\0@:' .. x), 1, 24)
  return (string.gsub(hex, '..', function(cc) return string.char(tonumber(cc, 16)) end))
end

-- absorb moves every identifier, alias and count of profile q into s and
-- deletes q. It returns the merge record.
local function absorb(q, s, via)
  local qk = pk(q)
  local all = redis.call('HGETALL', qk)
  local hs, moved, incs = {}, {}, {}
  for k = 1, #all, 2 do
    local f, v = all[k], all[k + 1]
    if string.find(v, ':', 1, true) then
      hs[#hs + 1] = f; hs[#hs + 1] = v
      if string.sub(v, 1, 2) ~= '@:' then moved[#moved + 1] = v end
    elseif string.sub(f, 1, 2) == '.c' then
      incs[#incs + 1] = f; incs[#incs + 1] = v
    end
  end
  local sk = pk(s)
  callMany('HSET', sk, hs)
  for k = 1, #hs, 2 do
    idc[hs[k]] = s
    redis.call('HSET', bkey(hs[k]), hs[k], s)
  end
  for k = 1, #incs, 2 do redis.call('HINCRBY', sk, incs[k], incs[k + 1]) end
  redis.call('DEL', qk)
  np = np - 1
  local rec = 'M\31' .. q .. '\31' .. s .. '\31' .. via
  if #moved > 0 then rec = rec .. '\31' .. table.concat(moved, '\31') end
  return rec
end

local function resolve(ev)
  local base, n = ev.i0, ev.n
  local prof = {}
  for j = 1, n do prof[j] = get(A[base + 3 * (j - 1)]) end
  local S, list = {}, {}
  local Sc = nil -- limited counts summed over list, computed when needed
  local newc, nnew = {}, 0
  local acc, via, rej = {}, {}, {}
  local function sumS()
    if Sc == nil then
      Sc = {}
      for k = 1, nlim do Sc[lcodes[k]] = 0 end
      for _, q in ipairs(list) do
        for c, v in pairs(counts(q)) do Sc[c] = Sc[c] + v end
      end
    end
  end
  for j = 1, n do
    local x = base + 3 * (j - 1)
    local code, mem = A[x + 1], A[x + 2]
    local q = prof[j]
    if q then
      if S[q] then
        acc[j] = true
      elseif #list == 0 and nnew == 0 then
        -- The highest-priority identifier with a profile: the event goes
        -- there whatever that profile holds.
        S[q] = true; list[1] = q; via[q] = code; acc[j] = true; Sc = nil
      else
        sumS()
        local cq = counts(q)
        local bad
        for k = 1, nlim do
          local c = lcodes[k]
          local have = Sc[c] + (newc[c] or 0) + cq[c]
          if cq[c] > 0 and have > limit[c] then
            bad = 'X\31' .. mem .. '\31' .. c .. '\31' .. have .. '\31' .. limit[c] .. '\31' .. q
            break
          end
        end
        if bad then
          rej[#rej + 1] = bad
        else
          S[q] = true; list[#list + 1] = q; via[q] = code; acc[j] = true
          for k = 1, nlim do local c = lcodes[k]; Sc[c] = Sc[c] + cq[c] end
        end
      end
    else
      -- A new identifier: within its type's limit, and within the cap on
      -- all identifiers of a profile (code '*', Rules.MaxIdentifiers).
      local lim, tot = limit[code], limit['*']
      local bad
      if lim or tot then sumS() end
      if lim then
        local have = Sc[code] + (newc[code] or 0) + 1
        if have > lim then bad = 'L\31' .. mem .. '\31' .. code .. '\31' .. have .. '\31' .. lim end
      end
      if not bad and tot then
        local have = Sc['*'] + (newc['*'] or 0) + 1
        if have > tot then bad = 'L\31' .. mem .. '\31*\31' .. have .. '\31' .. tot end
      end
      if bad then
        rej[#rej + 1] = bad
      else
        if lim then newc[code] = (newc[code] or 0) + 1 end
        if tot then newc['*'] = (newc['*'] or 0) + 1 end
        nnew = nnew + 1; acc[j] = true
      end
    end
  end

  local surv
  local recs = {}
  if #list == 0 then
    ctr = ctr + 1
    local x, xd = ev.ext, extDigest(ev.ext)
    local k = 0
    while get(xd) do -- two profile ids collide: rare, resolved deterministically
      k = k + 1
      x = ev.ext .. '-' .. k
      xd = extDigest(x)
    end
    redis.call('HSET', pk(x), '.n', ctr, xd, '@:' .. x)
    put(xd, x)
    surv = x
    np = np + 1
  elseif #list == 1 then
    surv = list[1]
  else
    -- The oldest profile (lowest creation number) survives; the others
    -- are absorbed oldest first, so the merges come out in a fixed order.
    local age = {}
    for _, q in ipairs(list) do age[q] = tonumber(redis.call('HGET', pk(q), '.n')) end
    table.sort(list, function(x, y) return age[x] < age[y] end)
    surv = list[1]
    for k = 2, #list do recs[#recs + 1] = absorb(list[k], surv, via[list[k]]) end
  end

  local hs, inc = {}, {}
  for j = 1, n do
    if acc[j] and not prof[j] then
      local x = base + 3 * (j - 1)
      hs[#hs + 1] = A[x]; hs[#hs + 1] = A[x + 2]
      inc[A[x + 1]] = (inc[A[x + 1]] or 0) + 1
      inc['*'] = (inc['*'] or 0) + 1 -- all identifiers, for the size cap
    end
  end
  if #hs > 0 then
    local sk = pk(surv)
    callMany('HSET', sk, hs)
    for k = 1, #hs, 2 do put(hs[k], surv) end
    for c, v in pairs(inc) do redis.call('HINCRBY', sk, '.c' .. c, v) end
    ni = ni + #hs / 2
  end

  local blob = 'P' .. surv
  for _, r in ipairs(recs) do blob = blob .. '\30' .. r end
  for _, r in ipairs(rej) do blob = blob .. '\30' .. r end
  return blob
end

local out, expiring = {}, {}
for e = 1, nev do
  local ev = evs[e]
  local blob
  if ev.decided then
    -- Decided before the graph was asked (undecodable, invalid, no usable
    -- identifier): journaled as it is, and no dedup mark is left, so a
    -- replay from the dead-letter topic after a fix is not a duplicate.
    blob = ev.decided
  else
    local dup = false
    if ev.md ~= '' then
      -- Own bucket first: a copy carries the original's timestamp, so it
      -- almost always lands here and costs one call. Otherwise the previous
      -- bucket: was the id seen at most W earlier?
      -- The window's ids are spread over dshards small hashes by digest.
      local b1, b2, b3 = string.byte(ev.md, 1, 3)
      local shard = string.format(':%d', ((b1 * 256 + b2) * 256 + b3) % dshards)
      local dk = pre .. 'd' .. string.format('%d', ev.didx) .. shard
      if redis.call('HSETNX', dk, ev.md, ev.drel) == 0 then
        dup = true
      else
        local v = redis.call('HGET', pre .. 'd' .. string.format('%d', ev.didx - 1) .. shard, ev.md)
        if v and ev.drel <= tonumber(v) then dup = true end
        if not expiring[dk] then
          redis.call('EXPIRE', dk, ttl, 'NX')
          expiring[dk] = true
        end
      end
    end
    if dup then
      blob = 'D'
    else
      blob = resolve(ev)
      if ev.extra ~= '' then blob = blob .. '\29' .. ev.extra end
    end
  end
  out[e] = blob
  if journaled then J.receipt(ev.off, blob) end
end

redis.call('HSET', meta, 'n0', n0, 'f', load, 'l', lvl, 's', sp, 'n', cnt, 'c', ctr, 'np', np, 'ni', ni)
if journaled then J.finish() end
return out
