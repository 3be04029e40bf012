#!lua
-- Resolves a chunk of events against the identity graph of one space,
-- atomically. graph.go builds ARGV and decodes the reply; doc.go describes
-- the keys. Every key is KEYS[1]'s prefix plus a suffix, so all of them
-- hash to KEYS[1]'s slot (the space's hash tag) and Redis Cluster routes
-- the whole script to one shard.
--
-- ARGV: window, dedup ttl, initial buckets, load factor, space,
--       nlim, (code, limit) * nlim,
--       nev, per event: partition, offset, msg digest, dedup bucket,
--       seconds into the bucket, new profile id, nids,
--       per identifier (priority order): digest, code, "code:value".
-- Reply: one result string per event (see decodeResult in graph.go).

local meta = KEYS[1]
local pre = string.sub(meta, 1, -2)
local A = ARGV
local W = tonumber(A[1])
local ttl = tonumber(A[2])
local space = A[5]

local i = 6
local nlim = tonumber(A[i]); i = i + 1
local limit, lcodes, lfields = {}, {}, {}
for k = 1, nlim do
  limit[A[i]] = tonumber(A[i + 1]); lcodes[k] = A[i]; lfields[k] = '.c' .. A[i]
  i = i + 2
end
local nev = tonumber(A[i]); i = i + 1
local evs = {}
for e = 1, nev do
  local n = tonumber(A[i + 6])
  evs[e] = { part = A[i], off = A[i + 1], md = A[i + 2], didx = tonumber(A[i + 3]),
             drel = tonumber(A[i + 4]), ext = A[i + 5], n = n, i0 = i + 7 }
  i = i + 7 + 3 * n
end

-- Replays first, before any write: an event at or below its partition's
-- applied marker was applied by an earlier call whose Kafka transaction did
-- not commit; return what that call returned.
local marker = {}
local function applied(part)
  local v = marker[part]
  if v == nil then
    v = tonumber(redis.call('HGET', pre .. 'o', part) or '-1')
    marker[part] = v
  end
  return v
end
local out = {}
local entry = {}
for e = 1, nev do
  local ev = evs[e]
  if tonumber(ev.off) <= applied(ev.part) then
    local map = entry[ev.part]
    local blob = map and map[ev.off]
    if not blob then
      local r = redis.call('XRANGE', pre .. 'r' .. ev.part, ev.off .. '-0', '+', 'COUNT', 1)
      if #r > 0 then
        map = {}
        local f = r[1][2]
        for k = 1, #f, 2 do map[f[k]] = f[k + 1] end
        entry[ev.part] = map
        blob = map[ev.off]
      end
    end
    if not blob then
      return redis.error_reply('identity: partition ' .. ev.part .. ' offset ' .. ev.off ..
        ' was applied (applied up to ' .. marker[ev.part] .. ') but its result is no longer kept,' ..
        ' so it was committed: a committed offset must not be processed again;' ..
        ' to reprocess a partition from an earlier offset, rebuild the identity graph')
    end
    out[e] = blob
  end
end

local m = redis.call('HMGET', meta, 'n0', 'f', 'l', 's', 'n', 'c', 'np', 'ni')
local n0 = tonumber(m[1]) or tonumber(A[3])
local load = tonumber(m[2]) or tonumber(A[4])
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
      local lim = limit[code]
      if lim then
        sumS()
        local have = Sc[code] + (newc[code] or 0) + 1
        if have > lim then
          rej[#rej + 1] = 'L\31' .. mem .. '\31' .. code .. '\31' .. have .. '\31' .. lim
        else
          newc[code] = (newc[code] or 0) + 1; nnew = nnew + 1; acc[j] = true
        end
      else
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

local res, parts, last, expiring = {}, {}, {}, {}
for e = 1, nev do
  if not out[e] then
    local ev = evs[e]
    local dup = false
    if ev.md ~= '' then
      -- Own bucket first: a copy carries the original's timestamp, so it
      -- almost always lands here and costs one call. Otherwise the previous
      -- bucket: was the id seen at most W earlier?
      local dk = pre .. 'd' .. string.format('%d', ev.didx)
      if redis.call('HSETNX', dk, ev.md, ev.drel) == 0 then
        dup = true
      else
        local v = redis.call('HGET', pre .. 'd' .. string.format('%d', ev.didx - 1), ev.md)
        if v and ev.drel <= tonumber(v) then dup = true end
        if not expiring[dk] then
          redis.call('EXPIRE', dk, ttl, 'NX')
          expiring[dk] = true
        end
      end
    end
    local blob
    if dup then
      blob = 'D'
    elseif ev.n == 0 then
      blob = 'N'
    else
      blob = resolve(ev)
    end
    out[e] = blob
    local r = res[ev.part]
    if not r then
      r = {}
      res[ev.part] = r
      parts[#parts + 1] = ev.part
    end
    r[#r + 1] = ev.off
    r[#r + 1] = blob
    last[ev.part] = ev.off
  end
end

if #parts > 0 then
  redis.call('HSET', meta, 'n0', n0, 'f', load, 'l', lvl, 's', sp, 'n', cnt, 'c', ctr, 'np', np, 'ni', ni)
  for _, p in ipairs(parts) do
    -- The stream entry's id is the last offset it holds, so that trimming
    -- below a committed offset never drops a result that is still needed.
    redis.call('XADD', pre .. 'r' .. p, last[p] .. '-1', unpack(res[p]))
    redis.call('HSET', pre .. 'o', p, last[p])
  end
end
return out
