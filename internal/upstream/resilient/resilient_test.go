package resilient

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/catalog"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
)

// trusted repeats read-only tools (the "read" tool of the server).
var trusted = catalog.Repeat{TrustAnnotations: true}

// TestRetryTransient503: a read that meets two 503s succeeds on its third
// try; the server saw three requests; two repeats are counted.
func TestRetryTransient503(t *testing.T) {
	t.Parallel()
	srv := newFaulty(t)
	fx := newFixture(t, srv, Options{Retry: testRetry(), Repeat: trusted})
	c := fx.session(t)
	for _, k := range []string{"resources/list", "tools/call:read"} {
		before := srv.count(k)
		srv.fail(k, fault{status: 503}, fault{status: 503, rpcBody: true})
		method, name, _ := strings.Cut(k, ":")
		req := call(t, method, name)
		resp, err := c.RoundTrip(ctxT(t), req, nil)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if resp.ID != req.ID {
			t.Errorf("%s: the repeat's response has id %s, want the request's %s", k, resp.ID, req.ID)
		}
		if resp.Kind != core.KindResponse {
			t.Fatalf("%s: want a result after two 503s, got %s", k, resp.Raw)
		}
		if n := srv.count(k) - before; n != 3 {
			t.Errorf("%s reached the server %d times, want 3", k, n)
		}
		srv.mu.Lock()
		last := srv.ids[len(srv.ids)-3:]
		srv.mu.Unlock()
		if last[0] != string(req.ID) || last[1] == last[0] || last[2] == last[1] || last[2] == last[0] {
			t.Errorf("%s: ids upstream %q: want the client's first, then one of its own per repeat", k, last)
		}
	}
	if got := fx.metric(t, "mcpgate_retries_total", "route", "test", "reason", "503"); got != 4 {
		t.Errorf("mcpgate_retries_total{reason=503} = %v, want 4", got)
	}
	if srv.ran("read").Load() != 1 {
		t.Errorf("read ran %d times, want 1", srv.ran("read").Load())
	}
}

// TestRetryClasses: every class the policy names is repeated for a read
// (reset before and after the server handled it, 502, 504, 429), and
// a class it does not name is not.
func TestRetryClasses(t *testing.T) {
	t.Parallel()
	srv := newFaulty(t)
	fx := newFixture(t, srv, Options{Retry: testRetry(), Repeat: trusted})
	c := fx.session(t)
	for _, f := range []fault{{reset: true}, {reset: true, after: true}, {eof: true}, {status: 502}, {status: 504}, {status: 429}} {
		before := srv.count("tools/list")
		srv.fail("tools/list", f)
		resp, err := c.RoundTrip(ctxT(t), call(t, "tools/list", ""), nil)
		if err != nil || resp.Kind != core.KindResponse {
			t.Fatalf("%s: want a result after one fault, got %v %v", f, resp, err)
		}
		if n := srv.count("tools/list") - before; n != 2 {
			t.Errorf("%s: tools/list reached the server %d times, want 2", f, n)
		}
	}
	for _, reason := range []string{"reset", "502", "504", "429"} {
		if got := fx.metric(t, "mcpgate_retries_total", "route", "test", "reason", reason); got < 1 {
			t.Errorf("mcpgate_retries_total{reason=%s} = %v, want at least 1", reason, got)
		}
	}

	only := testRetry()
	only.On = Of(Class503)
	fx2 := newFixture(t, srv, Options{Retry: only, Repeat: trusted})
	c2 := fx2.session(t)
	before := srv.count("tools/list")
	srv.fail("tools/list", fault{status: 502})
	if _, err := c2.RoundTrip(ctxT(t), call(t, "tools/list", ""), nil); err == nil {
		t.Fatal("a 502 the policy does not name must fail the request")
	}
	if n := srv.count("tools/list") - before; n != 1 {
		t.Errorf("tools/list reached the server %d times, want 1 (502 is not in on)", n)
	}
}

// TestRetryAfterHonoured: a 429 with Retry-After: 1 is repeated no
// sooner than a second later, though the backoff is a millisecond.
func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	srv := newFaulty(t)
	fx := newFixture(t, srv, Options{Retry: testRetry(), Repeat: trusted})
	c := fx.session(t)
	srv.fail("prompts/list", fault{status: 429, retryAfter: "1"})
	start := time.Now()
	resp, err := c.RoundTrip(ctxT(t), call(t, "prompts/list", ""), nil)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Kind == core.KindError && resp.Status == 429 {
		t.Fatalf("the 429 was not repeated: %s", resp.Raw)
	}
	if took < time.Second {
		t.Errorf("repeated after %v, want at least the 1s the upstream asked for", took)
	}
	if srv.count("prompts/list") != 2 {
		t.Errorf("prompts/list reached the server %d times, want 2", srv.count("prompts/list"))
	}
}

