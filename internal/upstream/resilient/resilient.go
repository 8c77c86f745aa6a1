package resilient

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/mcpgate/mcpgate/internal/catalog"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Class is a kind of failure a retry policy may repeat.
type Class uint8

// The failure classes (retry.on).
const (
	// ClassNone is a failure no policy repeats (or no failure).
	ClassNone Class = iota
	// ClassConnect: the connection could not be made (refused, no route,
	// DNS), or the process could not be started.
	ClassConnect
	// ClassReset: the connection broke before the answer was complete.
	ClassReset
	// ClassTimeout: a network timeout, or the retry budget ran out while
	// the attempt was in flight.
	ClassTimeout
	Class502
	Class503
	Class504
	Class429
)

var classNames = [...]string{"none", "connect", "reset", "timeout", "502", "503", "504", "429"}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// ParseClass reads a retry.on entry.
func ParseClass(s string) (Class, bool) {
	for i, n := range classNames[1:] {
		if n == s {
			return Class(i + 1), true
		}
	}
	return ClassNone, false
}

// Classes is a set of classes.
type Classes uint16

// Of is the set of cs.
func Of(cs ...Class) Classes {
	var s Classes
	for _, c := range cs {
		s |= 1 << c
	}
	return s
}

// Has reports whether c is in s.
func (s Classes) Has(c Class) bool { return c != ClassNone && s&(1<<c) != 0 }

// Retry is the retry policy (see config.Retry for what each field means).
type Retry struct {
	// Attempts in all, the first included; below 2 nothing is repeated.
	Attempts int
	// Backoff is the first delay, doubled for each later one up to
	// MaxBackoff.
	Backoff, MaxBackoff time.Duration
	// Jitter draws each delay uniformly in [0, delay] (full jitter).
	Jitter bool
	// Budget is the total deadline of a request and its repeats.
	Budget time.Duration
	// On are the classes repeated.
	On Classes
}

// Breaker is the circuit breaker's policy (see config.Breaker).
type Breaker struct {
	FailureRatio     float64
	MinRequests      int
	Window, OpenFor  time.Duration
	HalfOpenRequests int
}

// Options configure New. A nil Retry and a nil Breaker make a wrapper
// that only passes calls on; the gateway does not build one then.
type Options struct {
	// Route names the upstream in errors, logs and metrics.
	Route string
	// Retry repeats requests that are safe to repeat; nil: never.
	Retry *Retry
	// Breaker guards the upstream; nil: no breaker.
	Breaker *Breaker
	// Repeat is the route's rule of which requests are safe to repeat
	// (retry_tools, trust_annotations), applied with each session's tool
	// catalog (upstream.OpenParams.Catalog).
	Repeat catalog.Repeat
	// Logger receives breaker state changes and repeats. Nil: discarded.
	Logger *slog.Logger
	// Metrics counts repeats and shows the breaker's state; nil: none.
	Metrics *Metrics
}

// Upstream is an upstream.Upstream that repeats what is safe to repeat
// and stops calling an upstream that keeps failing.
type Upstream struct {
	inner upstream.Upstream
	o     Options
	log   *slog.Logger
	cb    *gobreaker.TwoStepCircuitBreaker[struct{}]
	// openUntil is when an open breaker lets probes through (unix ns).
	openUntil atomic.Int64
	retries   *retryCounters
	state     stateGauge
}

var _ upstream.Upstream = (*Upstream)(nil)

// New wraps inner.
func New(inner upstream.Upstream, o Options) *Upstream {
	u := &Upstream{inner: inner, o: o, log: o.Logger}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	u.retries = o.Metrics.retriesOf(o.Route)
	if b := o.Breaker; b != nil {
		u.state = o.Metrics.stateOf(o.Route, u)
		bucket := max(b.Window/10, time.Millisecond)
		u.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:         o.Route,
			MaxRequests:  uint32(max(b.HalfOpenRequests, 1)),
			Interval:     b.Window,
			BucketPeriod: bucket,
			Timeout:      b.OpenFor,
			ReadyToTrip: func(c gobreaker.Counts) bool {
				n := c.TotalSuccesses + c.TotalFailures
				return int(n) >= b.MinRequests && float64(c.TotalFailures) >= b.FailureRatio*float64(n)
			},
			IsSuccessful:  func(err error) bool { return err == nil },
			IsExcluded:    func(err error) bool { return err == errExcluded },
			OnStateChange: u.stateChanged,
		})
		u.state.set(gobreaker.StateClosed)
	}
	return u
}

