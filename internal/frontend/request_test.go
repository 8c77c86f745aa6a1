package frontend

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/session"
)

// TestRequestDeadline: a request the server does not answer within the
// route's request timeout is answered with a timeout error at its
// deadline, served by the session's clock, not a timer of its own.
func TestRequestDeadline(t *testing.T) {
	t.Parallel()
	g := newStdioGatewayRoute(t, Options{}, func(rt *Route) { rt.RequestTimeout = 300 * time.Millisecond })
	sid := g.session(t)
	start := time.Now()
	resp := g.post(t, sid, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow","arguments":{"ms":20000}}}`)
	ms := messages(t, resp)
	took := time.Since(start)
	if len(ms) != 1 || ms[0].Kind != core.KindError || ms[0].ErrorCode() != core.CodeRequestTimeout || !strings.Contains(string(ms[0].Error), "timed out") {
		t.Fatalf("slow call: %d %v", resp.StatusCode, ms)
	}
	if took < 300*time.Millisecond || took > 10*time.Second {
		t.Fatalf("answered after %s; the deadline is 300ms", took)
	}
	// The session goes on: the next request is served.
	g.ping(t, sid, 2)
	// Its handler takes it off the clock once the response is written.
	gs := g.gwOf(t, sid)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		gs.mu.Lock()
		live := gs.clockHead
		gs.mu.Unlock()
		if live == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a finished request is still on the session's clock")
		}
	}
}

// TestSlowResponseStreams: a response slower than StreamAfter turns into
// an SSE stream, gets keep-alives while it waits, and ends with the
// response.
func TestSlowResponseStreams(t *testing.T) {
	t.Parallel()
	g := newStdioGateway(t, Options{StreamAfter: 50 * time.Millisecond, KeepAlive: 100 * time.Millisecond})
	sid := g.session(t)
	resp := g.post(t, sid, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow","arguments":{"ms":700}}}`)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q, want an SSE stream", ct)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(body), "id: ") || strings.Count(string(body), ":\n\n") < 2 || !strings.Contains(string(body), `"slept"`) {
		t.Fatalf("stream %q: want priming, keep-alives, then the response", body)
	}
	// A fast response stays plain JSON.
	fast := g.post(t, sid, `{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	if ct := fast.Header.Get("Content-Type"); ct != "application/json" || fast.Header.Get("Content-Length") == "" {
		t.Fatalf("fast response: Content-Type %q, Content-Length %q", ct, fast.Header.Get("Content-Length"))
	}
}

// TestSessionEndEndsRequests: ending a session ends its requests in
// flight: they are answered at once, not at their deadline.
func TestSessionEndEndsRequests(t *testing.T) {
	t.Parallel()
	g := newStdioGateway(t, Options{})
	sid := g.session(t)
	gs := g.gwOf(t, sid)
	got := make(chan *http.Response, 1)
	go func() {
		got <- g.post(t, sid, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow","arguments":{"ms":60000}}}`)
	}()
	var req *request
	for deadline := time.Now().Add(10 * time.Second); req == nil; {
		gs.mu.Lock()
		req = gs.clockHead
		gs.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("the call never went live")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := g.mgr.End(context.Background(), sid, session.ReasonDeleted); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-got:
		ms := messages(t, resp)
		if resp.StatusCode != http.StatusNotFound || len(ms) != 1 || ms[0].ErrorCode() != core.CodeSessionNotFound {
			t.Fatalf("request of an ended session: %d %v", resp.StatusCode, ms)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the request outlived its session")
	}
	if !errors.Is(req.Err(), context.Canceled) {
		t.Fatalf("request context: %v, want canceled", req.Err())
	}
}

// clockSession is a session with no upstream, for the clock's own tests.
func clockSession(t *testing.T, opts Options, timeout time.Duration) *gwSession {
	mgr := session.NewManager(session.Options{})
	t.Cleanup(func() { mgr.Close(context.Background()) })
	opts.Sessions = mgr
	f, err := New(opts, []*Route{{Name: "r", Path: "/mcp", RequestTimeout: timeout}})
	if err != nil {
		t.Fatal(err)
	}
	return newGWSession(f, f.routes().byPath["/mcp"], &core.SessionInfo{ID: session.NewID(), Route: "r", Era: core.EraLegacy, ProtocolVersion: "2025-11-25"})
}

