package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Policies a CapScope may have; anything else refuses like Reject.
const (
	PolicyReject      = "reject"
	PolicyEvictOldest = "evict-oldest"
	PolicyEvictIdlest = "evict-idlest"
)

// CapScope is one cluster-wide cap a session is admitted under. Key names
// the scope ("global", "route:<name>", "principal:<name>", ...): every
// replica that admits into the same Key shares one count.
type CapScope struct {
	Key    string
	Max    int
	Policy string
}

// CapFullError reports an admission refused because a scope is full.
type CapFullError struct {
	// Index is the position in the scopes passed to Admit of the scope
	// that refused.
	Index int
	// RetryAfter is when the scope's session nearest to expiry expires,
	// on Redis's clock; zero if it has none.
	RetryAfter time.Duration
}

func (e *CapFullError) Error() string {
	return fmt.Sprintf("store/redis: cap %d full; retry after %v", e.Index, e.RetryAfter)
}

// Admit admits the session id, held by holder (who the session belongs to:
// a principal, or an anonymous client's address), under every scope,
// atomically for the whole cluster (one script, one round trip). A full
// scope whose policy evicts gives up a session of the holder with the most
// sessions in the scope (the new session counts with its own holder, which
// wins a tie): that holder's oldest (evict-oldest: first admitted) or
// idlest (evict-idlest: least recently active, as of the replicas' last
// touch flush); between tied holders, the scope's oldest or idlest among
// theirs. The victim's record is deleted, it leaves every count, and an
// "ended" event with reason "evicted" is published. A scope that cannot
// make room refuses with a *CapFullError, and nothing changes anywhere.
//
// Counts stay exact without a reaper: a session counts until its record is
// deleted (Delete, Release) or its idle deadline passes with no touch
// flushed, which every later admission into the scope checks first. A
// session that is only admitted, never Put, is held for idle plus
// ExpiryMargin.
func (s *Store) Admit(ctx context.Context, id, holder string, scopes []CapScope, idle time.Duration) ([]string, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer end()
	if id == "" {
		return nil, errNoID
	}
	if len(scopes) == 0 {
		return nil, nil
	}
	args := make([]any, 0, 6+3*len(scopes))
	args = append(args, id, idleMillis(idle), s.margin, s.prefix, s.channel, holder)
	for _, sc := range scopes {
		args = append(args, sc.Key, sc.Max, sc.Policy)
	}
	res, err := admitScript.Run(ctx, s.rdb, []string{s.keySession + id, s.keyIndex}, args...).Slice()
	if err != nil {
		return nil, s.wrap(err, "admit", id)
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("store/redis: admit %q: empty reply", id)
	}
	if ok, _ := res[0].(int64); ok == 0 {
		if len(res) != 3 {
			return nil, fmt.Errorf("store/redis: admit %q: malformed refusal", id)
		}
		i, _ := res[1].(int64)
		ms, _ := res[2].(int64)
		return nil, &CapFullError{Index: int(i) - 1, RetryAfter: time.Duration(max(ms, 0)) * time.Millisecond}
	}
	evicted := make([]string, 0, len(res)-1)
	for _, v := range res[1:] {
		if s, ok := v.(string); ok {
			evicted = append(evicted, s)
		}
	}
	return evicted, nil
}

// Release removes id from every cap it was admitted under (one round
// trip). A record without a session (admitted, never Put) is deleted; a
// stored session keeps its record. Releasing an unknown id does nothing.
func (s *Store) Release(ctx context.Context, id string) error {
	end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	if id == "" {
		return nil
	}
	return s.wrap(releaseScript.Run(ctx, s.rdb, []string{s.keySession + id}, id, s.prefix).Err(), "release", id)
}

// CapCount returns how many sessions count in the scope key now (one round
// trip; sessions past their idle deadline are not counted).
func (s *Store) CapCount(ctx context.Context, key string) (int, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer end()
	n, err := capCountScript.Run(ctx, s.rdb, []string{s.prefix + "cap:" + key}).Int()
	if err != nil {
		return 0, s.wrap(err, "cap count", key)
	}
	return n, nil
}