// Inner returns the wrapped upstream.
func (u *Upstream) Inner() upstream.Upstream { return u.inner }

// Probed passes on the inner upstream's Probed (stdio has it: a probe
// costs a process), so that the era bridge above sees through the wrapper.
func (u *Upstream) Probed() (upstream.Info, bool) {
	if pc, ok := u.inner.(interface{ Probed() (upstream.Info, bool) }); ok {
		return pc.Probed()
	}
	return upstream.Info{}, true
}

// Probe probes the inner upstream, repeated like server/discover. Its
// success is not counted by the breaker: the inner upstream answers from
// its cache after the first probe (the bridge asks at every Open), which
// says nothing of the upstream's health now.
func (u *Upstream) Probe(ctx context.Context) (upstream.Info, error) {
	var info upstream.Info
	err := u.do(ctx, "server/discover", true, false, func(ctx context.Context, _ int) (*core.Message, error) {
		var err error
		info, err = u.inner.Probe(ctx)
		return nil, err
	})
	return info, err
}

// Open opens an inner connection. Failing to open (a process that does
// not start, a connection that cannot be made) is a connect failure,
// repeated when the policy repeats connect.
func (u *Upstream) Open(ctx context.Context, p upstream.OpenParams, sink upstream.Sink) (upstream.Conn, error) {
	var c upstream.Conn
	err := u.do(ctx, "open", true, false, func(ctx context.Context, _ int) (*core.Message, error) {
		var err error
		c, err = u.inner.Open(ctx, p, sink)
		if err != nil && classify(ctx, nil, err).class == ClassNone && !excluded(err) {
			err = &openError{err}
		}
		return nil, err
	})
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, u: u, cat: p.Catalog}, nil
}

// Close closes the inner upstream and removes the breaker's gauge (unless
// a newer wrapper of the route shows it).
func (u *Upstream) Close() error {
	if u.cb != nil {
		u.o.Metrics.release(u.o.Route, u)
	}
	return u.inner.Close()
}

// openError marks a failure to open as a connect failure.
type openError struct{ err error }

func (e *openError) Error() string { return e.err.Error() }
func (e *openError) Unwrap() error { return e.err }

// conn is one session's connection: requests go through do, the rest is
// the inner Conn's.
type conn struct {
	upstream.Conn
	u   *Upstream
	cat *catalog.Catalog
}

