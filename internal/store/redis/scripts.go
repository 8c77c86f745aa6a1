package redisstore

import "github.com/redis/go-redis/v9"

// The scripts keep a session's hash and its entry in the index consistent:
// each runs atomically in Redis, so no reader (on any replica) sees a record
// without its index entry or the reverse. They are loaded at Open and run
// with EVALSHA; after a Redis restart has dropped its script cache, the
// first call of each falls back to EVAL (one more round trip).
//
// Times: "now" in scores is Redis's own clock (TIME), so that an index
// entry and its key's TTL, both set relative to it, expire together. The
// session's own deadline (Created+TTL) is on the gateway's clock and only
// ever compared with the gateway's now (passed in ARGV).
//
// Scripts call TIME before writing, which Redis allows from 5.0 on
// (effects replication); replicate_commands() enables it on 3.2 and 4.0
// and is a no-op since.

// luaHelpers is prepended to every script that needs them.
const luaHelpers = `
local function fmt(n) return string.format('%.0f', n) end
local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- keyttl returns how long (ms) the key of a session may live: the longer of
-- its idle timeout and what remains of its absolute TTL, plus the margin;
-- or nil if the session never expires. idle is in ms (0: none); deadline is
-- the absolute TTL's end in gateway-clock Unix ms ('': none).
local function keyttl(idle, deadline, gwnow, margin)
  local ttl = 0
  local bounded = false
  if idle > 0 then ttl = idle; bounded = true end
  if deadline ~= '' and deadline ~= false then
    bounded = true
    local rem = tonumber(deadline) - gwnow
    if rem > ttl then ttl = rem end
  end
  if not bounded then return nil end
  ttl = ttl + margin
  if ttl < 1 then ttl = 1 end
  if ttl > 70368744177664 then ttl = 70368744177664 end -- 2^46 ms, ~2230 years
  return ttl
end
`

// putScript replaces a session: the whole hash (dropping flushed touches
// of the record it replaces, keeping the caps it was admitted under), its
// TTL and its index entry.
//
// KEYS[1] session key, KEYS[2] index.
// ARGV[1] id, ARGV[2] record JSON, ARGV[3] idle ms, ARGV[4] deadline ms (empty
// for none), ARGV[5] gateway now (Unix ms), ARGV[6] margin ms, ARGV[7]
// owner (empty for none).
var putScript = newScript(`redis.replicate_commands()` + luaHelpers + `
local ttl = keyttl(tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]))
local caps = redis.call('HGET', KEYS[1], 'caps')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'record', ARGV[2], 'idle', ARGV[3], 'deadline', ARGV[4])
if caps then redis.call('HSET', KEYS[1], 'caps', caps) end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'owner', ARGV[7]) end
if ttl then
  redis.call('PEXPIRE', KEYS[1], fmt(ttl))
  redis.call('ZADD', KEYS[2], fmt(nowms() + ttl), ARGV[1])
else
  redis.call('ZADD', KEYS[2], '+inf', ARGV[1])
end
return 1
`)

// touchScript applies a batch of touches: for each session that still
// exists, it keeps the later of the stored and the new touch and refreshes
// the key's TTL and index score. A session that does not exist (never
// created, deleted, expired) is skipped: Touch creates nothing. It returns
// how many sessions it found.
//
// A session admitted under cluster caps also has its cap deadlines
// refreshed (see Admit).
//
// KEYS[1] index, KEYS[2..] session keys.
// ARGV[1] gateway now (Unix ms), ARGV[2] margin ms, ARGV[3] key prefix,
// then for each session key, in order: id, Unix seconds, nanoseconds.
var touchScript = newScript(`redis.replicate_commands()` + luaHelpers + capTouchLua + `
local gwnow, margin, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local now = nil
local found = 0
for i = 2, #KEYS do
  local a = 4 + (i - 2) * 3
  local f = redis.pcall('HMGET', KEYS[i], 'idle', 'deadline', 'ts', 'tn', 'caps')
  if type(f) == 'table' and not f.err and f[1] then
    found = found + 1
    local s, n = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local cs, cn = tonumber(f[3]), tonumber(f[4]) or 0
    if not cs or s > cs or (s == cs and n > cn) then
      redis.call('HSET', KEYS[i], 'ts', ARGV[a + 1], 'tn', ARGV[a + 2])
    end
    local ttl = keyttl(tonumber(f[1]) or 0, f[2], gwnow, margin)
    if ttl then
      if not now then now = nowms() end
      redis.call('PEXPIRE', KEYS[i], fmt(ttl))
      redis.call('ZADD', KEYS[1], 'XX', fmt(now + ttl), ARGV[a])
      captouch(prefix, ARGV[a], f[5], tonumber(f[1]) or 0, f[2], gwnow, now)
    end
  end
end
return found
`)

// listScript drops the index entries whose keys Redis has expired (their
// score, the key's expiry on Redis's clock, has passed) and returns the
// ids left.
//
// KEYS[1] index.
var listScript = newScript(`redis.replicate_commands()` + luaHelpers + `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. fmt(nowms()))
return redis.call('ZRANGE', KEYS[1], 0, -1)
`)

// pruneScript drops the index entries of the given sessions whose keys do
// not exist (evicted, or removed behind the store's back). Checking and
// removing in one script keeps it from removing the entry of a session a
// concurrent Put has just created.
//
// KEYS[1] index, KEYS[2..] session keys; ARGV[i-1] the id of KEYS[i].
var pruneScript = newScript(`
local n = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    n = n + redis.call('ZREM', KEYS[1], ARGV[i - 1])
  end
end
return n
`)

var scripts = []*script{putScript, touchScript, listScript, pruneScript, admitScript, releaseScript, deleteScript, capCountScript, claimScript,
	epochInitScript, epochCheckScript, epochResetScript, epochLeaseScript, recountScript}

// script keeps the source of a redis.Script, to load it in a pipeline:
// redis.Script.Load there would record the digest before the reply (as
// empty), while the digest NewScript computes is right.
type script struct {
	*redis.Script
	src string
}

func newScript(src string) *script { return &script{redis.NewScript(src), src} }
