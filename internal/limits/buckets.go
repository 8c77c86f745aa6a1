package limits

import (
	"context"
	"math"
	"time"

	"golang.org/x/time/rate"
)

// BucketOptions configures [Buckets].
type BucketOptions struct {
	// MaxKeys bounds the number of keys tracked at once; a new key beyond it
	// is refused with ErrTooManyKeys. If zero (or negative),
	// DefaultMaxKeys.
	MaxKeys int
	// IdleTimeout is how long a key must go unused, with its bucket full
	// again, before it is dropped. Dropping a full bucket changes nothing
	// a caller can see; the timeout only keeps a key used below its rate
	// from being dropped and re-allocated again and again. If zero (or
	// negative), DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// DefaultIdleTimeout is BucketOptions.IdleTimeout when left zero.
const DefaultIdleTimeout = time.Minute

// Buckets is a token bucket per key (a [rate.Limiter]): each key may burst
// up to burst events, refilled at rate per second. It is meant for
// requests; key it by principal, not session id, so that re-creating a
// session does not refill the bucket.
//
// A refused event consumes nothing. A key whose bucket is full again is
// indistinguishable from a new key, and is dropped once it has also been
// unused for IdleTimeout: each shard sweeps itself during Admit at most once
// per IdleTimeout (clamped to between 1s and a minute), and a full table
// sweeps all shards (at most once a second) before refusing a new key.
// Sweep does the same on demand. No goroutine is involved.
//
// A nil *Buckets is the switched-off limiter: it admits everything and
// allocates nothing. Buckets is safe for concurrent use.
type Buckets struct {
	limit     rate.Limit
	burst     int
	idleAfter time.Duration
	t         table[bucket]
}

type bucket struct {
	lim *rate.Limiter
	// last is the latest time passed for this key. rate.Limiter moves its
	// clock back when given an older time, and would then credit the same
	// interval twice; concurrent callers read the clock before the lock,
	// so times are clamped to last instead.
	last time.Time
}

// NewBuckets returns a limiter allowing each key rate events per second
// with bursts of up to burst. A burst below 1 is 1. If rate is not a
// positive finite number there is no limit, and NewBuckets returns nil,
// which admits everything.
func NewBuckets(perSecond float64, burst int, opts BucketOptions) *Buckets {
	if !(perSecond > 0) || math.IsInf(perSecond, 1) {
		return nil
	}
	burst = max(burst, 1)
	b := &Buckets{limit: rate.Limit(perSecond), burst: burst, idleAfter: opts.IdleTimeout}
	if b.idleAfter <= 0 {
		b.idleAfter = DefaultIdleTimeout
	}
	b.t.init(b.idleAfter, opts.MaxKeys, b.newBucket, b.idle)
	return b
}

// Allow is Admit reduced to a yes or no: ok reports whether the event is
// admitted; when it is not, retryAfter is how long until it would be.
func (b *Buckets) Allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	retryAfter, err := b.admit(key, now)
	return err == nil, retryAfter
}

// Admit takes a token from key's bucket. If the bucket holds less than one
// it takes nothing and returns [ErrLimited] with how long until it will
// hold one, to the nanosecond: trying again after exactly that long
// succeeds.
//
// If key is new and MaxKeys keys are tracked, it returns [ErrTooManyKeys]
// and IdleTimeout: a hint, as keys used meanwhile stay.
//
// ctx is unused: the state is in memory. It is there for [Limiter].
func (b *Buckets) Admit(_ context.Context, key string, now time.Time) (retryAfter time.Duration, err error) {
	return b.admit(key, now)
}

func (b *Buckets) admit(key string, now time.Time) (retryAfter time.Duration, err error) {
	if b == nil {
		return 0, nil
	}
	s, e, err := b.t.acquire(key, now, b.t.off(now))
	if err != nil {
		return b.idleAfter, err
	}
	at := now
	if at.Before(e.last) {
		at = e.last
	} else {
		e.last = at
	}
	// AllowN, unlike ReserveN followed by CancelAt, leaves the bucket
	// untouched when it refuses; and since the shard lock serialises this
	// key, TokensAt sees the state AllowN refused on.
	if e.lim.AllowN(at, 1) {
		s.changes.Add(1)
		s.mu.Unlock()
		return 0, nil
	}
	tokens := e.lim.TokensAt(at)
	s.mu.Unlock()
	return durationFor(1-tokens, float64(b.limit)) + at.Sub(now), ErrLimited
}

// Sweep drops every key whose bucket is full at now and that has been
// unused for IdleTimeout, and returns how many it dropped. Admit already
// sweeps, amortised; call Sweep to bound memory more tightly, e.g. from a
// periodic maintenance task.
func (b *Buckets) Sweep(now time.Time) int {
	if b == nil {
		return 0
	}
	return b.t.sweepAll(now)
}

// Len returns the number of keys tracked.
func (b *Buckets) Len() int {
	if b == nil {
		return 0
	}
	return int(b.t.keys.Load())
}

func (b *Buckets) newBucket() *bucket {
	return &bucket{lim: rate.NewLimiter(b.limit, b.burst)}
}

// idle reports whether key's state can be dropped: its bucket is full, as
// a new key's would be, and it has been unused for IdleTimeout.
func (b *Buckets) idle(e *bucket, now time.Time, _ int64) bool {
	return now.Sub(e.last) >= b.idleAfter && e.lim.TokensAt(now) >= float64(b.burst)
}

// durationFor returns how long it takes to accumulate tokens at perSecond,
// at least 1ns. It rounds to the nearest nanosecond rather than up: float
// error would otherwise often add a nanosecond to exact results, and
// rate.Limiter admits once less than a nanosecond's wait is left, so a
// retry after the rounded duration still succeeds.
func durationFor(tokens, perSecond float64) time.Duration {
	ns := math.Round(tokens / perSecond * float64(time.Second))
	switch {
	case ns >= math.MaxInt64:
		return math.MaxInt64
	case ns < 1:
		return 1
	}
	return time.Duration(ns)
}