// TestCallClock drives the session's clock with synctest: one timer for
// every request of the session; a response turns to SSE at StreamAfter
// and gets keep-alives; a request is cancelled at its deadline, one that
// ended before is not; a request started after the session ended is
// ended at once; an idle clock is not rearmed.
func TestCallClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := clockSession(t, Options{StreamAfter: 5 * time.Second, KeepAlive: 15 * time.Second}, time.Minute)
		start := func(id string) (*request, *httptest.ResponseRecorder) {
			rec := httptest.NewRecorder()
			hr := httptest.NewRequest(http.MethodPost, "/mcp", nil)
			r := g.newRequest(rec, hr, core.ID(id), id, true, g.route().RequestTimeout, false)
			if err := g.startRequest(r, core.ID(id), true); err != nil {
				t.Fatal(err)
			}
			return r, rec
		}
		a, recA := start("1")
		timer := g.clockTimer
		time.Sleep(time.Second)
		b, _ := start("2")
		if g.clockTimer != timer {
			t.Fatal("a second request made a timer of its own")
		}
		// b ends before anything is due: it is never cancelled by the clock.
		g.endRequest(b)
		time.Sleep(4*time.Second + time.Millisecond)
		synctest.Wait()
		a.st.mu.Lock()
		sse, body := a.st.sse, recA.Body.String()
		a.st.mu.Unlock()
		if !sse || body != "id: 1_0\ndata: \n\n" {
			t.Fatalf("after StreamAfter: sse %v, body %q", sse, body)
		}
		time.Sleep(16 * time.Second)
		synctest.Wait()
		a.st.mu.Lock()
		body = recA.Body.String()
		a.st.mu.Unlock()
		if strings.Count(body, ":\n\n") != 1 {
			t.Fatalf("want one keep-alive after KeepAlive: %q", body)
		}
		if a.Err() != nil {
			t.Fatalf("cancelled before its deadline: %v", a.Err())
		}
		time.Sleep(40 * time.Second) // past a's deadline (1 min)
		<-a.Done()
		if !errors.Is(a.Err(), context.DeadlineExceeded) {
			t.Fatalf("at its deadline: %v", a.Err())
		}
		if errors.Is(b.Err(), context.DeadlineExceeded) {
			t.Fatal("a request that ended before its deadline was timed out")
		}
		if dl, ok := a.Deadline(); !ok || dl.IsZero() {
			t.Fatal("no deadline reported")
		}
		a.st.finish(mustDecode(t, `{"jsonrpc":"2.0","id":1,"result":{}}`), 200)
		g.endRequest(a)
		time.Sleep(time.Hour)
		synctest.Wait()
		g.mu.Lock()
		idle := g.clockAt.IsZero() && g.clockHead == nil
		g.mu.Unlock()
		if !idle {
			t.Fatal("the clock of a session without requests is still armed")
		}
		// A derived context follows the request, without a goroutine.
		c, _ := start("3")
		d, cancel := context.WithCancel(c)
		defer cancel()
		g.teardown(context.Background(), session.ReasonDeleted)
		<-d.Done()
		if !errors.Is(c.Err(), context.Canceled) {
			t.Fatalf("session end: %v", c.Err())
		}
		late, _ := start("4")
		if !errors.Is(late.Err(), context.Canceled) {
			t.Fatalf("a request started after its session ended: %v", late.Err())
		}
		g.endRequest(c)
		g.endRequest(late)
	})
}

// maxCallAllocs bounds the allocations of one proxied call on a stdio
// route in mcpgate's code: the handler from the body read to the written
// response, the stdio Conn and its reader (docs/benchmarks.md, target 15).
const maxCallAllocs = 15

// TestCallPathAllocs counts the allocations of one tools/call through the
// frontend's handler to a real stdio server and back, outside net/http's
// connection handling (the handler is called directly).
func TestCallPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	g := newStdioGateway(t, Options{})
	sid := g.session(t)
	h := g.f.Handler(ListenerPolicy{})
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"ping"}`)
	rd := strings.NewReader("")
	hr := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/json, text/event-stream")
	hr.Header.Set("Mcp-Session-Id", sid)
	hr.Header.Set("MCP-Protocol-Version", "2025-11-25")
	hr.ContentLength = int64(len(body))
	w := newCountingWriter()
	call := func() {
		rd.Reset(string(body))
		hr.Body = io.NopCloser(rd)
		clear(w.h)
		h.ServeHTTP(w, hr)
	}
	for range 50 {
		call() // warm: pools, maps, the session's clock
	}
	n := testing.AllocsPerRun(200, call)
	t.Logf("%.1f allocations per call", n)
	if n > maxCallAllocs {
		t.Fatalf("%.1f allocations per proxied call, want at most %d", n, maxCallAllocs)
	}
}

// BenchmarkCallPath is TestCallPathAllocs's call as a benchmark: one ping
// through the handler to a real stdio server and back.
func BenchmarkCallPath(b *testing.B) {
	g := newStdioGateway(b, Options{})
	sid := g.session(b)
	h := g.f.Handler(ListenerPolicy{})
	body := `{"jsonrpc":"2.0","id":7,"method":"ping"}`
	rd := strings.NewReader("")
	hr := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/json, text/event-stream")
	hr.Header.Set("Mcp-Session-Id", sid)
	hr.Header.Set("MCP-Protocol-Version", "2025-11-25")
	hr.ContentLength = int64(len(body))
	w := newCountingWriter()
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		hr.Body = io.NopCloser(rd)
		clear(w.h)
		h.ServeHTTP(w, hr)
	}
}
