package limits

import (
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
type Limiter interface {
	Admit(key string, now time.Time) (retryAfter time.Duration, err error)
}

// LimiterFunc adapts a function to a [Limiter].
type LimiterFunc func(key string, now time.Time) (time.Duration, error)

// Admit calls f(key, now).
func (f LimiterFunc) Admit(key string, now time.Time) (time.Duration, error) { return f(key, now) }

var (
	_ Limiter = (*Window)(nil)
	_ Limiter = (*Buckets)(nil)
	_ Limiter = LimiterFunc(nil)
)

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