// TestBudgetExhausted: a Retry-After past the budget ends the request at
// once with an error naming the budget; a stalled read is cut at the
// budget with a timeout error.
func TestBudgetExhausted(t *testing.T) {
	t.Parallel()
	srv := newFaulty(t)
	r := testRetry()
	r.Budget = 300 * time.Millisecond
	fx := newFixture(t, srv, Options{Retry: r, Repeat: trusted})
	c := fx.session(t)

	srv.fail("resources/templates/list", fault{status: 503, retryAfter: "5"})
	start := time.Now()
	_, err := c.RoundTrip(ctxT(t), call(t, "resources/templates/list", ""), nil)
	var ce *core.Error
	if !errors.As(err, &ce) || ce.Code != core.CodeUpstreamError || !strings.Contains(ce.Message, "retry budget of 300ms") {
		t.Fatalf("want -32010 naming the budget, got %v", err)
	}
	if ce.Header.Get("Retry-After") != "5" {
		t.Errorf("Retry-After = %q, want the upstream's 5", ce.Header.Get("Retry-After"))
	}
	if took := time.Since(start); took > 250*time.Millisecond {
		t.Errorf("gave up after %v: a wait past the budget must not be waited for", took)
	}

	for _, f := range []fault{{stall: true}, {stall: true, midStream: true}} {
		srv.failAlways("resources/read", &f)
		start = time.Now()
		_, err = c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":99,"method":"resources/read","params":{"uri":"x:y"}}`), nil)
		took := time.Since(start)
		if !errors.As(err, &ce) || ce.HTTPStatus() != http.StatusGatewayTimeout || !strings.Contains(ce.Message, "ran out") {
			t.Fatalf("%s: want a 504 saying the budget ran out, got %v", f, err)
		}
		if took < r.Budget || took > r.Budget+2*time.Second {
			t.Errorf("%s: a stalled read took %v, want about the budget %v", f, took, r.Budget)
		}
	}
	srv.failAlways("resources/read", nil)
}

// TestNonIdempotentOnce: a tool call that is not safe to repeat reaches
// the server exactly once whatever fails, while a read under the same
// fault is repeated (so the fault is one the policy repeats).
func TestNonIdempotentOnce(t *testing.T) {
	t.Parallel()
	srv := newFaulty(t)
	fx := newFixture(t, srv, Options{Retry: testRetry(), Repeat: catalog.Repeat{Tools: []string{"read"}, TrustAnnotations: true}})
	c := fx.session(t)
	faults := []fault{
		{status: 502}, {status: 503}, {status: 503, retryAfter: "1"}, {status: 504}, {status: 429, retryAfter: "1"},
		{status: 503, rpcBody: true}, {reset: true}, {reset: true, after: true}, {eof: true}, {stall: true}, {stall: true, midStream: true},
	}
	for _, f := range faults {
		wBefore, rBefore := srv.count("tools/call:write"), srv.count("tools/call:read")
		ranBefore := srv.ran("write").Load()
		srv.fail("tools/call:write", f)
		ctx, cancel := context.WithTimeout(ctxT(t), time.Second)
		resp, err := c.RoundTrip(ctx, call(t, "", "write"), nil)
		cancel()
		if err == nil && resp.Kind == core.KindResponse {
			t.Errorf("%s: write got a result through a fault: %s", f, resp.Raw)
		}
		if n := srv.count("tools/call:write") - wBefore; n != 1 {
			t.Errorf("%s: the non-idempotent call reached the server %d times, want exactly 1", f, n)
		}
		if f.after || f.eof {
			if n := srv.ran("write").Load() - ranBefore; n != 1 {
				t.Errorf("%s: write ran %d times, want 1", f, n)
			}
		}
		if f.stall {
			continue // a read stalled would wait out its budget
		}
		srv.fail("tools/call:read", f)
		resp, err = c.RoundTrip(ctxT(t), call(t, "", "read"), nil)
		if err != nil || resp.Kind != core.KindResponse {
			t.Errorf("%s: read (in retry_tools) not repeated to success: %v %v", f, resp, err)
		}
		if n := srv.count("tools/call:read") - rBefore; n != 2 {
			t.Errorf("%s: read reached the server %d times, want 2", f, n)
		}
	}
	// Nor is a notification ever repeated.
	if err := c.Send(ctxT(t), msg(t, `{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`)); err != nil {
		t.Fatal(err)
	}
}

