#!lua
-- Resolves a chunk of events against the identity graph of one space,
-- atomically, and journals it (internal/journal: the library is prepended
-- to this script). graph.go builds ARGV and decodes the reply; doc.go
-- describes the keys. KEYS: the partition's four journal keys, then the
-- space's counter key; every graph key is KEYS[5]'s prefix plus a suffix,
-- so all of them, and the journal's (same hash tag), hash to one slot.
--
-- ARGV: the journal step header (or '-' and 9 blanks: not journaled), then
--       dedup ttl, initial buckets, load factor, space, dedup ids per key,
--       dedup shards of the legacy layout,
--       nlim, (code, limit) * nlim,
--       ngroups, the chunk's message ids by dedup bucket, in bucket order:
--         per group: bucket, count, then per id (by digest, then offset):
--         msg digest, and "rel:pos": the seconds into the bucket and the
--         event's position in the chunk (1-based), in one argument because
--         every argument costs Redis time, and stored as they are as the
--         id's value;
--       nev, per event: offset, nids;
--         nids 0 (decided before: a dead letter): receipt;
--         otherwise: what only the slow path reads, in one string: the
--         new profile id's digest (12 bytes), then extra (appended to the
--         receipt), the new profile id, and per identifier "code",
--         "code:value", all joined by \31; then nids digests, in priority
--         order.
-- Arguments cost Redis time each (an event whose identifiers are all
-- known needs only the digests), hence the one string.
-- Reply: one receipt per event (see decode in graph.go).
--
-- Every event costs Redis time on the one thread of the graph's shard, so
-- the common paths are kept lean: an event whose identifiers are all known
-- and in one profile takes a lookup per identifier (cached for the chunk)
-- and no write; dedup reads and writes each dedup key once per chunk, for
-- all of the chunk's ids in it, and a bucket has as few keys as its
-- volume allows.

local journaled = ARGV[1] ~= '-'
local i = 11
if journaled then i = J.begin(1, 1) end
local meta = KEYS[5]
local pre = string.sub(meta, 1, -2)
local A = ARGV
local ttl = A[i]
local ib, il = A[i + 1], A[i + 2]
local space = A[i + 3]
local dkf, dls = tonumber(A[i + 4]), tonumber(A[i + 5])
i = i + 6
local nlim = tonumber(A[i]); i = i + 1
local limit, lcodes, lfields = {}, {}, {}
for k = 1, nlim do
  limit[A[i]] = tonumber(A[i + 1]); lcodes[k] = A[i]; lfields[k] = '.c' .. A[i]
  i = i + 2
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