// ErrCapFull is matched by every *CapFullError (errors.Is).
var ErrCapFull = errors.New("store/redis: cap full")

// Is makes errors.Is(err, ErrCapFull) true for a *CapFullError.
func (e *CapFullError) Is(target error) bool { return target == ErrCapFull }

// capHelpers read and clear a session's cap memberships. A session's hash
// lists the scopes it counts in (field caps, a JSON array of scope keys).
// Each scope S is:
//
//	<prefix>cap:S          sorted set, scored by the Unix ms (Redis clock)
//	                       at which the session stops counting unless touched
//	<prefix>capc:S         sorted set, scored by when it was admitted
//	<prefix>capw:S         hash: session id -> its holder
//	<prefix>capo:S         sorted set of holders, scored by how many
//	                       sessions each counts in S
//	<prefix>caph:S\0H      holder H's sessions of S, scored as in cap:S
//	<prefix>caphc:S\0H     the same, scored as in capc:S
//
// capdrop removes a session from all of one scope's sets and is the only
// way anything leaves them, so capo:S always counts what caph:S\0H holds.
const capHelpers = `
local function capdrop(prefix, s, id)
  redis.call('ZREM', prefix .. 'cap:' .. s, id)
  redis.call('ZREM', prefix .. 'capc:' .. s, id)
  local w = prefix .. 'capw:' .. s
  local h = redis.call('HGET', w, id)
  if h then
    redis.call('HDEL', w, id)
    redis.call('ZREM', prefix .. 'caph:' .. s .. '\0' .. h, id)
    redis.call('ZREM', prefix .. 'caphc:' .. s .. '\0' .. h, id)
    local o = prefix .. 'capo:' .. s
    if tonumber(redis.call('ZINCRBY', o, -1, h)) <= 0 then redis.call('ZREM', o, h) end
  end
end
local function uncap(prefix, key, id)
  local caps = redis.call('HGET', key, 'caps')
  if not caps then return end
  local ok, list = pcall(cjson.decode, caps)
  if ok and type(list) == 'table' then
    for _, c in ipairs(list) do capdrop(prefix, c, id) end
  end
  redis.call('HDEL', key, 'caps')
end
`