func (c *conn) RoundTrip(ctx context.Context, req *core.Message, related upstream.Related) (*core.Message, error) {
	u := c.u
	safe := u.o.Retry != nil && u.o.Repeat.Safe(req.Method, req.Name, c.cat)
	var resp *core.Message
	err := u.do(ctx, req.Method, safe, true, func(ctx context.Context, n int) (*core.Message, error) {
		if n == 1 {
			var err error
			resp, err = c.Conn.RoundTrip(ctx, req, related)
			return resp, err
		}
		// A repeat goes under an id (and progress token) of its own: after
		// a reset or a lost answer the first try may still be running
		// upstream, and a server refuses a duplicate id.
		again, rel, restore := upstream.Isolate(req, related)
		r, err := c.Conn.RoundTrip(ctx, again, rel)
		resp = restore(r)
		return resp, err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// errExcluded is what the breaker is told of an outcome that says nothing
// about the upstream's health (the caller gave up, a credential missing).
var errExcluded = errors.New("resilient: excluded")

// errFailed is what the breaker is told of a failure.
var errFailed = errors.New("resilient: failed")

// do runs one call through the breaker, and when it is safe to repeat
// (safe) and the policy says so, again after failures the policy names,
// within the budget.
//
// countSuccess false: a success says nothing to the breaker (opening a
// Conn sends nothing over HTTP; for stdio it only starts a process), so
// that the requests decide the ratio.
func (u *Upstream) do(ctx context.Context, method string, safe, countSuccess bool, call func(ctx context.Context, attempt int) (*core.Message, error)) error {
	r := u.o.Retry
	if r == nil || r.Attempts < 2 || !safe {
		_, err := u.attempt(ctx, ctx, call, 1, countSuccess)
		return err
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, r.Budget)
	defer cancel()
	deadline, _ := ctx.Deadline()
	for n := 1; ; n++ {
		o, err := u.attempt(parent, ctx, call, n, countSuccess)
		if !r.On.Has(o.class) || parent.Err() != nil || ctx.Err() != nil {
			return u.budgetErr(parent, ctx, method, n, o, err)
		}
		if n >= r.Attempts {
			return err
		}
		wait := r.delay(n)
		if o.retryAfter > 0 {
			wait = o.retryAfter
		}
		if time.Until(deadline) <= wait {
			if err == nil {
				return nil // the upstream's own error response, as it is
			}
			return u.exhausted(method, n, o, err, wait)
		}
		u.retries.inc(o.class)
		u.log.Debug("upstream_request_repeated", "method", method, "attempt", n+1, "reason", o.class.String(), "delay", wait, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if parent.Err() != nil {
				return parent.Err()
			}
			if err == nil {
				return nil
			}
			return u.exhausted(method, n, o, err, wait)
		}
	}
}

// budgetErr turns an attempt cut by the budget (not by the caller) into
// the budget's error; other errors are returned as they are.
func (u *Upstream) budgetErr(parent, ctx context.Context, method string, n int, o outcome, err error) error {
	if err != nil && parent.Err() == nil && ctx.Err() != nil {
		return u.exhausted(method, n, o, err, 0)
	}
	return err
}

// exhausted is the error of a request whose repeats did not fit in the
// budget: -32010 (HTTP 504 when it ran out waiting, else 502), naming
// the attempts and the last failure.
func (u *Upstream) exhausted(method string, n int, o outcome, err error, wait time.Duration) error {
	msg := "upstream of route " + strconv.Quote(u.o.Route) + " failed " + method + " " + strconv.Itoa(n) + " time"
	if n > 1 {
		msg += "s"
	}
	msg += " (" + o.class.String() + ")"
	status := http.StatusBadGateway
	if wait > 0 {
		msg += "; the next try (in " + wait.Round(time.Millisecond).String() + ") would pass the retry budget of " + u.o.Retry.Budget.String()
	} else {
		msg += "; the retry budget of " + u.o.Retry.Budget.String() + " ran out"
		status = http.StatusGatewayTimeout
	}
	e := &core.Error{Code: core.CodeUpstreamError, Message: msg, Status: status, Err: err}
	if wait > 0 && o.retryAfter > 0 {
		e.Header = http.Header{"Retry-After": {strconv.Itoa(int((o.retryAfter + time.Second - 1) / time.Second))}}
	}
	return e
}

// delay is the wait before try n+1.
func (r *Retry) delay(n int) time.Duration {
	d := r.Backoff
	for i := 1; i < n && d < r.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.MaxBackoff)
	if r.Jitter && d > 0 {
		d = rand.N(d + 1)
	}
	return d
}

// attempt makes one call through the breaker. A response that is a
// JSON-RPC error with a status the policy repeats (a 503 with a JSON-RPC
// body) comes back as its outcome with the message in resp; do returns
// it as it is when it is not repeated.
func (u *Upstream) attempt(parent, ctx context.Context, call func(context.Context, int) (*core.Message, error), n int, countSuccess bool) (outcome, error) {
	var done func(error)
	if u.cb != nil {
		var err error
		if done, err = u.cb.Allow(); err != nil {
			return outcome{}, u.unavailable(err)
		}
	}
	resp, err := call(ctx, n)
	o := classify(parent, resp, err)
	if done != nil {
		switch {
		case o.failure:
			done(errFailed)
		case err != nil && excluded(err), err != nil && parent.Err() != nil, !countSuccess:
			done(errExcluded)
		default:
			done(nil)
		}
	}
	return o, err
}

// unavailable is the fast refusal of an open (or saturated half-open)
// breaker: HTTP 503, -32018, Retry-After, naming the route's upstream.
func (u *Upstream) unavailable(cause error) error {
	wait := time.Second // half-open: its probes are out; they settle soon
	state := "half-open"
	if errors.Is(cause, gobreaker.ErrOpenState) {
		state = "open"
		wait = max(time.Duration(u.openUntil.Load()-time.Now().UnixNano()), 0)
	}
	secs := int((wait + time.Second - 1) / time.Second)
	at := time.Now().Add(wait).UTC().Truncate(time.Second)
	msg := "the upstream of route " + strconv.Quote(u.o.Route) + " is unavailable: its circuit breaker is " + state +
		" after repeated failures; mcpgate tries it again in " + strconv.Itoa(secs) + "s (at " + at.Format(time.RFC3339) + ")"
	return &core.Error{
		Code: core.CodeUpstreamUnavailable, Message: msg, Status: http.StatusServiceUnavailable,
		Header: http.Header{"Retry-After": {strconv.Itoa(secs)}},
		Data:   unavailableData{Route: u.o.Route, Breaker: state, RetryAfter: secs, RetryAt: at.Format(time.RFC3339)},
		Err:    cause,
	}
}

type unavailableData struct {
	Route      string `json:"route"`
	Breaker    string `json:"breaker"`
	RetryAfter int    `json:"retry_after"`
	RetryAt    string `json:"retry_at"`
}

func (u *Upstream) stateChanged(_ string, from, to gobreaker.State) {
	if to == gobreaker.StateOpen {
		u.openUntil.Store(time.Now().Add(u.o.Breaker.OpenFor).UnixNano())
	}
	u.state.set(to)
	lvl := slog.LevelInfo
	if to == gobreaker.StateOpen {
		lvl = slog.LevelWarn
	}
	u.log.Log(context.Background(), lvl, "upstream_breaker_state", "from", from.String(), "to", to.String())
}

// outcome is what one attempt says about the upstream.
type outcome struct {
	class      Class
	failure    bool // counts against the breaker
	retryAfter time.Duration
}

// excluded: outcomes that say nothing about the upstream's health.
func excluded(err error) bool {
	return errors.Is(err, upstream.ErrCredential) || errors.Is(err, upstream.ErrSessionLost) || errors.Is(err, upstream.ErrResponseLost) ||
		errors.Is(err, context.Canceled)
}

// classify reads one attempt's result. parent is the caller's context:
// when it ended nothing is repeated (do checks it), and only its
// deadline counts (a timeout), not its cancellation.
func classify(parent context.Context, resp *core.Message, err error) outcome {
	if err == nil {
		if resp != nil && resp.Kind == core.KindError && resp.Status != 0 {
			return statusOutcome(resp.Status, resp.RetryAfter)
		}
		return outcome{}
	}
	if pe := parent.Err(); pe != nil {
		if errors.Is(pe, context.DeadlineExceeded) {
			// The request's own deadline passed (the route's
			// request_timeout): the upstream was too slow.
			return outcome{class: ClassTimeout, failure: true}
		}
		return outcome{} // the client gave up
	}
	if excluded(err) {
		return outcome{}
	}
	var se upstream.StatusError
	if errors.As(err, &se) {
		return statusOutcome(se.UpstreamStatus())
	}
	var oe *openError
	var op *net.OpError
	var ne net.Error
	switch {
	case errors.As(err, &op) && op.Op == "dial", errors.Is(err, syscall.ECONNREFUSED):
		return outcome{class: ClassConnect, failure: true}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return outcome{class: ClassTimeout, failure: true}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return outcome{class: ClassReset, failure: true}
	case errors.As(err, &oe):
		return outcome{class: ClassConnect, failure: true}
	case errors.Is(err, upstream.ErrClosed):
		// The connection is gone (a process that exited): a failure, but
		// nothing to repeat on it.
		return outcome{failure: true}
	}
	var ce *core.Error
	if errors.As(err, &ce) && ce.Code != core.CodeUpstreamError {
		return outcome{} // the gateway's own refusal, not the upstream's health
	}
	return outcome{failure: true}
}

// statusOutcome: 5xx are failures; 502, 503, 504 and 429 are classes a
// policy may repeat; other 4xx are the server answering.
func statusOutcome(status int, after time.Duration) outcome {
	o := outcome{failure: status >= 500}
	switch status {
	case http.StatusBadGateway:
		o.class = Class502
	case http.StatusServiceUnavailable:
		o.class, o.retryAfter = Class503, after
	case http.StatusGatewayTimeout:
		o.class = Class504
	case http.StatusTooManyRequests:
		o.class, o.retryAfter = Class429, after
	}
	return o
}