// TestRetryConnect: an upstream nobody listens on is tried Attempts
// times (connect), then the error is the connection's.
func TestRetryConnect(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	inner, err := httpup.New(httpup.Options{URL: "http://" + addr + "/mcp"}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{}
	m, reg := newMetrics(t)
	fx.reg = reg
	u := New(inner, Options{Route: "test", Retry: testRetry(), Metrics: m})
	t.Cleanup(func() { _ = u.Close() })
	if _, err := u.Probe(ctxT(t)); err == nil {
		t.Fatal("a probe of a closed port succeeded")
	}
	if got := fx.metric(t, "mcpgate_retries_total", "route", "test", "reason", "connect"); got != 2 {
		t.Errorf("mcpgate_retries_total{reason=connect} = %v, want 2 (3 attempts)", got)
	}
}

// TestOtherSessionsUntouched: one session's upstream session failing
// (503s, then a reset) neither delays nor repeats another's requests.
func TestOtherSessionsUntouched(t *testing.T) {
	t.Parallel()
	srv := newFaulty(t)
	r := testRetry()
	r.Attempts = 10
	r.Backoff, r.MaxBackoff = 20*time.Millisecond, 20*time.Millisecond
	r.Jitter = false
	fx := newFixture(t, srv, Options{Retry: r, Repeat: trusted})
	a, b := fx.session(t), fx.session(t)
	srv.mu.Lock()
	srv.only = a.UpstreamSession()
	srv.mu.Unlock()
	srv.failAlways("resources/list", &fault{status: 503})
	var wg sync.WaitGroup
	wg.Add(1)
	var aErr error
	go func() {
		defer wg.Done()
		_, aErr = a.RoundTrip(ctxT(t), call(t, "resources/list", ""), nil)
	}()
	for range 5 {
		start := time.Now()
		resp, err := b.RoundTrip(ctxT(t), call(t, "resources/list", ""), nil)
		if err != nil || resp.Kind != core.KindResponse {
			t.Fatalf("the other session failed: %v %v", resp, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("the other session's request took %v", took)
		}
	}
	wg.Wait()
	if aErr == nil {
		t.Error("the failing session's request succeeded")
	}
	if got := srv.count("resources/list"); got != 10+5 {
		t.Errorf("resources/list reached the server %d times, want 10 (failing session) + 5 (other)", got)
	}
	srv.failAlways("resources/list", nil)
}

// TestStdioCrash: a process that crashes during a tool call fails that
// call once (nothing to repeat it on: the process and its state are
// gone), other sessions' processes go on, and the breaker counts the
// crashes: once open, no process is started.
func TestStdioCrash(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	u := New(newStdio(t), Options{Route: "stdio", Retry: testRetry(), Repeat: catalog.Repeat{Tools: []string{"crash"}}, Metrics: m,
		Breaker: &Breaker{FailureRatio: 0.4, MinRequests: 4, Window: 10 * time.Second, OpenFor: time.Hour, HalfOpenRequests: 1}})
	t.Cleanup(func() { _ = u.Close() })
	open := func() upstream.Conn {
		t.Helper()
		c, err := u.Open(ctxT(t), upstream.OpenParams{Session: &core.SessionInfo{ID: "s", Route: "stdio"}, Era: core.EraLegacy}, newSink())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		resp, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`), nil)
		if err != nil || resp.Kind != core.KindResponse {
			t.Fatalf("initialize: %v %v", resp, err)
		}
		return c
	}
	other := open()
	for range 2 {
		c := open()
		start := time.Now()
		_, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"crash","arguments":{"code":3}}}`), nil)
		if !errors.Is(err, upstream.ErrClosed) {
			t.Fatalf("a crash mid-call: want ErrClosed, got %v", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("the crash took %v to be reported", took)
		}
		resp, err := other.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`), nil)
		if err != nil || resp.Kind != core.KindResponse {
			t.Fatalf("another session's process: %v %v", resp, err)
		}
	}
	// Two crashes among seven requests (3 initializes, 2 echoes, 2
	// crashes; opening a process is not counted): below the ratio.
	if u.cb.State().String() != "closed" {
		t.Fatalf("breaker %s after 2 crashes in %d requests", u.cb.State(), u.cb.Counts().Requests)
	}
	for range 10 {
		c := open()
		_, _ = c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"crash","arguments":{"code":3}}}`), nil)
		if u.cb.State().String() == "open" {
			break
		}
	}
	if u.cb.State().String() != "open" {
		t.Fatalf("breaker %s after repeated crashes (%+v)", u.cb.State(), u.cb.Counts())
	}
	_, err := u.Open(ctxT(t), upstream.OpenParams{Session: &core.SessionInfo{ID: "s2", Route: "stdio"}, Era: core.EraLegacy}, newSink())
	var ce *core.Error
	if !errors.As(err, &ce) || ce.Code != core.CodeUpstreamUnavailable {
		t.Fatalf("Open with the breaker open: want -32018, got %v", err)
	}
	fams := &fixture{reg: reg}
	if v := fams.metric(t, "mcpgate_breaker_state", "route", "stdio"); v != 2 {
		t.Errorf("mcpgate_breaker_state = %v, want 2 (open)", v)
	}
}