// admitScript: see Admit.
//
// KEYS[1] the new session's key, KEYS[2] index.
// ARGV[1] id, ARGV[2] idle ms, ARGV[3] margin ms, ARGV[4] key prefix,
// ARGV[5] event channel, ARGV[6] holder, then per scope: key, max, policy.
// Reply: {1, evicted ids...} or {0, scope index (1-based), retry ms}.
//
// A full scope's victim: the holder with the most sessions is found from
// capo (highest first; victims already chosen do not count, the new
// session counts with its own holder, which wins a tie), and its first
// session in policy order from caph/caphc. Holders tied at the top are
// compared by their first sessions; when more than tiebudget are tied
// (many holders of as many sessions, say one each), the scope's own set
// in policy order is walked instead to its first session of a tied
// holder, which is the same choice found without visiting every holder.
var admitScript = newScript(`redis.replicate_commands()` + luaHelpers + capHelpers + `
local id, idle, margin, prefix, channel, own = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
if idle <= 0 then idle = 86400000 end
local now = nowms()
local n = math.floor((#ARGV - 6) / 3)
local tiebudget = 16
local sk, mx, pol, ek, ck, wk, ok, selfh, vin = {}, {}, {}, {}, {}, {}, {}, {}, {}
for i = 1, n do
  local b = 6 + (i - 1) * 3
  sk[i], mx[i], pol[i] = ARGV[b + 1], tonumber(ARGV[b + 2]), ARGV[b + 3]
  ek[i], ck[i] = prefix .. 'cap:' .. sk[i], prefix .. 'capc:' .. sk[i]
  wk[i], ok[i] = prefix .. 'capw:' .. sk[i], prefix .. 'capo:' .. sk[i]
  vin[i] = {}
  local gone = redis.call('ZRANGEBYSCORE', ek[i], '-inf', '(' .. fmt(now))
  for _, g in ipairs(gone) do capdrop(prefix, sk[i], g) end
  selfh[i] = redis.call('HGET', wk[i], id)
end
local victims, isv = {}, {}
-- eff is how many sessions holder h counts in scope i for this decision.
local function eff(i, h, raw)
  local e = raw - (vin[i][h] or 0)
  if selfh[i] == h then e = e - 1 end
  if h == own then e = e + 1 end
  return e
end
-- first is holder h's first session of scope i in policy order (not a
-- victim, not the new session) and its score, or nil.
local function first(i, h)
  local z = prefix .. 'caphc:' .. sk[i] .. '\0' .. h
  if pol[i] == 'evict-idlest' then z = prefix .. 'caph:' .. sk[i] .. '\0' .. h end
  local off = 0
  while true do
    local r = redis.call('ZRANGE', z, off, off + 15, 'WITHSCORES')
    if #r == 0 then return nil end
    for j = 1, #r, 2 do
      if not isv[r[j]] and r[j] ~= id then return r[j], tonumber(r[j + 1]) end
    end
    off = off + 16
  end
end
local function victim(i)
  local best, bestn, bests, bestown = nil, 0, 0, false
  local c, cs = first(i, own)
  if c then
    best, bests, bestown = c, cs, true
    bestn = eff(i, own, tonumber(redis.call('ZSCORE', ok[i], own) or 0))
  end
  local ties, off = 0, 0
  while true do
    local r = redis.call('ZREVRANGE', ok[i], off, off + 15, 'WITHSCORES')
    if #r == 0 and not best then
      -- No holder has a session to give: sessions admitted without a
      -- holder (before holders were kept) go in policy order.
      local z = ck[i]
      if pol[i] == 'evict-idlest' then z = ek[i] end
      local zo = 0
      while true do
        local m = redis.call('ZRANGE', z, zo, zo + 15)
        if #m == 0 then return nil end
        for _, v in ipairs(m) do
          if not isv[v] and v ~= id then return v end
        end
        zo = zo + 16
      end
    end
    if #r == 0 then return best end
    for j = 1, #r, 2 do
      local h, raw = r[j], tonumber(r[j + 1])
      if best and (raw < bestn or (raw == bestn and bestown)) then return best end
      if h ~= own then
        local e = eff(i, h, raw)
        if not best or e > bestn or (e == bestn and not bestown) then
          if best and e == bestn and raw == e then
            ties = ties + 1
            if ties > tiebudget then
              -- Walk the scope in policy order to its first session of a
              -- holder tied at bestn (every holder not yet seen has at
              -- most raw sessions, so none has more).
              local z = ck[i]
              if pol[i] == 'evict-idlest' then z = ek[i] end
              local zo = 0
              while true do
                local m = redis.call('ZRANGE', z, zo, zo + 15)
                if #m == 0 then return best end
                for _, v in ipairs(m) do
                  if not isv[v] and v ~= id then
                    local vh = redis.call('HGET', wk[i], v)
                    if vh and vh ~= own and eff(i, vh, tonumber(redis.call('ZSCORE', ok[i], vh) or 0)) == bestn then return v end
                  end
                end
                zo = zo + 16
              end
            end
          end
          c, cs = first(i, h)
          if c and (not best or e > bestn or cs < bests or (cs == bests and c < best)) then
            best, bestn, bests, bestown = c, e, cs, false
          end
        end
      end
    end
    off = off + 16
  end
end
for i = 1, n do
  local count = redis.call('ZCARD', ek[i])
  if selfh[i] or redis.call('ZSCORE', ek[i], id) then count = count - 1 end
  for _, v in ipairs(victims) do
    if redis.call('ZSCORE', ek[i], v) then count = count - 1 end
  end
  while count + 1 > mx[i] do
    local v = nil
    if pol[i] == 'evict-oldest' or pol[i] == 'evict-idlest' then v = victim(i) end
    if not v then
      local f = redis.call('ZRANGE', ek[i], 0, 0, 'WITHSCORES')
      local retry = 0
      if #f == 2 then retry = tonumber(f[2]) - now end
      return {0, i, math.floor(retry)}
    end
    victims[#victims + 1] = v
    isv[v] = true
    for j = 1, n do
      local vh = redis.call('HGET', wk[j], v)
      if vh then vin[j][vh] = (vin[j][vh] or 0) + 1 end
    end
    count = count - 1
  end
end
for _, v in ipairs(victims) do
  local vk = prefix .. 'session:' .. v
  uncap(prefix, vk, v)
  for i = 1, n do capdrop(prefix, sk[i], v) end
  redis.call('DEL', vk)
  redis.call('ZREM', KEYS[2], v)
  redis.call('PUBLISH', channel, cjson.encode({kind = 'ended', session_id = v, reason = 'evicted', origin = 'cluster'}))
end
for i = 1, n do
  if selfh[i] and selfh[i] ~= own then capdrop(prefix, sk[i], id) end
  local dl = fmt(now + idle)
  redis.call('ZADD', ek[i], dl, id)
  redis.call('ZADD', ck[i], 'NX', fmt(now), id)
  redis.call('ZADD', prefix .. 'caph:' .. sk[i] .. '\0' .. own, dl, id)
  redis.call('ZADD', prefix .. 'caphc:' .. sk[i] .. '\0' .. own, 'NX', fmt(now), id)
  if redis.call('HSET', wk[i], id, own) == 1 then redis.call('ZINCRBY', ok[i], 1, own) end
end
redis.call('HSET', KEYS[1], 'caps', cjson.encode(sk))
if redis.call('HEXISTS', KEYS[1], 'record') == 0 then
  redis.call('HSET', KEYS[1], 'idle', ARGV[2], 'deadline', '')
  redis.call('PEXPIRE', KEYS[1], fmt(idle + margin))
end
local out = {1}
for _, v in ipairs(victims) do out[#out + 1] = v end
return out
`)

