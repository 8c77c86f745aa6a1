package meter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a budget per key kept in Redis, shared by every replica that
// makes one with the same name on the same Redis and prefix (they must
// agree on the spec). Reserve and Settle are one script call each (EVALSHA,
// the scripts loaded when the meter is made), atomic in Redis, on Redis's
// clock: concurrent reservations from any number of replicas never take
// more than a limit, and replicas whose clocks disagree share one window.
//
// Keys: <prefix>meter:<name>:<slot width ms>:<key>:<counter> (key and
// counter escaped, so no two pairs share one), a hash of slot → amount that expires a window
// after its last change, or for a gauge a sorted set of leases scored by
// their deadline (Spec.Lease): a replica that dies holding one frees it
// when the lease lapses.
type Redis struct {
	rdb    redis.Scripter
	spec   Spec
	keys   string // <prefix>meter:<name>:
	argW   int64  // slot width ms
	argL   int64  // lease ms
	argE   int64  // expire ms (no window)
	id     string
	seq    atomic.Uint64
	cnames []string // escaped counter names
}

var _ Meter = (*Redis)(nil)

// NewRedis returns a meter of spec named name (a quota's name) under
// prefix on rdb, and loads its scripts (a failure to load is not an
// error: the first call loads them).
func NewRedis(ctx context.Context, rdb redis.Scripter, prefix, name string, spec Spec) *Redis {
	m := &Redis{rdb: rdb, spec: spec,
		argW: spec.width().Milliseconds(), argL: spec.lease().Milliseconds(), argE: spec.Expire.Milliseconds(), id: randomID()}
	if spec.Window > 0 {
		m.argW = max(m.argW, 1)
	}
	// The slot width is part of the keys: slots numbered for another
	// window mean nothing in this one.
	m.keys = prefix + "meter:" + name + ":" + strconv.FormatInt(m.argW, 10) + ":"
	for _, c := range spec.Counters {
		m.cnames = append(m.cnames, url.QueryEscape(c.Name))
	}
	_ = reserveScript.Load(ctx, rdb).Err()
	_ = settleScript.Load(ctx, rdb).Err()
	return m
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (m *Redis) key(key string, counter int) string {
	return m.keys + url.QueryEscape(key) + ":" + m.cnames[counter]
}

func (m *Redis) member(lease uint64) string {
	return m.id + ":" + strconv.FormatUint(lease, 36)
}

func kind(c *Counter, ch Charge) string {
	switch {
	case c.Gauge:
		return "g"
	case ch.Clamp:
		return "e"
	}
	return "c"
}

// Reserve takes every charge from key's budget or none, in one script
// call. now is ignored: time is Redis's.
func (m *Redis) Reserve(ctx context.Context, key string, charges []Charge, _ time.Time) (Reservation, error) {
	r := Reservation{key: key}
	if len(charges) > MaxCharges {
		return r, ErrTooManyCharges
	}
	r.lease = m.seq.Add(1)
	keys := make([]string, len(charges))
	args := make([]any, 0, 5+3*len(charges))
	args = append(args, m.argW, Slots, m.member(r.lease), m.argL, m.argE)
	for i, ch := range charges {
		c := &m.spec.Counters[ch.Counter]
		keys[i] = m.key(key, ch.Counter)
		args = append(args, kind(c, ch), c.Limit, ch.Amount)
	}
	res, err := reserveScript.Run(ctx, m.rdb, keys, args...).Int64Slice()
	if err != nil {
		return r, fmt.Errorf("meter: reserve %q: %w", key, err)
	}
	if len(res) < 2 {
		return r, fmt.Errorf("meter: reserve %q: short reply %v", key, res)
	}
	if res[0] == 0 {
		return r, m.refusal(res[1:], charges)
	}
	r.slot, r.n = res[1], len(charges)
	copy(r.c[:], charges)
	for i := range charges {
		r.held[i], r.Used[i] = res[2+2*i], res[3+2*i]
		r.Actual[i] = r.held[i]
	}
	return r, nil
}

func (m *Redis) refusal(res []int64, charges []Charge) error {
	if len(res) < 3 || res[0] < 0 || int(res[0]) >= len(charges) {
		return fmt.Errorf("meter: bad refusal %v", res)
	}
	i := int(res[0])
	c := m.spec.Counters[charges[i].Counter]
	return &Refusal{Index: i, Counter: c.Name, Limit: c.Limit, Used: res[1], ResetIn: time.Duration(res[2]) * time.Millisecond}
}

// Settle settles a reservation in one script call (see Counters.Settle).
// If Redis cannot be reached the reservation stays as it was (held
// estimates counted; gauges until their lease lapses: the strict side) and
// the error is returned.
func (m *Redis) Settle(ctx context.Context, r *Reservation, _ time.Time) error {
	if r.n == 0 || r.done {
		return nil
	}
	n := r.n
	r.done = true
	keys := make([]string, n)
	args := make([]any, 0, 5+4*n)
	args = append(args, m.argW, Slots, m.member(r.lease), r.slot, m.argE)
	for i := range n {
		ch := r.c[i]
		c := &m.spec.Counters[ch.Counter]
		keys[i] = m.key(r.key, ch.Counter)
		args = append(args, kind(c, ch), c.Limit, r.held[i], r.Actual[i])
	}
	res, err := settleScript.Run(ctx, m.rdb, keys, args...).Int64Slice()
	if err != nil {
		return fmt.Errorf("meter: settle %q: %w", r.key, err)
	}
	if len(res) < 5+n {
		return fmt.Errorf("meter: settle %q: short reply %v", r.key, res)
	}
	copy(r.Used[:n], res[5:])
	if res[0] == 0 {
		return m.refusal(res[1:5], r.c[:n])
	}
	return nil
}

// Usage is counter i's usage under key, by Redis's clock (one round trip).
func (m *Redis) Usage(ctx context.Context, key string, i int) (int64, error) {
	kind := "c"
	if m.spec.Counters[i].Gauge {
		kind = "g"
	}
	n, err := usageScript.Run(ctx, m.rdb, []string{m.key(key, i)}, m.argW, Slots, kind).Int64()
	if err != nil {
		return 0, fmt.Errorf("meter: usage %q: %w", key, err)
	}
	return n, nil
}

// usageScript: KEYS[1] a counter; ARGV[1] slot width ms, ARGV[2] slots,
// ARGV[3] kind. Returns its usage, changing nothing but what left the
// window.
var usageScript = redis.NewScript(`redis.replicate_commands()` + `
local expire = 0` + luaUsage + `
if ARGV[3] == 'g' then return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf') end
local u = usage(KEYS[1])
return u
`)

// luaUsage is shared by the scripts: the live sum of a counter's hash,
// dropping slots that left the window, and when a need has left it.
const luaUsage = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local width, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local cur = 0
if width > 0 then cur = math.floor(now / width) end
local function usage(key)
  local vals = redis.call('HGETALL', key)
  local sum, slots = 0, {}
  for j = 1, #vals, 2 do
    local s, v = tonumber(vals[j]), tonumber(vals[j + 1])
    if width > 0 and s < cur - n then
      redis.call('HDEL', key, vals[j])
    else
      sum = sum + v
      slots[#slots + 1] = {s, v}
    end
  end
  return sum, slots
end
local function resetin(slots, need)
  if width == 0 or need <= 0 then return 0 end
  table.sort(slots, function(a, b) return a[1] < b[1] end)
  local freed = 0
  for _, sv in ipairs(slots) do
    freed = freed + sv[2]
    if freed >= need then return math.max(1, (sv[1] + n + 1) * width - now) end
  end
  return 0
end
local function bump(key, slot, d)
  if d == 0 then return end
  if redis.call('HINCRBY', key, slot, d) <= 0 then redis.call('HDEL', key, slot) end
  if width > 0 then
    redis.call('PEXPIRE', key, (n + 2) * width)
  elseif expire > 0 then
    redis.call('PEXPIRE', key, expire)
  end
end
`

// reserveScript: KEYS[i] the i-th charge's counter. ARGV[1] slot width ms
// (0: no window), ARGV[2] slots, ARGV[3] the lease's member, ARGV[4] lease
// ms, ARGV[5] expire ms (no window; 0: never); then per charge kind (c
// count, e clamped estimate, g gauge), limit, amount. Returns {1, slot, held1, used1, ...} or {0, index, used,
// reset ms, counter}.
var reserveScript = redis.NewScript(`redis.replicate_commands()` + `
local expire = tonumber(ARGV[5])` + luaUsage + `
local held, used = {}, {}
for i = 1, #KEYS do
  local kind, limit, amt = ARGV[3 + 3 * i], tonumber(ARGV[4 + 3 * i]), tonumber(ARGV[5 + 3 * i])
  if kind == 'g' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    local u = redis.call('ZCARD', KEYS[i])
    if u + 1 > limit then return {0, i - 1, u, 0, i - 1} end
    held[i], used[i] = 1, u + 1
  else
    local u, slots = usage(KEYS[i])
    if kind == 'e' then
      if u >= limit then return {0, i - 1, u, resetin(slots, u - limit + 1), i - 1} end
      amt = math.max(0, math.min(amt, limit - u))
    elseif u + amt > limit then
      return {0, i - 1, u + amt, resetin(slots, u + amt - limit), i - 1}
    end
    held[i], used[i] = amt, u + amt
  end
end
for i = 1, #KEYS do
  if ARGV[3 + 3 * i] == 'g' then
    redis.call('ZADD', KEYS[i], now + tonumber(ARGV[4]), ARGV[3])
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[4]))
  else
    bump(KEYS[i], cur, held[i])
  end
