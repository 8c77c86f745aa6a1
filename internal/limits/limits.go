package limits

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// Errors returned by Admit. Callers branch on them with errors.Is.
var (
	// ErrLimited means the key is over its limit; the retry-after duration
	// returned with it says when it will next be admitted.
	ErrLimited = errors.New("limits: rate limit exceeded")
	// ErrTooManyKeys means the key is not tracked yet and the limiter
	// already tracks MaxKeys keys. The limiter refuses rather than evicting
	// another key, because eviction would let a flood of new keys reset the
	// very keys it is meant to hold back.
	ErrTooManyKeys = errors.New("limits: too many keys")
)

// DefaultMaxKeys is the number of keys a limiter tracks when its options
// leave MaxKeys zero.
const DefaultMaxKeys = 100_000

// A Limiter admits or refuses one event for a key at a time. Admit returns
// nil when the event is admitted; otherwise an error wrapping [ErrLimited]
// or [ErrTooManyKeys] and how long the caller should wait before trying
// again. Implementations must be safe for use by multiple goroutines.
//
// The limiters of this package work in memory: they ignore ctx and never
// fail otherwise. A limiter whose state lives in a shared store (one Redis
// for several gateway replicas) honours ctx, keeps time by the store's
// clock rather than now, so that replicas with skewed clocks agree, and
// returns any other error when the store cannot decide: the caller then
// chooses between refusing (fail closed) and admitting (fail open).
type Limiter interface {
	Admit(ctx context.Context, key string, now time.Time) (retryAfter time.Duration, err error)
}

// An UndoLimiter is a Limiter whose admissions can be given back: a
// session creation admitted by the rate limit and then failing costs no
// slot. Undo gives back one admission of key, and never creates a key or
// goes below zero; pair it with exactly one successful Admit. It returns
// nothing because its caller can do nothing about a failure: a shared
// limiter that cannot reach its store logs it, and the slot stays taken
// until it leaves the window, which errs on the strict side.
type UndoLimiter interface {
	Limiter
	Undo(ctx context.Context, key string, now time.Time)
}

// LimiterFunc adapts a function to a [Limiter].
type LimiterFunc func(ctx context.Context, key string, now time.Time) (time.Duration, error)

// Admit calls f(ctx, key, now).
func (f LimiterFunc) Admit(ctx context.Context, key string, now time.Time) (time.Duration, error) {
	return f(ctx, key, now)
}

var (
	_ UndoLimiter = (*Window)(nil)
	_ Limiter     = (*Buckets)(nil)
	_ Limiter     = LimiterFunc(nil)
)

// Off reports whether l is a switched-off limiter — nil, or a nil *Window
// or *Buckets — which admits everything. Callers leave such a limiter out
// altogether, so that a limit that is off costs not even a call.
func Off(l Limiter) bool {
	switch v := l.(type) {
	case nil:
		return true
	case *Window:
		return v == nil
	case *Buckets:
		return v == nil
	}
	return false
}

// Refused reports whether err is a limiter's refusal ([ErrLimited] or
// [ErrTooManyKeys]) rather than a failure to decide.
func Refused(err error) bool {
	return errors.Is(err, ErrLimited) || errors.Is(err, ErrTooManyKeys)
}

// RetryAfterSeconds formats d for an HTTP Retry-After header: whole
// seconds, rounded up, at least 1 — a client told "0" would retry at once
// and be refused again.
func RetryAfterSeconds(d time.Duration) string {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	return strconv.FormatInt(max(s, 1), 10)
}