// releaseScript: see Release.
//
// KEYS[1] session key; ARGV[1] id, ARGV[2] key prefix.
var releaseScript = newScript(capHelpers + `
uncap(ARGV[2], KEYS[1], ARGV[1])
if redis.call('HEXISTS', KEYS[1], 'record') == 0 then redis.call('DEL', KEYS[1]) end
return 1
`)

// deleteScript removes a session: its caps, its key, its index entry.
//
// KEYS[1] session key, KEYS[2] index; ARGV[1] id, ARGV[2] key prefix.
var deleteScript = newScript(capHelpers + `
uncap(ARGV[2], KEYS[1], ARGV[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
`)

// capCountScript counts a scope's sessions whose deadline has not passed.
//
// KEYS[1] the scope's deadline set.
var capCountScript = newScript(`redis.replicate_commands()` + luaHelpers + `
return redis.call('ZCOUNT', KEYS[1], fmt(nowms()), '+inf')
`)

// capTouchLua refreshes the cap deadlines of a touched session; it is
// part of touchScript. f5 is the session's caps field, ttl its key's new
// lifetime in ms; the cap deadline is the session's own (idle, or what is
// left of its TTL if that is sooner), without the key's margin.
const capTouchLua = `
local function captouch(prefix, id, caps, idle, deadline, gwnow, now)
  if not caps or idle <= 0 then return end
  local score = now + idle
  if deadline ~= '' and deadline ~= false then
    local rem = tonumber(deadline) - gwnow
    if rem < idle then score = now + rem end
  end
  local ok, list = pcall(cjson.decode, caps)
  if not ok or type(list) ~= 'table' then return end
  for _, c in ipairs(list) do
    if redis.call('ZADD', prefix .. 'cap:' .. c, 'XX', 'CH', fmt(score), id) > 0 then
      local h = redis.call('HGET', prefix .. 'capw:' .. c, id)
      if h then redis.call('ZADD', prefix .. 'caph:' .. c .. '\0' .. h, 'XX', fmt(score), id) end
    end
  end
end
`