end
local out = {1, cur}
for i = 1, #KEYS do out[#out + 1] = held[i]; out[#out + 1] = used[i] end
return out
`)

// settleScript: KEYS as reserveScript's. ARGV[1] slot width ms, ARGV[2]
// slots, ARGV[3] the lease's member, ARGV[4] the reservation's slot,
// ARGV[5] expire ms; then per charge kind, limit, held, actual. Returns
// {ok, index, used, reset
// ms, counter, used1, ...}: ok 0 names the first actual amount that did
// not fit (nothing of it stays counted).
var settleScript = redis.NewScript(`redis.replicate_commands()` + `
local expire = tonumber(ARGV[5])` + luaUsage + `
local slot = tonumber(ARGV[4])
local live = width == 0 or slot > cur - n - 1
local ref = nil
local used = {}
for i = 1, #KEYS do
  local kind = ARGV[2 + 4 * i]
  local limit, held, actual = tonumber(ARGV[3 + 4 * i]), tonumber(ARGV[4 + 4 * i]), tonumber(ARGV[5 + 4 * i])
  if kind == 'g' then
    redis.call('ZREM', KEYS[i], ARGV[3])
    used[i] = redis.call('ZCARD', KEYS[i])
  else
    if actual < held then
      if live then bump(KEYS[i], slot, actual - held) end
    elseif actual > held then
      local u, slots = usage(KEYS[i])
      local d = actual - held
      if u + d > limit then
        if live then bump(KEYS[i], slot, -held) end
        if not ref then ref = {i - 1, u + d, resetin(slots, u + d - limit), i - 1} end
      else
        bump(KEYS[i], cur, d)
      end
    end
    used[i] = usage(KEYS[i])
  end
end
local out = {1, 0, 0, 0, 0}
if ref then out = {0, ref[1], ref[2], ref[3], ref[4]} end
for i = 1, #KEYS do out[#out + 1] = used[i] end
return out
`)
