package config

import (
	"fmt"
	"strconv"
	"time"
)

// Retry is routes[].upstream.retry: how requests that are safe to repeat
// are sent again after a transient failure. Absent: no request is ever
// repeated by the upstream layer (the default). Present, every field
// left out takes the default named below, so `retry: {}` is the
// documented policy.
//
// Safe to repeat are discovery (server/discover, initialize), lists,
// reads, prompts, completions, ping, and tool calls the route's
// retry_tools lists or whose annotations (with trust_annotations) say
// readOnlyHint or idempotentHint. No other tool call is ever repeated,
// whatever failed; notifications and responses never are.
type Retry struct {
	// Attempts is how many times a request is sent in all, the first
	// included (1: never again). Default 3.
	Attempts int `yaml:"attempts"`
	// Backoff is the delay before the first repeat; each later one
	// doubles it. Default 100ms.
	Backoff time.Duration `yaml:"backoff"`
	// MaxBackoff caps one delay. Default 2s.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// Jitter is full (each delay is uniform in [0, backoff]: clients that
	// failed together do not come back together) or none. Default full.
	Jitter string `yaml:"jitter"`
	// Budget is the total deadline of a request and its repeats: no
	// repeat starts that could not finish within it, and the attempt in
	// flight is cut at it. Default 10s.
	Budget time.Duration `yaml:"budget"`
	// On lists the failures that are repeated: connect (the connection
	// could not be made, or the process not started), reset (the
	// connection broke), timeout (a network timeout), and the upstream's
	// HTTP statuses 502, 503, 504 and 429. A Retry-After the upstream
	// sends with 429 or 503 is honoured (within the budget). Default all
	// of them.
	On []string `yaml:"on"`
}

// Breaker is routes[].upstream.breaker: a circuit breaker over the
// route's upstream. Absent: no breaker (the default). Present, every
// field left out takes the default named below.
//
// Failures are transport failures, timeouts and 5xx answers; a tool
// result with isError, a JSON-RPC error and a 4xx are the server
// answering and count as successes. While open, every request to the
// upstream fails at once (HTTP 503, -32018) naming the upstream and when
// it will be tried again.
type Breaker struct {
	// FailureRatio opens the breaker when the failed share of the
	// requests in the window reaches it (0 < ratio ≤ 1). Default 0.5.
	FailureRatio float64 `yaml:"failure_ratio"`
	// MinRequests is how many requests the window must hold before the
	// ratio is considered. Default 20.
	MinRequests int `yaml:"min_requests"`
	// Window is the rolling window requests are counted over. Default 30s.
	Window time.Duration `yaml:"window"`
	// OpenFor is how long the breaker stays open before it lets probes
	// through (half-open). Default 15s.
	OpenFor time.Duration `yaml:"open_for"`
	// HalfOpenRequests is how many probes a half-open breaker lets
	// through at once; that many successes in a row close it, one failure
	// opens it again. Default 3.
	HalfOpenRequests int `yaml:"half_open_requests"`
}

// Retry and breaker defaults (applied to a block that is present).
const (
	DefaultRetryAttempts      = 3
	DefaultRetryBackoff       = 100 * time.Millisecond
	DefaultRetryMaxBackoff    = 2 * time.Second
	DefaultRetryJitter        = JitterFull
	DefaultRetryBudget        = 10 * time.Second
	DefaultBreakerRatio       = 0.5
	DefaultBreakerMinRequests = 20
	DefaultBreakerWindow      = 30 * time.Second
	DefaultBreakerOpenFor     = 15 * time.Second
	DefaultBreakerHalfOpen    = 3
)

// Jitter kinds.
const (
	JitterFull = "full"
	JitterNone = "none"
)

// Retry classes (retry.on) other than HTTP statuses.
const (
	RetryConnect = "connect"
	RetryReset   = "reset"
	RetryTimeout = "timeout"
)

// RetryClasses are the values retry.on accepts, in their documented order
// (also the default).
var RetryClasses = []string{RetryConnect, RetryReset, RetryTimeout, "502", "503", "504", "429"}

func (r *Retry) setDefaults() {
	if r.Attempts == 0 {
		r.Attempts = DefaultRetryAttempts
	}
	setDur(&r.Backoff, DefaultRetryBackoff)
	setDur(&r.MaxBackoff, DefaultRetryMaxBackoff)
	if r.Jitter == "" {
		r.Jitter = DefaultRetryJitter
	}
	setDur(&r.Budget, DefaultRetryBudget)
	if r.On == nil {
		r.On = append([]string(nil), RetryClasses...)
	}
}

func (b *Breaker) setDefaults() {
	if b.FailureRatio == 0 {
		b.FailureRatio = DefaultBreakerRatio
	}
	if b.MinRequests == 0 {
		b.MinRequests = DefaultBreakerMinRequests
	}
	setDur(&b.Window, DefaultBreakerWindow)
	setDur(&b.OpenFor, DefaultBreakerOpenFor)
	if b.HalfOpenRequests == 0 {
		b.HalfOpenRequests = DefaultBreakerHalfOpen
	}
}

// RetryStatus reports the HTTP status a retry class names (0 for
// connect, reset and timeout).
func RetryStatus(class string) int {
	n, err := strconv.Atoi(class)
	if err != nil {
		return 0
	}
	return n
}

// checkResilience validates a route's upstream retry and breaker blocks;
// path is the route's upstream ("routes[0].upstream").
func checkResilience(path string, u Upstream, bad func(path, format string, args ...any)) {
	if r := u.Retry; r != nil {
		p := path + ".retry"
		if r.Attempts < 1 || r.Attempts > 10 {
			bad(p+".attempts", "want 1 to 10 tries in all (the first included), got %d", r.Attempts)
		}
		if r.Backoff <= 0 {
			bad(p+".backoff", "must be positive")
		}
		if r.MaxBackoff < r.Backoff {
			bad(p+".max_backoff", "must be at least backoff (%s)", r.Backoff)
		}
		switch r.Jitter {
		case JitterFull, JitterNone:
		default:
			bad(p+".jitter", "want full or none, got %q", r.Jitter)
		}
		if r.Budget <= 0 {
			bad(p+".budget", "must be positive")
		}
		if len(r.On) == 0 {
			bad(p+".on", "list at least one of connect, reset, timeout, 502, 503, 504, 429 (or leave the retry block out)")
		}
		seen := map[string]bool{}
		for i, c := range r.On {
			q := fmt.Sprintf("%s.on[%d]", p, i)
			switch {
			case !validClass(c):
				bad(q, "want one of connect, reset, timeout, 502, 503, 504, 429, got %q", c)
			case seen[c]:
				bad(q, "duplicate %q", c)
			}
			seen[c] = true
		}
	}
	if b := u.Breaker; b != nil {
		p := path + ".breaker"
		if !(b.FailureRatio > 0 && b.FailureRatio <= 1) {
			bad(p+".failure_ratio", "want a ratio in (0, 1], got %v", b.FailureRatio)
		}
		if b.MinRequests < 1 {
			bad(p+".min_requests", "must be at least 1")
		}
		if b.Window < 100*time.Millisecond {
			bad(p+".window", "must be at least 100ms")
		}
		if b.OpenFor <= 0 {
			bad(p+".open_for", "must be positive")
		}
		if b.HalfOpenRequests < 1 {
			bad(p+".half_open_requests", "must be at least 1")
		}
	}
}

func validClass(c string) bool {
	for _, k := range RetryClasses {
		if c == k {
			return true
		}
	}
	return false
}
