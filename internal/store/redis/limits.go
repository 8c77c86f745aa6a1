package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/limits"
)

// Rate limiters shared by every replica on one Redis: the same semantics
// as limits.Window and limits.Buckets, with the state in Redis so that a
// budget is the cluster's, not each replica's. Each check is one script
// call (EVALSHA, one round trip), atomic in Redis, so concurrent checks
// from any number of replicas never admit more than the limit. Time is
// Redis's own (TIME), never the caller's, so replicas whose clocks
// disagree still share one window. Keys expire as soon as their state is
// that of a new key, so idle keys cost nothing.

// windowScript is one check of an exact sliding window: an admission at t
// counts in [t, t+window). The key is a sorted set of admissions scored
// by their Redis time in µs; members are unique per check, so admissions
// in the same microsecond all count.
//
// KEYS[1] the key's sorted set. ARGV[1] limit, ARGV[2] window µs,
// ARGV[3] the admission's unique member, ARGV[4] the key's TTL ms.
// Returns 0 if admitted, else µs until the oldest admission leaves.
var windowScript = newScript(`redis.replicate_commands()` + luaHelpers + `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - window))
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], fmt(now), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 0
`)

// windowUndoScript gives back the key's newest admission still in the
// window; without one it changes nothing (and creates no key).
//
// KEYS[1] the key's sorted set. ARGV[1] window µs.
var windowUndoScript = newScript(`redis.replicate_commands()` + luaHelpers + `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - tonumber(ARGV[1])))
return #redis.call('ZPOPMAX', KEYS[1])
`)

// bucketScript is one check of a token bucket, as GCRA: the key holds
// the bucket's theoretical arrival time (tat, Redis time in µs), the
// moment it will be full again. An event is admitted if, after taking
// its token, the bucket would not be more than full-burst tokens in
// debt: tat+interval-burst*interval <= now. A refusal changes nothing.
// The key expires when the bucket is full again.
//
// KEYS[1] the key. ARGV[1] emission interval µs (1/rate), ARGV[2] burst.
// Returns 0 if admitted, else µs until it would be (at least 1).
var bucketScript = newScript(`redis.replicate_commands()` + luaHelpers + `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
if tat < now then tat = now end
local new = tat + interval
local at = new - burst * interval
if at > now then
  return math.ceil(at - now)
end
redis.call('SET', KEYS[1], string.format('%.3f', new), 'PX', fmt(math.max(1, math.ceil((new - now) / 1000))))
return 0
`)

var (
	_ limits.UndoLimiter = (*Window)(nil)
	_ limits.Limiter     = (*Buckets)(nil)
)

// Window is an exact sliding-window limiter (limits.Window's semantics)
// shared through Redis. Make one with Store.NewWindow. It is safe for use
// by multiple goroutines; a nil *Window admits everything.
type Window struct {
	s    *Store
	name string
	keys string // <prefix>ratelimit:<name>:
	// The script's constant arguments, boxed once rather than per check.
	argLimit, argWindow, argTTL any
	// Members of the sorted sets are this Window's random id and a
	// sequence number: unique across replicas and restarts without
	// asking Redis.
	id  string
	seq atomic.Uint64
}

// NewWindow returns a limiter admitting at most limit events per key in
// any interval of length window, across every replica that makes one
// with the same name on the same Redis (and prefix). Replicas must agree
// on limit and window; each check uses the caller's. If limit or window
// is not positive there is no limit, and NewWindow returns nil.
//
// Redis keeps a sorted set per key, <prefix>ratelimit:<name>:<key>, of up
// to limit entries, which expires a window after its last admission.
// Resolution is a microsecond.
func (s *Store) NewWindow(name string, limit int, window time.Duration) *Window {
	if limit <= 0 || window <= 0 {
		return nil
	}
	us := max(window.Microseconds(), 1)
	return &Window{
		s: s, name: name, keys: s.limitPrefix() + name + ":",
		argLimit: limit, argWindow: us, argTTL: (us + 999) / 1000,
		id: randomID(),
	}
}

