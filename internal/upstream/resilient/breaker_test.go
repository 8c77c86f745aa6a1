package resilient

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
)

// logs keeps the messages and attributes of the records it handles.
type logs struct {
	mu   sync.Mutex
	recs []string
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logs) WithGroup(string) slog.Handler            { return l }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	s := r.Message
	r.Attrs(func(a slog.Attr) bool { s += " " + a.Key + "=" + a.Value.String(); return true })
	l.mu.Lock()
	l.recs = append(l.recs, s)
	l.mu.Unlock()
	return nil
}

func (l *logs) with(prefix string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.recs {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

// TestBreaker: answers (a tool result with isError, a JSON-RPC error, a
// 4xx) never open it; 5xx over the ratio do; while open every request
// fails in well under a millisecond with -32018, HTTP 503 and
// Retry-After, reaching nothing; after open_for it half-opens, its
// probes succeed and it closes; each change is logged once and shown in
// mcpgate_breaker_state.
func TestBreaker(t *testing.T) {
	t.Parallel()
	srv := newFaulty(t)
	lg := &logs{}
	const openFor = 300 * time.Millisecond
	fx := newFixture(t, srv, Options{Route: "github", Logger: slog.New(lg),
		Breaker: &Breaker{FailureRatio: 0.5, MinRequests: 6, Window: 10 * time.Second, OpenFor: openFor, HalfOpenRequests: 2}})
	c := fx.session(t)

	// The server answering, however unhappily, is not a failure.
	srv.failAlways("prompts/list", &fault{status: 403})
	for range 10 {
		if resp, err := c.RoundTrip(ctxT(t), call(t, "", "fails"), nil); err != nil || resp.Kind != core.KindResponse {
			t.Fatalf("isError tool: %v %v (%v)", resp, err, srv.posts)
		}
		if resp, err := c.RoundTrip(ctxT(t), call(t, "", "nonexistent"), nil); err != nil || resp.Kind != core.KindError {
			t.Fatalf("unknown tool: want a JSON-RPC error, got %v %v", resp, err)
		}
		_, _ = c.RoundTrip(ctxT(t), call(t, "prompts/list", ""), nil)
	}
	srv.failAlways("prompts/list", nil)
	if st := fx.up.cb.State().String(); st != "closed" {
		t.Fatalf("breaker %s after answers only (%+v)", st, fx.up.cb.Counts())
	}

	// 5xx and resets: the window holds 30 successes, so it takes 30
	// failures to reach the ratio.
	srv.failAlways("resources/list", &fault{status: 503})
	for i := 0; fx.up.cb.State().String() != "open"; i++ {
		if i > 40 {
			t.Fatalf("still %s after %d failures (%+v)", fx.up.cb.State(), i, fx.up.cb.Counts())
		}
		_, _ = c.RoundTrip(ctxT(t), call(t, "resources/list", ""), nil)
	}
	if v := fx.metric(t, "mcpgate_breaker_state", "route", "github"); v != 2 {
		t.Errorf("mcpgate_breaker_state = %v, want 2 (open)", v)
	}
	reached := srv.count("resources/list") + srv.count("tools/call:write")

	// Fast failure: every request, even a non-idempotent one.
	const n = 200
	durs := make([]time.Duration, n)
	var last error
	for i := range n {
		req := call(t, "resources/list", "")
		if i%2 == 1 {
			req = call(t, "", "write")
		}
		start := time.Now()
		_, last = c.RoundTrip(ctxT(t), req, nil)
		durs[i] = time.Since(start)
		var ce *core.Error
		if !errors.As(last, &ce) || ce.Code != core.CodeUpstreamUnavailable {
			t.Fatalf("request %d with the breaker open: want -32018, got %v", i, last)
		}
	}
	sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
	if med := durs[n/2]; med > time.Millisecond {
		t.Errorf("median refusal took %v, want under 1ms", med)
	}
	if p99 := durs[n*99/100]; p99 > 20*time.Millisecond {
		t.Errorf("p99 refusal took %v (generous bound 20ms)", p99)
	}
	t.Logf("open breaker refusal: median %v, p99 %v", durs[n/2], durs[n*99/100])
	if got := srv.count("resources/list") + srv.count("tools/call:write"); got != reached {
		t.Errorf("%d requests reached the server while the breaker was open", got-reached)
	}
	var ce *core.Error
	errors.As(last, &ce)
	if ce.HTTPStatus() != http.StatusServiceUnavailable || ce.Header.Get("Retry-After") == "" {
		t.Errorf("refusal: status %d, Retry-After %q; want 503 with Retry-After", ce.HTTPStatus(), ce.Header.Get("Retry-After"))
	}
	if !strings.Contains(ce.Message, `route "github"`) || !strings.Contains(ce.Message, "tries it again in") {
		t.Errorf("refusal message %q must name the upstream and when it is tried again", ce.Message)
	}
	if d, ok := ce.Data.(unavailableData); !ok || d.Route != "github" || d.Breaker != "open" || d.RetryAt == "" {
		t.Errorf("refusal data = %+v", ce.Data)
	}

	// Half-open after open_for: a failing probe opens it again.
	time.Sleep(openFor) // the breaker's own clock: nothing to trigger
	if _, err := c.RoundTrip(ctxT(t), call(t, "resources/list", ""), nil); errors.As(err, &ce) && ce.Code == core.CodeUpstreamUnavailable {
		t.Fatalf("no probe let through after open_for: %v", err)
	}
	if st := fx.up.cb.State().String(); st != "open" {
		t.Fatalf("a failed probe left the breaker %s", st)
	}
	srv.failAlways("resources/list", nil)
	time.Sleep(openFor)
	for i := range 2 {
		resp, err := c.RoundTrip(ctxT(t), call(t, "resources/list", ""), nil)
		if err != nil || resp.Kind != core.KindResponse {
			t.Fatalf("probe %d: %v %v", i, resp, err)
		}
		if i == 0 {
			if v := fx.metric(t, "mcpgate_breaker_state", "route", "github"); v != 1 {
				t.Errorf("mcpgate_breaker_state after one good probe = %v, want 1 (half-open)", v)
			}
		}
	}
	if st := fx.up.cb.State().String(); st != "closed" {
		t.Fatalf("breaker %s after two good probes, want closed", st)
	}
	if v := fx.metric(t, "mcpgate_breaker_state", "route", "github"); v != 0 {
		t.Errorf("mcpgate_breaker_state = %v, want 0 (closed)", v)
	}
	changes := lg.with("upstream_breaker_state")
	want := []string{"from=closed to=open", "from=open to=half-open", "from=half-open to=open", "from=open to=half-open", "from=half-open to=closed"}
	if len(changes) != len(want) {
		t.Fatalf("state changes logged: %q, want %d", changes, len(want))
	}
	for i, w := range want {
		if !strings.HasSuffix(changes[i], w) {
			t.Errorf("change %d = %q, want %q", i, changes[i], w)
		}
	}
}

// TestBreakerHalfOpenLimit: a half-open breaker lets only
// half_open_requests probes through; the others are refused at once.
func TestBreakerHalfOpenLimit(t *testing.T) {
	t.Parallel()
	srv := newFaulty(t)
	fx := newFixture(t, srv, Options{Breaker: &Breaker{FailureRatio: 0.3, MinRequests: 1, Window: time.Second, OpenFor: 50 * time.Millisecond, HalfOpenRequests: 1}})
	c := fx.session(t)
	srv.fail("resources/list", fault{status: 502})
	_, _ = c.RoundTrip(ctxT(t), call(t, "resources/list", ""), nil)
	if st := fx.up.cb.State().String(); st != "open" {
		t.Fatalf("breaker %s after one failure with min_requests 1", st)
	}
	time.Sleep(50 * time.Millisecond)
	srv.fail("resources/list", fault{stall: true})
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = c.RoundTrip(ctx, call(t, "resources/list", ""), nil) // the probe, held by the server
	}()
	deadline := time.Now().Add(wait)
	for srv.count("resources/list") < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	_, err := c.RoundTrip(ctxT(t), call(t, "tools/list", ""), nil)
	var ce *core.Error
	if !errors.As(err, &ce) || ce.Code != core.CodeUpstreamUnavailable || !strings.Contains(ce.Message, "half-open") {
		t.Errorf("a second request while the probe is out: want -32018 (half-open), got %v", err)
	}
	cancel()
	<-done
}

// TestBreakerTimeouts: a request whose own deadline passes while the
// upstream stalls is a failure; one the client cancels is not counted.
func TestBreakerTimeouts(t *testing.T) {
	t.Parallel()
	srv := newFaulty(t)
	fx := newFixture(t, srv, Options{Breaker: &Breaker{FailureRatio: 0.5, MinRequests: 10, Window: 10 * time.Second, OpenFor: time.Hour, HalfOpenRequests: 1}})
	c := fx.session(t)
	srv.failAlways("tools/call:write", &fault{stall: true})
	for range 5 {
		ctx, cancel := context.WithCancel(ctxT(t))
		go func() {
			for srv.count("tools/call:write") == 0 {
				time.Sleep(time.Millisecond)
			}
			cancel()
		}()
		_, _ = c.RoundTrip(ctx, call(t, "", "write"), nil)
		cancel()
	}
	if n := fx.up.cb.Counts().TotalFailures; n != 0 {
		t.Fatalf("%d failures counted for calls the client cancelled", n)
	}
	for range 20 {
		ctx, cancel := context.WithTimeout(ctxT(t), 20*time.Millisecond)
		_, _ = c.RoundTrip(ctx, call(t, "", "write"), nil)
		cancel()
		if fx.up.cb.State().String() == "open" {
			break
		}
	}
	if st := fx.up.cb.State().String(); st != "open" {
		t.Fatalf("breaker %s after stalled calls timed out (%+v)", st, fx.up.cb.Counts())
	}
	srv.failAlways("tools/call:write", nil)
}