-- fields cuts s at every \31.
local function fields(s)
  local t, p = {}, 1
  while true do
    local q = string.find(s, '\31', p, true)
    if not q then
      t[#t + 1] = string.sub(s, p)
      return t
    end
    t[#t + 1] = string.sub(s, p, q - 1)
    p = q + 1
  end
end

-- resolve links one event's identifiers: their digests are A[base..] (n of
-- them), and slow is the rest (see ARGV). It returns the receipt.
local function resolve(base, n, slow)
  -- The common case: every identifier known, all in one profile. Nothing
  -- changes, and the general path below would say the same.
  local q1 = get(A[base])
  if q1 then
    local j = 2
    while j <= n and get(A[base + j - 1]) == q1 do j = j + 1 end
    if j > n then return 'P' .. q1 end
  end
  local F = fields(string.sub(slow, 13))
  local ext = F[2]
  local prof = {}
  for j = 1, n do prof[j] = get(A[base + j - 1]) end
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
    local code, mem = F[2 * j + 1], F[2 * j + 2]
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

  local surv, xd
  local recs = {}
  if #list == 0 then
    ctr = ctr + 1
    local x = ext
    xd = string.sub(slow, 1, 12)
    local k = 0
    while get(xd) do -- two profile ids collide: rare, resolved deterministically
      k = k + 1
      x = ext .. '-' .. k
      xd = extDigest(x)
    end
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

  -- One HSET writes a new profile, its new identifiers and the counts
  -- known here: all of a new profile's, and those of the limited types,
  -- whose sum over the linked profiles Sc holds (absorb has moved them into
  -- surv). The other counts are incremented.
  local hs, inc, nnid = {}, {}, 0
  if xd then hs[1] = '.n'; hs[2] = ctr; hs[3] = xd; hs[4] = '@:' .. surv end
  local from = #hs + 1
  for j = 1, n do
    if acc[j] and not prof[j] then
      local code = F[2 * j + 1]
      hs[#hs + 1] = A[base + j - 1]; hs[#hs + 1] = F[2 * j + 2]
      inc[code] = (inc[code] or 0) + 1
      inc['*'] = (inc['*'] or 0) + 1 -- all identifiers, for the size cap
      nnid = nnid + 1
    end
  end
  local upto = #hs
  local incr = {}
  for c, v in pairs(inc) do
    local have = (xd and 0) or (Sc and Sc[c])
    if have then
      hs[#hs + 1] = '.c' .. c; hs[#hs + 1] = have + v
    else
      incr[c] = v
    end
  end
  if #hs > 0 then
    local sk = pk(surv)
    callMany('HSET', sk, hs)
    for k = from, upto, 2 do put(hs[k], surv) end
    for c, v in pairs(incr) do redis.call('HINCRBY', sk, '.c' .. c, v) end
    ni = ni + nnid
  end

  local blob = 'P' .. surv
  for _, r in ipairs(recs) do blob = blob .. '\30' .. r end
  for _, r in ipairs(rej) do blob = blob .. '\30' .. r end
  return blob
end

-- Dedup keys. A bucket (event time / window) spreads its message ids over
-- keys h<N>:<start> by linear hashing on the top bits of h, the first 24
-- bits of an id's digest, so that a key holds about dkf to 2 * dkf ids
-- however many the bucket has, and a small bucket has few keys (each key a
-- chunk touches costs Redis calls). At level l with split pointer s the
-- bucket has 2^l + s keys: an id whose top l bits are below s is in a key
-- that was split and takes l + 1 bits. A key is named by its first h (its
-- bits padded to 24), so a split leaves the lower half of its ids in place
-- and moves the upper half to a new key. The ids come sorted by digest, so
-- each key's ids are one run of them. The bucket's state g<N> (l, s, n:
-- ids, x: expiry) and all of its keys expire at the same instant, 3
-- windows after the bucket's first write; every key is created with its
-- expiry, so none can lack one.
local HB = 16777216 -- 2^24
-- h is computed inline where it runs per id: a Lua function call costs
-- Redis about as much as the rest of an id's dedup logic.
local byte = string.byte
local function fmt(n) return string.format('%d', n) end

-- The chunk's ids of one bucket: digest, its h, and "rel:pos"; reused.
local mds, hs24, rps, prv, leg, wr = {}, {}, {}, {}, {}, {}
local NONE = {}

-- Buckets by their index; w: the ids this call wrote into the bucket, by
-- the position of the writer. legacy: the key prefix of the fixed layout
-- (d<N>:<h mod dls>, stop 17-19), read while that bucket's bitmap e<N>
-- lives, so that an upgrade forgets no id.
local buckets, touched = {}, {}
local function bucket(idx)
  local b = buckets[idx]
  if not b then
    local g = pre .. 'g' .. idx
    local st = redis.call('HMGET', g, 'l', 's', 'n', 'x')
    b = { g = g, keys = pre .. 'h' .. idx .. ':', w = {}, added = 0,
          l = tonumber(st[1]), s = tonumber(st[2]), n = tonumber(st[3]), x = st[4] }
    if dls > 0 and redis.call('EXISTS', pre .. 'e' .. idx) == 1 then b.legacy = pre .. 'd' .. idx .. ':' end
    buckets[idx] = b
  end
  return b
end

-- The key of h in bucket b: its first h, and the first h of the next key.
local function keyOf(b, h)
  local w = HB / 2 ^ b.l
  local a = math.floor(h / w)
  if a < b.s then
    w = w / 2
    a = math.floor(h / w)
  end
  return a * w, (a + 1) * w
end

-- Written into every dedup key when it is created: a value longer than
-- hash-max-listpack-value (64) makes Redis keep the key as a hash table
-- from the start. A listpack is scanned field by field, and dedup keys
-- grow to hash-max-listpack-entries (512 by default) before Redis converts
-- them: scanning them was a quarter of the script's time.
local SENTINEL = 'a value over 64 bytes keeps this key a hash table, not a listpack'

-- addKey creates a dedup key with its first fields, kv[3..n] (kv[1] and
-- kv[2] take the sentinel), and its bucket's expiry.
local function addKey(b, key, kv, n)
  kv[1], kv[2] = '~', SENTINEL
  for k = 1, n, 2000 do redis.call('HSET', key, unpack(kv, k, math.min(k + 1999, n))) end
  redis.call('PEXPIREAT', key, b.x)
end

-- run finds the key of id k's h in bucket b: its name, and the last of
-- ids k..c in it (they are sorted by h).
local function run(b, k, c)
  local st, nx = keyOf(b, hs24[k])
  local e = k
  while e < c and hs24[e + 1] < nx do e = e + 1 end
  return b.keys .. fmt(st), e
end

-- create starts bucket b with the layout its predecessor pb has reached,
-- and at least 16 keys (level 4): traffic changes little from one window
-- to the next, and a split moves ids (HGETALL, HSET, HDEL: about 8k
-- instructions of Redis per id moved, measured with callgrind, more than
-- an event's share of 16 keys costs a chunk). Keys come into being with
-- their first id, so a large layout costs nothing until it fills.
local MINL = 4
local function create(b, pb)
  local t = redis.call('TIME')
  b.x = fmt((tonumber(t[1]) + tonumber(ttl)) * 1000 + math.floor(tonumber(t[2]) / 1000))
  b.l, b.s, b.n = pb.l or MINL, pb.s or 0, 0
  if b.l < MINL then b.l, b.s = MINL, 0 end
  redis.call('HSET', b.g, 'l', b.l, 's', b.s, 'n', 0, 'x', b.x)
  redis.call('PEXPIREAT', b.g, b.x)
end

-- split moves the upper half of key s (at level l) to a new key (none
-- if that half is empty: a key exists once it holds an id).
local function split(b)
  local w = HB / 2 ^ b.l
  local from = b.s * w
  local mid = from + w / 2
  local src = b.keys .. fmt(from)
  local all = redis.call('HGETALL', src)
  local mv, dl = { false, false }, {}
  for k = 1, #all, 2 do
    local f = all[k]
    local b1, b2, b3 = byte(f, 1, 3)
    if f ~= '~' and (b1 * 256 + b2) * 256 + b3 >= mid then
      mv[#mv + 1] = f; mv[#mv + 1] = all[k + 1]; dl[#dl + 1] = f
    end
  end
  if #dl > 0 then
    addKey(b, b.keys .. fmt(mid), mv, #mv)
    callMany('HDEL', src, dl)
  end
  b.s = b.s + 1
  if b.s == 2 ^ b.l then b.l, b.s = b.l + 1, 0 end
end

-- lookLegacy adds the values of ids 1..c in bucket b's keys of the fixed
-- layout into res (whose entries 1..c are set).
local function lookLegacy(b, c, res)
  local by, order = {}, {}
  for j = 1, c do
    local s = hs24[j] % dls
    local t = by[s]
    if not t then
      t = {}; by[s] = t; order[#order + 1] = s
    end
    t[#t + 1] = j
  end
  for _, s in ipairs(order) do
    local t, f = by[s], {}
    for q = 1, #t do f[q] = mds[t[q]] end
    local v = redis.call('HMGET', b.legacy .. s, unpack(f))
    for q = 1, #t do res[t[q]] = res[t[q]] or v[q] end
  end
end
-- look reads the values of ids 1..c in bucket b into res (false: not
-- there): one HMGET per key, and the legacy keys.
local function look(b, c, res)
  for j = 1, c do res[j] = false end
  local k = 1
  while b.l and k <= c do
    local key, e = run(b, k, c)
    local v = redis.call('HMGET', key, unpack(mds, k, e))
    for j = k, e do res[j] = v[j - k + 1] end
    k = e + 1
  end
  if b.legacy then lookLegacy(b, c, res) end
end

-- num reads a count: most are one digit, and tonumber costs a string
-- parse (about a microsecond) per call.
local function num(s)
  if #s == 1 then return string.byte(s) - 48 end
  return tonumber(s)
end

-- part reads the seconds (n = 1) or the position (n = 2) of a "rel:pos"
-- argument or dedup value (a value written before positions were kept is
-- the seconds alone). Only duplicates and ids seen in the previous bucket
-- need it, so the common path parses no number.
local function part(rp, n)
  local c = string.find(rp, ':', 1, true)
  if not c then return tonumber(rp) end
  if n == 1 then return tonumber(string.sub(rp, 1, c - 1)) end
  return tonumber(string.sub(rp, c + 1))
end

-- Dedup, for the whole chunk before any event is resolved (dedup state is
-- its own, so the order does not change a result). An id is a duplicate
-- if it was seen in its own bucket, or in the previous one at most a window
-- earlier; "seen" means by an event before it in offset order, exactly as
-- if the events were checked one by one: groups come bucket by bucket, so
-- a previous bucket's writes of this chunk are in when a bucket reads it,
-- and w tells the writes of later events apart; within a bucket the ids
-- come by digest, then position. A copy carries the original's timestamp,
-- so it almost always lands in its own bucket. Keys split once the whole
-- chunk is in, so the layout does not change under the lookups.
local dupS = {} -- the "rel:pos" of duplicates
local ng = num(A[i]); i = i + 1
for _ = 1, ng do
  local idx, c = A[i], tonumber(A[i + 1])
  for k = 1, c do
    local x = i + 2 * k
    local md = A[x]
    local b1, b2, b3 = byte(md, 1, 3)
    mds[k], hs24[k], rps[k] = md, (b1 * 256 + b2) * 256 + b3, A[x + 1]
  end
  i = i + 2 + 2 * c
  local b = bucket(idx)
  local pb = bucket(fmt(tonumber(idx) - 1))
  local hasprv = pb.l or pb.legacy
  if hasprv then look(pb, c, prv) end
  -- A bucket created by this call holds nothing yet: no lookups.
  local fresh = not b.l
  if fresh then create(b, pb) end
  if b.legacy then
    for k = 1, c do leg[k] = false end
    lookLegacy(b, c, leg)
  end
  if not b.t then
    b.t = true; touched[#touched + 1] = b
  end
  local w, pw, lg = b.w, pb.w, b.legacy
  local k = 1
  while k <= c do
    local key, e = run(b, k, c)
    -- The sentinel, read with the ids, tells whether the key exists yet.
    local cur = NONE
    if not fresh then cur = redis.call('HMGET', key, '~', unpack(mds, k, e)) end
    local nw = 2 -- wr[1], wr[2]: room for the sentinel
    for j = k, e do
      local md, rp = mds[j], rps[j]
      if cur[j - k + 2] or w[md] or (lg and leg[j]) then
        dupS[rp] = true
      else
        w[md] = rp
        wr[nw + 1] = md; wr[nw + 2] = rp; nw = nw + 2
        local v = hasprv and prv[j]
        if v and part(rp, 1) <= part(v, 1) then
          local wp = pw[md]
          if not wp or part(wp, 2) < part(rp, 2) then dupS[rp] = true end
        end
      end
    end
    if nw > 2 then
      b.added = b.added + nw / 2 - 1
      if cur[1] then
        redis.call('HSET', key, unpack(wr, 3, nw))
      else
        addKey(b, key, wr, nw)
      end
    end
    k = e + 1
  end
end
for _, b in ipairs(touched) do
  if b.added > 0 then
    b.n = b.n + b.added
    while b.l < 24 and b.n > dkf * (2 ^ b.l + b.s) do split(b) end
    redis.call('HSET', b.g, 'l', b.l, 's', b.s, 'n', b.n)
  end
end
local dupAt = {}
for rp in pairs(dupS) do dupAt[part(rp, 2)] = true end

local nev = tonumber(A[i]); i = i + 1
local out = {}
for e = 1, nev do
  local off, n, blob = A[i], num(A[i + 1]), nil
  if n == 0 then
    -- Decided before the graph was asked (undecodable, invalid, no usable
    -- identifier): journaled as it is, and no dedup mark is left, so a
    -- replay from the dead-letter topic after a fix is not a duplicate.
    blob = A[i + 2]
    i = i + 3
  else
    if dupAt[e] then
      blob = 'D'
    else
      local slow = A[i + 2]
      blob = resolve(i + 3, n, slow)
      if string.byte(slow, 13) ~= 31 then -- extra, rare
        blob = blob .. '\29' .. string.sub(slow, 13, string.find(slow, '\31', 13, true) - 1)
      end
    end
    i = i + 3 + n
  end
  out[e] = blob
  if journaled then J.receipt(off, blob) end
end

redis.call('HSET', meta, 'n0', n0, 'f', load, 'l', lvl, 's', sp, 'n', cnt, 'c', ctr, 'np', np, 'ni', ni)
if journaled then J.finish() end
return out