// Admit records an event for key if fewer than limit events were
// admitted for key, by any replica, in the window before now — now by
// Redis's clock; the argument is ignored. Otherwise it returns
// limits.ErrLimited and how long until the oldest of them leaves the
// window. One round trip; if Redis cannot be reached it returns the error
// (neither ErrLimited nor ErrTooManyKeys) and the caller decides.
func (w *Window) Admit(ctx context.Context, key string, _ time.Time) (time.Duration, error) {
	if w == nil {
		return 0, nil
	}
	end, err := w.s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer end()
	var b [32]byte
	member := string(strconv.AppendUint(append(append(b[:0], w.id...), ':'), w.seq.Add(1), 36))
	retry, err := windowScript.Run(ctx, w.s.rdb, []string{w.keys + key}, w.argLimit, w.argWindow, member, w.argTTL).Int64()
	if err != nil {
		return 0, w.s.wrap(err, "rate limit "+w.name, key)
	}
	if retry > 0 {
		return time.Duration(retry) * time.Microsecond, limits.ErrLimited
	}
	return 0, nil
}

// Undo gives back the newest admission of key still in the window (by
// any replica: admissions of one key are interchangeable, and a creation
// undone moments after it was admitted frees its slot at most that much
// early). Pair it with exactly one successful Admit. It never creates a
// key. If Redis cannot be reached the slot stays taken until it leaves
// the window — the strict side — and the failure is logged.
func (w *Window) Undo(ctx context.Context, key string, _ time.Time) {
	if w == nil {
		return
	}
	end, err := w.s.begin(ctx)
	if err == nil {
		err = windowUndoScript.Run(ctx, w.s.rdb, []string{w.keys + key}, w.argWindow).Err()
		end()
	}
	if err != nil {
		w.s.log.Warn("rate_limit_undo_failed", "addr", w.s.addr, "limit", w.name, "error", w.s.wrap(err, "undo", ""))
	}
}

// Buckets is a token bucket per key (limits.Buckets' semantics) shared
// through Redis. Make one with Store.NewBuckets. It is safe for use by
// multiple goroutines; a nil *Buckets admits everything.
type Buckets struct {
	s    *Store
	name string
	keys string // <prefix>ratelimit:<name>:
	// The script's arguments, boxed once rather than per check.
	argInterval, argBurst any
}

// NewBuckets returns a limiter allowing each key rate events per second
// with bursts of up to burst (at least 1), across every replica that
// makes one with the same name on the same Redis (and prefix). If rate is
// not a positive finite number there is no limit, and NewBuckets returns
// nil.
//
// Redis keeps one string per key, <prefix>ratelimit:<name>:<key>, which
// expires when the key's bucket is full again. Times are Redis's in µs as
// doubles, exact to a quarter of a microsecond: rates up to about a
// million per second per key are kept exactly.
func (s *Store) NewBuckets(name string, perSecond float64, burst int) *Buckets {
	if !(perSecond > 0) || math.IsInf(perSecond, 1) {
		return nil
	}
	return &Buckets{
		s: s, name: name, keys: s.limitPrefix() + name + ":",
		argInterval: 1e6 / perSecond, argBurst: max(burst, 1),
	}
}

// Admit takes a token from key's bucket, shared by every replica. If the
// bucket holds less than one it takes nothing and returns
// limits.ErrLimited with how long until it will hold one (rounded up to
// the microsecond). Time is Redis's; now is ignored. One round trip; if
// Redis cannot be reached it returns the error and the caller decides.
func (b *Buckets) Admit(ctx context.Context, key string, _ time.Time) (time.Duration, error) {
	if b == nil {
		return 0, nil
	}
	end, err := b.s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer end()
	retry, err := bucketScript.Run(ctx, b.s.rdb, []string{b.keys + key}, b.argInterval, b.argBurst).Int64()
	if err != nil {
		return 0, b.s.wrap(err, "rate limit "+b.name, key)
	}
	if retry > 0 {
		return time.Duration(retry) * time.Microsecond, limits.ErrLimited
	}
	return 0, nil
}

// limitPrefix is <prefix>ratelimit:, under the store's key prefix.
func (s *Store) limitPrefix() string {
	return strings.TrimSuffix(s.keyIndex, "sessions") + "ratelimit:"
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Scripter is the store's client, for the shared meters of quotas
// (package meter), which keep their keys under KeyPrefix.
func (s *Store) Scripter() redis.Scripter { return s.rdb }

// KeyPrefix is the prefix every key of the store starts with.
func (s *Store) KeyPrefix() string { return strings.TrimSuffix(s.keyIndex, "sessions") }
